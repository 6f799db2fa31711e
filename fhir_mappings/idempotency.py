"""Idempotency keys: the same photo version, producer and analysis always give the same identifier.

A key is a name-based UUID (uuid5) over a JSON list of its parts, so it is stable across runs,
machines and Python versions, and no two part lists collide by concatenation. The identifier
makes a repeated write a no-op (conditional create); the same UUID also names the resource's
``urn:uuid:`` fullUrl inside a Bundle.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from typing import Final

from fhir_mappings.photo import SourceRef
from models.results import ModelInfo

# Fixed for ever: changing it would give every past result a new identifier and duplicate them.
_NAMESPACE: Final = uuid.UUID("6f0c2d1e-4b7a-5c39-9e51-8a2f3d6b7c10")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def stable_uuid(*parts: str) -> str:
    """A UUID that depends only on ``parts`` (and their order)."""
    return str(uuid.uuid5(_NAMESPACE, json.dumps(list(parts), ensure_ascii=True)))


def sha256_hex(value: str, what: str) -> str:
    """``value`` as lowercase hex after checking it is a SHA-256; ``what`` names it in the error."""
    lowered = value.lower()
    if not _SHA256.match(lowered):
        raise ValueError(f"{what} must be a SHA-256 in hex, got {value!r}")
    return lowered


def file_photo_key(sha256: str) -> str:
    """Photo key of a file given to the CLI: the SHA-256 of the original bytes."""
    return "sha256:" + sha256_hex(sha256, "file SHA-256")


def fhir_photo_key(source: SourceRef) -> str:
    """Photo key of a Media/DocumentReference: its versioned reference.

    Without a ``versionId`` the key is the plain reference, so an edited photo on a server
    that does not version resources keeps its old results.
    """
    if source.reference is None:
        raise ValueError("a photo from FHIR needs a resource id to key its results")
    return source.reference


def series_photo_key(member_keys: Iterable[str]) -> str:
    """Photo key of a series analysed as one lesion: its members' keys, order ignored (the same
    photos give the same accumulated verdict whichever order they were named in)."""
    keys = sorted(set(member_keys))
    if len(keys) < 2:
        raise ValueError("a series has at least two different photos")
    return "series:" + stable_uuid("series", *keys)


def model_key(model: ModelInfo) -> str:
    """A model is the same model only with the same name, version and weights."""
    weights = sha256_hex(model.weights_sha256, f"weights SHA-256 of {model.name}")
    return f"model:{model.name}|{model.version}|{weights}"


def software_key(software_version: str) -> str:
    """Producer key for what Photomarker itself decides (quality gate, 'not performed')."""
    return f"photomarker:{software_version}"


def result_key(photo_key: str, producer_key: str, analysis: str) -> str:
    """The identifier value of one result: photo × producer × analysis."""
    return stable_uuid("result", photo_key, producer_key, analysis)


def write_key(result_keys: Iterable[str]) -> str:
    """The key of one write (its Provenance): the set of results it records, order ignored."""
    keys = sorted(set(result_keys))
    if not keys:
        raise ValueError("a write records at least one result")
    return stable_uuid("write", *keys)
