"""Get a photo's bytes: inline, or from a Binary on the configured FHIR server; check its hash."""

from __future__ import annotations

from fhir_mappings.attachments import check_declared_hash
from fhir_mappings.photo import Photo
from models.errors import BinaryUnavailable, PhotoTooLarge
from workers.fhir_client import FhirClient


def photo_bytes(photo: Photo, client: FhirClient | None, *, max_bytes: int) -> bytes:
    """The raw photo bytes, size-capped and checked against ``content.hash``."""
    if photo.data is not None:
        data = photo.data
    elif photo.binary_reference is not None:
        if client is None:
            raise BinaryUnavailable(
                f"the photo is held in {photo.binary_reference}; give a FHIR server to read it from"
            )
        data = client.read_binary(photo.binary_reference, max_bytes=max_bytes)
    else:  # Photo's contract says one of the two is set; keep the refusal explicit anyway.
        raise BinaryUnavailable("the photo has neither inline data nor a Binary reference")
    if len(data) > max_bytes:
        raise PhotoTooLarge(f"the photo is {len(data)} bytes; the limit is {max_bytes}")
    check_declared_hash(photo, data)
    return data
