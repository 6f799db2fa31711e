"""Observations → what the result panel shows, generically by Photomarker code.

Whatever result types exist today (the Hb estimate, the photo quality, "not performed") or arrive
with the skin models (TIS, condition probabilities, tumour), each Observation is read by its code
in Photomarker's code system; an unknown code still shows its text and value. The reader is
lenient (any ``…/CodeSystem/photomarker`` system, so results written under another canonical base
show too) and never trusts a field to be present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_mappings import codes
from fhir_mappings.observations import SUGGESTED_TYPE
from fhir_mappings.record_weighing import PHOTO_ONLY_CODE
from plugin.clinician.wording import day, percent

# The heat map that explains a result (see fhir_mappings.observations).
SUPPORTING_INFO = codes.EXT_SUPPORTING_INFO
TREND_CODES = {"tis": "Three Item Severity (0–9)", "hb-estimate-conjunctiva-photo": "Haemoglobin (g/dL)"}
_REFERENCE = re.compile(r"(?:^|/)((?:Media|DocumentReference)/[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_MODEL = re.compile(r"^AI analysis of a photograph by (.+)$")
# The builders' own wording of a panel's top classes ("… (probability 82 %)", "Top 3: …"): the page
# says the same from the components, in its one probability format.
_PANEL_TEXT = re.compile(r"\(probability [<>]?\d|^Top \d+:")
# A video's or series' frame components, and the builders' notes that say the same in a sentence:
# the page shows them as its own "frames" rows instead (never as a probability bar).
_FRAME_CODES = frozenset(
    {"frames-analysed", "frames-rejected", "frame-agreement", "frame-range", "frame-spread"}
)
# How ``fhir_mappings.observations`` words an abstention, and the threshold inside its reason.
_ABSTAINED = re.compile(r"^the model abstained \((.*)\)$", re.S)
_THRESHOLD = re.compile(r" \((threshold [^)]*)\)")
_FRAME_NOTE = re.compile(r"^(From \d+ frames|From a series of|Accumulated over)")


@dataclass
class Bar:
    label: str
    probability: float


@dataclass
class ResultView:
    """One result, ready for the template."""

    code: str
    title: str
    status: str
    headline: str | None = None
    interpretation: list[str] = field(default_factory=list)
    flag: str | None = None  # "Low" / "Normal" (v3 interpretation), shown as a word and a symbol
    items: list[tuple[str, str]] = field(default_factory=list)  # sub-scores, interval, checks
    # A video's or series' result: what it rests on ("Frames analysed", "9 of 10"), how steady it was.
    frames: list[tuple[str, str]] = field(default_factory=list)
    frame_unit: str = "frames"  # or "photos", for a series
    bars: list[Bar] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model: str | None = None
    reference_only: bool = False
    abstained: bool = False
    abstention: str | None = None  # why the model declined, in words ("… was trained on.")
    abstention_figures: str | None = None  # its numbers ("threshold 4.2; spread 0.316"), shown folded
    not_performed: bool = False
    retake: bool = False
    body_site: str | None = None
    effective: datetime | None = None
    # Every photo it was derived from ("Media/1"): one, or each photo of a series.
    photos: tuple[str, ...] = ()
    link: str | None = None  # "Observation/7" when saved in the EHR
    heatmap: str | None = None  # "Media/9" (saved) or "urn:uuid:…" (in an unsaved bundle)

    @property
    def conclusive(self) -> bool:
        """False when there is no result to act on: the model abstained, or nothing ran."""
        return not (self.abstained or self.not_performed)

    @property
    def top(self) -> Bar | None:
        return max(self.bars, key=lambda bar: bar.probability) if self.bars else None

    @property
    def when(self) -> str | None:
        return day(self.effective)

    @property
    def brief(self) -> str:
        """One line for "Earlier results": the value, or the top class and its probability."""
        if self.not_performed:
            return "No conclusion — not performed"
        if self.abstained:
            return "No conclusion — the model abstained"
        top = self.top
        if top is not None and self.headline is None:
            return f"{top.label} {percent(top.probability)}"
        shown = self.headline or "no value recorded"
        if self.flag:
            shown += f" ({self.flag.lower()})"
        if top is not None:
            shown += f"; most likely {top.label} {percent(top.probability)}"
        return shown


def photomarker_code(observation: dict[str, Any]) -> str | None:
    """The Observation's code in Photomarker's own code system, if it has one."""
    code = observation.get("code")
    for coding in code.get("coding", []) if isinstance(code, dict) else []:
        if (
            isinstance(coding, dict)
            and str(coding.get("system", "")).endswith("/CodeSystem/photomarker")
            and isinstance(coding.get("code"), str)
        ):
            return str(coding["code"])
    return None


def derived_from(observation: dict[str, Any]) -> tuple[str, ...]:
    """The photos and videos it was derived from, without their versions, in the Observation's order."""
    found: list[str] = []
    for ref in observation.get("derivedFrom") or []:
        match = _REFERENCE.search(str(ref.get("reference", ""))) if isinstance(ref, dict) else None
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return tuple(found)


