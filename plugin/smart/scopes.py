"""Which scopes to ask for (SMART v2, or v1 when the server lists only v1) and what a grant allows."""

from __future__ import annotations

import re
from collections.abc import Iterable

# FHIR.md "SMART App Launch 2.x", plus Media.c: the write-back may add Grad-CAM heat maps as Media.
_RESOURCE_SCOPES_V2 = (
    "patient/Patient.r",
    "patient/Media.rs",
    "patient/DocumentReference.rs",
    "patient/Binary.r",
    "patient/Observation.rs",
    "patient/Observation.c",
    "patient/Device.rs",
    "patient/Device.c",
    "patient/Provenance.c",
    "patient/Media.c",
)
# What a write-back creates: without all of these the results are shown but not saved.
WRITE_NEEDS = ("Observation", "Device", "Provenance")
_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.([a-z*]+)(?:\?.*)?$")
_V2_PERMISSIONS = re.compile(r"^c?r?u?d?s?$")


def requested_scopes(scopes_supported: Iterable[str], *, ehr_launch: bool, write_heatmaps: bool) -> str:
    """The scope string for an authorization request to a server that lists ``scopes_supported``."""
    supported = set(scopes_supported)
    resource = [s for s in _RESOURCE_SCOPES_V2 if write_heatmaps or s != "patient/Media.c"]
    if _only_v1(supported):
        resource = _as_v1(resource)
    launch = "launch" if ehr_launch else "launch/patient"
    return " ".join([launch, "openid", "fhirUser", *resource, "online_access"])


def _only_v1(supported: set[str]) -> bool:
    """True when the server lists resource scopes and all are v1 (``.read``, ``.write``, ``.*``)."""
    resource = [s for s in supported if _SCOPE.match(s)]
    return bool(resource) and all(s.split(".")[-1].split("?")[0] in ("read", "write", "*") for s in resource)


def _as_v1(scopes: list[str]) -> list[str]:
    converted: list[str] = []
    for scope in scopes:
        name, permissions = scope.rsplit(".", 1)
        v1 = f"{name}.write" if "c" in permissions else f"{name}.read"
        if v1 not in converted:
            converted.append(v1)
    return converted


def permits(granted: Iterable[str], resource_type: str, operation: str) -> bool:
    """True when a granted scope allows ``operation`` (one of c r u d s) on ``resource_type``."""
    for scope in granted:
        match = _SCOPE.match(scope)
        if match is None or match.group(2) not in (resource_type, "*"):
            continue
        permissions = match.group(3)
        if permissions == "*" or (permissions == "read" and operation in "rs"):
            return True
        if permissions == "write" and operation in "cud":
            return True
        if _V2_PERMISSIONS.match(permissions) and operation in permissions:
            return True
    return False


def missing_write_scopes(granted: Iterable[str], *, heatmaps: bool) -> list[str]:
    """The resource types the write-back creates that the grant does not let it create."""
    scopes = list(granted)
    needed = (*WRITE_NEEDS, "Media") if heatmaps else WRITE_NEEDS
    return [resource_type for resource_type in needed if not permits(scopes, resource_type, "c")]
