"""Append-only, hash-chained audit trail and its IHE BALP export.

Modules: ``record`` (the shared ``AuditRecord`` contract), ``chain`` (canonical form and
hashing), ``schema`` (tables and triggers), ``engine`` (connections and migrations),
``store`` (``AuditStore``: append, search, verify, export), ``verify``, ``export``, ``cli``.
Nothing is imported here, so ``audit.record`` stays cheap for pure code such as
``fhir_mappings``.
"""