def effective(observation: dict[str, Any]) -> datetime | None:
    for name in ("effectiveDateTime", "issued"):
        value = observation.get(name)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
    return None


def result_view(observation: dict[str, Any], *, link: str | None = None) -> ResultView | None:
    """The panel for one Photomarker Observation; None for anything else."""
    code = photomarker_code(observation)
    if code is None:
        return None
    text = _text(observation.get("code"))
    view = ResultView(
        code=code,
        title=codes.LOCAL_CONCEPTS.get(code, (text or code, ""))[0],
        status=str(observation.get("status", "")),
        effective=effective(observation),
        photos=derived_from(observation),
        link=link,
        body_site=_text(observation.get("bodySite")),
    )
    notes = [
        str(n.get("text")) for n in observation.get("note") or [] if isinstance(n, dict) and n.get("text")
    ]
    view.reference_only = any(codes.REFERENCE_ONLY_TEXT in note for note in notes)
    view.notes = [note for note in notes if codes.REFERENCE_ONLY_TEXT not in note]
    if any(note.startswith("From a series of") for note in notes):
        view.frame_unit = "photos"
    method = _text(observation.get("method"))
    model = _MODEL.match(method or "")
    view.model = model.group(1) if model else method
    for interpretation in observation.get("interpretation") or []:
        shown = _text(interpretation)
        codings = interpretation.get("coding", []) if isinstance(interpretation, dict) else []
        if any(isinstance(c, dict) and c.get("code") == "model-abstained" for c in codings):
            # Said once, prominently, with the model's reason; not again as a plain line.
            reason = (shown or "").removeprefix("No conclusion: ")
            view.abstained = True
            view.abstention, view.abstention_figures = abstention_words(reason)
            continue
        if shown:
            view.interpretation.append(shown)
        for coding in codings:
            if isinstance(coding, dict) and coding.get("system") == codes.V3_INTERPRETATION:
                view.flag = {"L": "Low", "N": "Normal", "H": "High"}.get(str(coding.get("code")))
    if view.abstained:
        view.notes = [note for note in view.notes if not note.startswith("The model abstained")]
    for reference in observation.get("referenceRange") or []:
        if isinstance(reference, dict) and isinstance(reference.get("text"), str):
            view.items.append(("Reference", reference["text"]))
    if observation.get("dataAbsentReason") is not None or view.status == "cancelled":
        view.not_performed = True
        return view
    view.heatmap = _heatmap(observation)
    _value(observation, view)
    for component in observation.get("component") or []:
        if isinstance(component, dict):
            _component(component, view)
    if view.frames:
        view.notes = [note for note in view.notes if not _FRAME_NOTE.match(note)]
    top = view.top
    named_by_rule = any(text.startswith(SUGGESTED_TYPE) for text in view.interpretation)
    if top is not None and not view.abstained and not named_by_rule:
        # The builders' panel sentence is replaced by the page's own wording of the same top class;
        # a type named by a model's balanced rule is kept as the Observation words it.
        view.interpretation = [text for text in view.interpretation if not _PANEL_TEXT.search(text)]
        view.interpretation.insert(0, f"Most likely: {top.label} ({percent(top.probability)})")
    return view


def abstention_words(reason: str) -> tuple[str | None, str | None]:
    """The builders' "the model abstained (WHY (threshold T); spread S; …)" → ("The model abstained:
    WHY.", "threshold T; spread S; …"): the words for the clinician, the numbers for who asks."""
    inner = _ABSTAINED.match(reason)
    if inner is None:
        return (reason[:1].upper() + reason[1:]) or None, None
    why, *figures = inner.group(1).split("; ")
    threshold = _THRESHOLD.search(why)
    if threshold is not None:
        figures.insert(0, threshold.group(1))
        why = why[: threshold.start()]
    return f"The model abstained: {why.rstrip('. ')}.", "; ".join(figures) or None


def _value(observation: dict[str, Any], view: ResultView) -> None:
    if isinstance(observation.get("valueInteger"), int):
        total = observation["valueInteger"]
        view.headline = f"{total} of 9" if view.code == "tis" else str(total)
    elif isinstance(observation.get("valueQuantity"), dict):
        quantity = observation["valueQuantity"]
        value = quantity.get("value")
        if quantity.get("code") == "1" and isinstance(value, int | float) and 0.0 <= value <= 1.0:
            view.headline = percent(float(value))  # a probability, written as every other one is
        else:
            view.headline = _quantity(quantity)
    elif isinstance(observation.get("valueCodeableConcept"), dict):
        concept = observation["valueCodeableConcept"]
        view.headline = _text(concept)
        view.retake = any(
            isinstance(c, dict) and c.get("code") == "photo-quality-retake" for c in concept.get("coding", [])
        )


