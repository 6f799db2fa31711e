"""Append-only, hash-chained audit trail and its IHE BALP export.

Modules: ``record`` (the shared ``AuditRecord`` contract), ``chain`` (canonical form and
hashing), ``schema`` (tables), ``migrations`` (Alembic: tables, indexes, triggers), ``engine``
(connections, running migrations), ``store`` (``AuditStore``: append, search, verify, export),
``events`` (what the store returns), ``verify``, ``export``, ``errors``, ``cli``.
Nothing is imported here, so ``audit.record`` stays cheap for pure code such as
``fhir_mappings``.
"""
