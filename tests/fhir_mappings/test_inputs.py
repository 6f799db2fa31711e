"""Media / DocumentReference → Photo, and every refusal FHIR.md lists, each with its own code."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest

from fhir_mappings.attachments import binary_reference, check_declared_hash
from fhir_mappings.inputs import InputContext, load_json, photos_from_json
from fhir_mappings.outcome import operation_outcome
from models import errors

JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"pretend-jpeg" * 10  # the bytes are not decoded here
BASE = "https://ehr.example.org/fhir"
CTX = InputContext(fhir_base=BASE)


def media(**overrides: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Media",
        "id": "m1",
        "meta": {"versionId": "3"},
        "status": "completed",
        "subject": {"reference": "Patient/p1"},
        "createdDateTime": "2026-03-01T09:30:00+09:00",
        "bodySite": {"coding": [{"system": "http://snomed.info/sct", "code": "53120007"}]},
        "operator": {"reference": "Patient/p1"},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(JPEG_BYTES).decode(),
            "hash": base64.b64encode(hashlib.sha1(JPEG_BYTES).digest()).decode(),
        },
    }
    resource.update(overrides)
    return resource


def content(**fields: Any) -> dict[str, Any]:
    return {"contentType": "image/jpeg", **fields}


# --- what a good resource becomes --------------------------------------------------------------


def test_media_becomes_a_photo_with_its_version_subject_time_and_site() -> None:
    (photo,) = photos_from_json(media(), CTX).photos
    assert photo.source is not None and photo.source.reference == "Media/m1/_history/3"
    assert photo.subject == "Patient/p1"
    assert photo.data == JPEG_BYTES and photo.binary_reference is None
    assert photo.taken_at is not None and photo.taken_at.utcoffset() == timedelta(hours=9)
    assert [c.code for c in photo.body_site] == ["53120007"]
    assert photo.kind_hint == "skin"
    assert photo.self_submitted is True
    check_declared_hash(photo, JPEG_BYTES)  # matches: no error


def test_the_senders_words_for_the_body_site_are_kept_beside_its_code() -> None:
    site = {"coding": [{"system": "http://snomed.info/sct", "code": "53120007"}], "text": " Left forearm "}
    (photo,) = photos_from_json(media(bodySite=site), CTX).photos
    assert photo.body_site_text == "Left forearm"
    (plain,) = photos_from_json(media(), CTX).photos
    assert plain.body_site_text is None
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "bodySite": [{"concept": {"coding": [{"system": "http://snomed.info/sct", "code": "29445007"}],
                                  "text": "Right lower eyelid"}}],
        "content": [{"attachment": {"contentType": "image/jpeg", "url": "Binary/j"}}],
    }  # fmt: skip
    (from_doc,) = photos_from_json(doc, CTX).photos
    assert from_doc.body_site_text == "Right lower eyelid"


def test_conjunctiva_body_site_hints_the_conjunctiva_pipeline() -> None:
    site = {"coding": [{"system": "http://snomed.info/sct", "code": "29445007"}]}
    (photo,) = photos_from_json(media(bodySite=site), CTX).photos
    assert photo.kind_hint == "conjunctiva"


@pytest.mark.parametrize(
    "url",
    ["Binary/b1", f"{BASE}/Binary/b1", "https://EHR.example.org:443/fhir/Binary/b1"],
)
def test_binary_on_the_same_server_is_accepted_as_a_relative_reference(url: str) -> None:
    (photo,) = photos_from_json(media(content=content(url=url)), CTX).photos
    assert photo.binary_reference == "Binary/b1" and photo.data is None


def test_r4_document_reference_picks_the_image_among_its_attachments() -> None:
    doc = {
        "resourceType": "DocumentReference",
        "id": "d1",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "author": [{"reference": "Patient/p1"}],
        "context": {
            "encounter": [{"reference": "Encounter/e1"}],
            "period": {"start": "2026-03-01T10:00:00+09:00"},
        },
        "content": [
            {"attachment": {"contentType": "application/pdf", "url": "Binary/pdf"}},
            {"attachment": {"contentType": "image/png", "url": "Binary/png"}},
        ],
    }
    (photo,) = photos_from_json(doc, CTX).photos
    assert photo.binary_reference == "Binary/png"
    assert photo.content_type == "image/png"
    assert photo.encounter == "Encounter/e1"
    assert photo.self_submitted is True
    assert photo.taken_at is not None and photo.taken_at.hour == 10


def test_r5_document_reference_reads_its_list_context_and_body_site() -> None:
    doc = {
        "resourceType": "DocumentReference",
        "id": "d5",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "context": [{"reference": "Encounter/e5"}],
        "bodySite": [{"concept": {"coding": [{"system": "http://snomed.info/sct", "code": "29445007"}]}}],
        "content": [{"attachment": {"contentType": "image/jpeg", "url": "Binary/j"}}],
    }
    (photo,) = photos_from_json(doc, CTX).photos
    assert photo.encounter == "Encounter/e5"
    assert photo.kind_hint == "conjunctiva"


def test_bundle_yields_every_photo_and_keeps_included_patients() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": media(id="a")},
            {"resource": media(id="b")},
            {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
        ],
    }
    batch = photos_from_json(bundle, CTX)
    assert [p.source.id for p in batch.photos if p.source] == ["a", "b"]
    assert batch.patients["Patient/p1"]["gender"] == "female"


def test_lenient_reading_of_odd_but_legal_content_type_and_wrapped_base64() -> None:
    wrapped = "\n".join(base64.b64encode(JPEG_BYTES).decode()[i : i + 76] for i in range(0, 200, 76))
    (photo,) = photos_from_json(
        media(content=content(contentType="Image/JPEG; charset=binary", data=wrapped)), CTX
    ).photos
    assert photo.content_type == "image/jpeg" and photo.data == JPEG_BYTES


# --- refusals: each has its own error and code -------------------------------------------------


def refusal(resource: Any, ctx: InputContext = CTX) -> errors.PhotomarkerError:
    with pytest.raises(errors.PhotomarkerError) as caught:
        photos_from_json(resource, ctx)
    return caught.value


def test_malformed_json() -> None:
    with pytest.raises(errors.MalformedJson, match="line 1"):
        load_json(b'{"resourceType": "Media",')


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"[1, 2]", "list"),
        (b'{"hello": "world"}', "no resourceType"),
        (b'{"resourceType": "Selfie"}', "not a FHIR resource type"),
        (b'{"resourceType": "Address"}', "not a FHIR resource type"),
    ],
)
def test_json_that_is_not_fhir(raw: bytes, why: str) -> None:
    with pytest.raises(errors.NotFhir, match=why):
        load_json(raw)


def test_fhir_resource_that_carries_no_photo() -> None:
    assert isinstance(refusal({"resourceType": "Patient", "id": "p1"}), errors.UnsupportedResource)


@pytest.mark.parametrize(
    "resource",
    [
        media(content=None),
        media(content={"contentType": "image/jpeg"}),
        {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/p"}},
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": {"resourceType": "Patient"}}],
        },
    ],
)
def test_no_image_content(resource: dict[str, Any]) -> None:
    assert isinstance(refusal(resource), errors.NoImageContent)


@pytest.mark.parametrize("content_type", ["application/pdf", "image/svg+xml", "image/gif", "text/plain"])
def test_content_type_outside_jpeg_png_heic_webp(content_type: str) -> None:
    error = refusal(media(content=content(contentType=content_type, url="Binary/x")))
    assert isinstance(error, errors.UnsupportedMediaType)
    assert content_type in error.message


def test_bad_base64_data() -> None:
    error = refusal(media(content=content(data="not*base64!")))
    assert isinstance(error, errors.BadBase64)
    assert error.expression == "Media.content.data"


def test_bad_base64_hash() -> None:
    assert isinstance(refusal(media(content=content(url="Binary/x", hash="%%%"))), errors.BadBase64)


def test_hash_mismatch() -> None:
    (photo,) = photos_from_json(media(), CTX).photos
    with pytest.raises(errors.HashMismatch):
        check_declared_hash(photo, JPEG_BYTES + b"tampered")


def test_sha256_hash_is_checked_too() -> None:
    declared = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    (photo,) = photos_from_json(
        media(content=content(data=base64.b64encode(JPEG_BYTES).decode(), hash=declared)), CTX
    ).photos
    with pytest.raises(errors.HashMismatch, match="SHA256"):
        check_declared_hash(photo, JPEG_BYTES)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",  # link-local cloud metadata
        "http://[fe80::1]/fhir/Binary/b1",
        "https://attacker.example.com/fhir/Binary/b1",  # another host
        "https://ehr.example.org.attacker.example/fhir/Binary/b1",  # prefix trick
        "https://ehr.example.org:8443/fhir/Binary/b1",  # another port
        "http://ehr.example.org/fhir/Binary/b1",  # downgraded scheme
        "https://user@ehr.example.org/fhir/Binary/b1",
        f"{BASE}/Patient/p1",  # same server, not a Binary
        f"{BASE}/Binary/b1?redirect=http://x",
        f"{BASE}/../Binary/b1",
        "Binary/../../etc/passwd",
        "Binary/..",
        "Binary/b1/_history/..",
        "ftp://ehr.example.org/fhir/Binary/b1",
        "urn:uuid:1f0d7e4c-0000-4000-8000-000000000000",
    ],
)
def test_url_that_is_not_a_binary_on_the_same_server_is_never_fetched(url: str) -> None:
    error = refusal(media(content=content(url=url)))
    assert isinstance(error, errors.UrlNotAllowed)


def test_absolute_url_with_no_fhir_server_configured_is_refused() -> None:
    with pytest.raises(errors.UrlNotAllowed):
        binary_reference(f"{BASE}/Binary/b1", None)


def test_missing_subject() -> None:
    error = refusal(media(subject=None))
    assert isinstance(error, errors.MissingSubject)
    assert error.expression == "Media.subject"


def test_subject_that_is_not_a_patient() -> None:
    assert isinstance(refusal(media(subject={"reference": "Group/g1"})), errors.MissingSubject)


def test_subject_other_than_the_launch_patient() -> None:
    ctx = InputContext(fhir_base=BASE, expected_patient="Patient/someone-else")
    assert isinstance(refusal(media(), ctx), errors.SubjectMismatch)


def test_declared_size_over_the_limit_is_refused_before_fetching() -> None:
    ctx = InputContext(fhir_base=BASE, max_bytes=1000)
    assert isinstance(refusal(media(content=content(url="Binary/b", size=5000)), ctx), errors.PhotoTooLarge)


def test_inline_data_over_the_limit_is_refused_before_base64_decoding() -> None:
    ctx = InputContext(fhir_base=BASE, max_bytes=10)
    assert isinstance(refusal(media(), ctx), errors.PhotoTooLarge)


def test_entered_in_error_media_is_not_analysed() -> None:
    assert isinstance(refusal(media(status="entered-in-error")), errors.InvalidResource)


def test_every_refusal_becomes_an_operation_outcome_with_its_code() -> None:
    error = refusal(media(content=content(url="file:///etc/passwd")))
    outcome = operation_outcome(error, "https://photomarker.example.org/fhir")
    issue = outcome["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] == "security"
    assert issue["details"]["coding"][0]["code"] == "url-not-allowed"
    assert issue["expression"] == ["Media.content.url"]
    json.dumps(outcome)


def test_error_codes_are_unique_and_stable() -> None:
    codes = [cls.code for cls in errors.ALL_ERRORS]
    assert len(codes) == len(set(codes))