def _component(component: dict[str, Any], view: ResultView) -> None:
    code = photomarker_code(component)
    if code in _FRAME_CODES:
        _frame_component(str(code), component, view)
        return
    label = _text(component.get("code")) or "Component"
    quantity = component.get("valueQuantity")
    if code == PHOTO_ONLY_CODE and isinstance(quantity, dict):
        # Not a type's bar: the same malignancy probability, before the record was weighed in.
        value = quantity.get("value")
        if isinstance(value, int | float):
            view.items.append(("Malignant, from the photo alone", percent(float(value))))
        return
    if view.code != "photo-quality" and isinstance(quantity, dict) and quantity.get("code") == "1":
        # A probability (UCUM "1", 0–1) of a class: whichever classifier wrote it, a bar.
        value = quantity.get("value")
        if isinstance(value, int | float) and 0.0 <= value <= 1.0:
            view.bars.append(Bar(label, float(value)))
            return
    if isinstance(component.get("valueInteger"), int):
        view.items.append(
            (
                label,
                f"{component['valueInteger']} of 3" if view.code == "tis" else str(component["valueInteger"]),
            )
        )
    elif isinstance(component.get("valueRange"), dict):
        low, high = component["valueRange"].get("low"), component["valueRange"].get("high")
        if isinstance(low, dict) and isinstance(high, dict):
            view.items.append((label, f"{_quantity(low, unit=False)}–{_quantity(high)}"))
    elif isinstance(quantity, dict):
        verdict = "; ".join(filter(None, (_text(i) for i in component.get("interpretation") or [])))
        view.items.append((label, _quantity(quantity) + (f" — {verdict}" if verdict else "")))


def _frame_component(code: str, component: dict[str, Any], view: ResultView) -> None:
    unit = view.frame_unit
    quantity = component.get("valueQuantity")
    value = quantity.get("value") if isinstance(quantity, dict) else component.get("valueInteger")
    if code == "frames-analysed" and isinstance(value, int):
        view.frames.append((f"{unit.capitalize()} analysed", str(value)))
    elif code == "frames-rejected" and isinstance(value, int):
        view.frames.append((f"{unit.capitalize()} dropped by the quality gate", str(value)))
    elif code == "frame-agreement" and isinstance(value, int | float):
        # A share of frames counted, not a probability: 100 % is what it says.
        share = f"{round(float(value) * 100)}\u00a0%"
        view.frames.append(("Agreement", f"{share} of the {unit} agree with this result"))
    elif code == "frame-range" and isinstance(component.get("valueRange"), dict):
        measure = _text(component.get("code")) or f"value over the {unit}"
        low, high = (component["valueRange"].get(end, {}).get("value") for end in ("low", "high"))
        if isinstance(low, int | float) and isinstance(high, int | float):
            probability = measure.startswith("probability")
            shown = f"{percent(low)} to {percent(high)}" if probability else f"{low:g}–{high:g}"
            view.frames.append((f"Range of the {measure}", shown))
    elif code == "frame-spread" and isinstance(value, int | float):
        view.frames.append((f"Spread over the {unit} (interquartile range)", f"{value:g}"))


def _heatmap(observation: dict[str, Any]) -> str | None:
    for extension in observation.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == SUPPORTING_INFO:
            reference = (extension.get("valueReference") or {}).get("reference")
            if isinstance(reference, str):
                return reference
    return None


def _quantity(quantity: dict[str, Any], *, unit: bool = True) -> str:
    value = quantity.get("value")
    shown = f"{value:g}" if isinstance(value, int | float) else "?"
    symbol = str(quantity.get("unit") or quantity.get("code") or "")
    if symbol.startswith("{") and symbol.endswith("}"):
        symbol = symbol[1:-1]  # a UCUM annotation such as {px}: the word is the unit
    if not unit or not symbol or symbol == "1":
        return shown
    return f"{shown} {symbol}"


def _text(concept: Any) -> str | None:
    if not isinstance(concept, dict):
        return None
    if isinstance(concept.get("text"), str) and concept["text"]:
        return str(concept["text"])
    for coding in concept.get("coding", []):
        if isinstance(coding, dict) and coding.get("display"):
            return str(coding["display"])
    for coding in concept.get("coding", []):
        if isinstance(coding, dict) and coding.get("code"):
            return str(coding["code"])
    return None


def sort_key(view: ResultView) -> tuple[int, str]:
    """Model results first, then the photo's quality, then what was not performed."""
    rank = 2 if view.not_performed else 1 if view.code == "photo-quality" else 0
    return rank, view.code
