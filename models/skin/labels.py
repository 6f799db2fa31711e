"""The skin tasks' label sets and their codes: body sites, AD vs complications, the diagnosis list.

Codes follow FHIR.md: SNOMED CT where the table gives one (several still marked *verify* there,
and listed in ``fhir_mappings.codes.SNOMED_STATUS``), Photomarker's own code system otherwise.
The N-class diagnosis label set is configuration: :data:`DEFAULT_DIAGNOSES` is the set the
generator can draw, and a site trains its own list by naming it in the training manifest's
``diagnosis`` column plus an optional JSON label file (see :func:`load_label_file`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from models.errors import DatasetError
from models.manifest import LabelSpec
from models.results import SNOMED

NOT_SKIN: Final = "not-skin"

# Body sites of the Keio body-part detector (trunk split front/back as the issue asks), plus
# "not skin". SNOMED body structures from FHIR.md (status: verify), with the displays of
# ``fhir_mappings.codes.BODY_SITES``; the back of the trunk has no code in FHIR.md's table, so it
# is local (codes must be unique per model), like "not skin".
BODY_PARTS: Final[tuple[LabelSpec, ...]] = (
    LabelSpec(code="89545001", display="Face structure", system=SNOMED, group="face"),
    LabelSpec(code="45048000", display="Neck structure", system=SNOMED, group="neck"),
    LabelSpec(code="22943007", display="Trunk structure", system=SNOMED, group="trunk-front"),
    LabelSpec(code="trunk-back", display="Back of trunk", group="trunk-back"),
    LabelSpec(code="53120007", display="Upper limb structure", system=SNOMED, group="upper-limb"),
    LabelSpec(code="85562004", display="Hand structure", system=SNOMED, group="hand"),
    LabelSpec(code="61685007", display="Lower limb structure", system=SNOMED, group="lower-limb"),
    LabelSpec(code="56459004", display="Foot structure", system=SNOMED, group="foot"),
    LabelSpec(code=NOT_SKIN, display="Not skin", group=NOT_SKIN),
)
BODY_PART_KEYS: Final[tuple[str, ...]] = tuple(label.group or label.code for label in BODY_PARTS)

# The Tohoku AD-AI question: atopic dermatitis, or one of its complications?
AD_COMPLICATIONS: Final[tuple[LabelSpec, ...]] = (
    LabelSpec(code="24079001", display="Atopic dermatitis", system=SNOMED, group="atopic-dermatitis"),
    LabelSpec(code="48277006", display="Impetigo", system=SNOMED, group="impetigo"),
    # No SNOMED concept was found for eczema herpeticum (FHIR.md): local code, ICD-10 B00.0.
    LabelSpec(
        code="eczema-herpeticum",
        display="Eczema herpeticum (Kaposi varicelliform eruption)",
        group="eczema-herpeticum",
    ),
    LabelSpec(code="118618005", display="Mycosis fungoides", system=SNOMED, group="mycosis-fungoides"),
)
AD_COMPLICATION_KEYS: Final[tuple[str, ...]] = tuple(label.group or label.code for label in AD_COMPLICATIONS)

# The generator's diagnosis list: the four above and four look-alikes a clinic meets. Codes not
# in FHIR.md's table are local until checked against a terminology server.
DEFAULT_DIAGNOSES: Final[tuple[LabelSpec, ...]] = (
    *AD_COMPLICATIONS,
    LabelSpec(code="psoriasis", display="Psoriasis", group="psoriasis"),
    LabelSpec(code="tinea-corporis", display="Tinea corporis", group="tinea-corporis"),
    LabelSpec(code="urticaria", display="Urticaria", group="urticaria"),
    LabelSpec(code="vitiligo", display="Vitiligo", group="vitiligo"),
)
DEFAULT_DIAGNOSIS_KEYS: Final[tuple[str, ...]] = tuple(
    label.group or label.code for label in DEFAULT_DIAGNOSES
)

TIS_ITEMS: Final[tuple[str, ...]] = ("erythema", "oedema_papulation", "excoriation")
TIS_LEVELS: Final = 4  # each item 0–3


def key_of(label: LabelSpec) -> str:
    """The value a training manifest writes for this class."""
    return label.group or label.code


def labels_for_keys(keys: list[str], known: tuple[LabelSpec, ...]) -> tuple[LabelSpec, ...]:
    """Label specs for the classes a manifest uses: known ones keep their codes, others get local ones."""
    by_key = {key_of(label): label for label in known}
    out = []
    for key in keys:
        out.append(
            by_key.get(key) or LabelSpec(code=key, display=key.replace("-", " ").capitalize(), group=key)
        )
    return tuple(out)


def load_label_file(path: Path) -> tuple[LabelSpec, ...]:
    """A site's diagnosis list: a JSON array of ``{"key", "code", "display", "system"?}``, in order."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read label file {path.name}: {exc}") from None
    if not isinstance(entries, list) or len(entries) < 2:
        raise DatasetError(f"{path.name}: expected a JSON array of at least two labels")
    labels = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not {"key", "code", "display"} <= set(entry):
            raise DatasetError(f"{path.name}: entry {index} needs key, code and display")
        labels.append(
            LabelSpec(
                code=str(entry["code"]),
                display=str(entry["display"]),
                system=entry.get("system"),
                group=str(entry["key"]),
            )
        )
    return tuple(labels)
