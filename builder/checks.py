"""A model's text checked against what the pipeline measured, attribute by attribute.

The facts come from the row alone (:func:`facts_of`: modality, MR sequence,
organ, plane, pixel spacing, and each ROI's label, stored position and area), so
the build, ``medtri-build describe``, imported batch results and ``validate``
all check the same way. Each rule looks for what the text *states* and says
nothing when the text states nothing it covers; a rule that found something to
check is listed in ``checked``, and what it found against the facts in
``contradictions`` ("side: text puts 'left hippocampus' on the patient's right").

========  ==========================================================================================
rule      contradiction
========  ==========================================================================================
modality  the modality attribute (else the text) names modalities, none of them the row's
sequence  an MRI row of known sequence: the text names sequences, none of them the row's (FLAIR is T2)
organ     the global attributes name organs, none of them in the row's organ's body region
plane     the text names imaging planes (not "sagittal sinus"), none of them the row's
side      a sentence naming one ROI puts it on the other side of the patient (or of the image)
position  a sentence naming one ROI puts it at the opposite end of an axis (anterior for posterior)
count     "N regions (of interest)" / "N annotated structures" with N not the row's number of ROIs
area      "covers N% (of the image)", "area ratio N%" far from every ROI's and their total
size      a length in mm or cm: where the pixel spacing is unknown (invented), or far from every ROI's extent
========  ==========================================================================================

Tolerances: an area within max(0.5 points, 25%); a length within max(2 mm, 25%) of a box side or diagonal.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from builder.anatomy import plain_label
from builder.imaging import RADIOLOGY
from builder.vocabulary import MODALITY, terms

__all__ = ["RULES", "Checks", "Facts", "RoiFact", "check", "facts_of"]

RULES = ("modality", "sequence", "organ", "plane", "side", "position", "count", "area", "size")

#: Body regions of the organ vocabulary (:data:`builder.vocabulary.ORGANS`): organs of one region may be named
#: together; bone, muscle, skin, spine and aorta are in several.
REGIONS = {
    "brain": {"head"}, "skull": {"head"}, "eye": {"head"}, "sinus": {"head"}, "neck": {"neck"},
    "thyroid": {"neck"}, "spine": {"neck", "chest", "abdomen", "pelvis"},
    "chest": {"chest"}, "lung": {"chest"}, "heart": {"chest"}, "aorta": {"chest", "abdomen"}, "breast": {"chest"},
    "abdomen": {"abdomen"}, "liver": {"abdomen"}, "gallbladder": {"abdomen"}, "pancreas": {"abdomen"},
    "spleen": {"abdomen"}, "kidney": {"abdomen"}, "adrenal": {"abdomen"}, "bowel": {"abdomen", "pelvis"},
    "stomach": {"abdomen"}, "bladder": {"pelvis"}, "pelvis": {"pelvis"}, "uterus": {"pelvis"}, "ovary": {"pelvis"},
    "prostate": {"pelvis"}, "knee": {"limb"}, "shoulder": {"limb"}, "hip": {"pelvis", "limb"},
}
ANYWHERE = {"bone", "muscle", "skin"}
NUMBERS = {"a single": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
           "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_COUNT = re.compile(r"\b(\d+|a single|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)\s+"
                    r"(?:(annotated|distinct|separate|labell?ed|marked)\s+)?"
                    r"(regions? of interest|regions?|rois?|structures?)\b", re.I)
_AREA = re.compile(r"(?:area ratio|cover\w*|occup\w*|span\w*|takes? up|accounts? for)\D{0,25}?(\d+(?:\.\d+)?)\s*%"
                   r"|(\d+(?:\.\d+)?)\s*%\s+of\s+the\s+(?:image|area|slice|frame|field)", re.I)
_LENGTH = re.compile(r"(\d+(?:\.\d+)?)(?:\s*(?:x|×|by)\s*(\d+(?:\.\d+)?))?\s*(mm|cm)\b", re.I)
_NOT_PLANES = re.compile(r"sagittal (?:sinus|suture|band)|coronal suture|axial (?:skeleton|load\w*)", re.I)
_IMAGE_SIDE = re.compile(r"\b(?:left|right)(?:\s+side)?\s+of\s+the\s+image\b|\bimage(?:'s)?\s+(?:left|right)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.;!?])\s+(?=[A-Z(])")
_SIDE_WORDS = re.compile(r"\b(left|right)\b", re.I)
_VERTICAL = {"axial": {"anterior": "upper", "posterior": "lower", "upper": "upper", "lower": "lower"},
             "sagittal": {"superior": "upper", "inferior": "lower", "upper": "upper", "lower": "lower"}}
_VERTICAL_DEFAULT = {"superior": "upper", "inferior": "lower", "upper": "upper", "lower": "lower"}
OPPOSITE = {"upper": "lower", "lower": "upper", "left": "right", "right": "left"}


@dataclass(frozen=True)
class RoiFact:
    name: str  # plain name without its side ("hippocampus")
    side: str | None  # the patient's left/right: the label's, else the stored position's in a radiology view
    row: str  # the stored position's row: upper, center, lower
    col: str  # and column: left, center, right
    area: float  # area ratio
    extent_mm: tuple[float, float] | None  # box width and height in mm, where the spacing is known


@dataclass(frozen=True)
class Facts:
    modality: str
    sequence: str | None
    organs: frozenset[str]  # the row's organ in the organ vocabulary
    plane: str | None
    view: str  # axial, coronal, sagittal, radiological (unknown plane) or image (not radiology)
    rois: tuple[RoiFact, ...]
    spacing: tuple[float, float] | None


@dataclass(frozen=True)
class Checks:
    checked: tuple[str, ...]
    contradictions: tuple[str, ...]

    def as_row(self, action: str | None) -> dict[str, Any]:
        """The row's ``checks`` column: what was checked, what contradicted, and what was done about it."""
        return {"checked": list(self.checked), "contradictions": list(self.contradictions), "action": action}

    @property
    def rules(self) -> list[str]:
        """The rule of each contradiction."""
        return [c.split(":", 1)[0] for c in self.contradictions]


def _view(modality: str, plane: str | None) -> str:
    if modality not in RADIOLOGY:
        return "image"
    return plane if plane in ("axial", "coronal", "sagittal") else "radiological"


def _roi_fact(roi: Mapping[str, Any], view: str, spacing: tuple[float, float] | None) -> RoiFact:
    plain = plain_label(str(roi.get("label") or ""))
    side, name = None, plain
    for word in ("left", "right"):
        if plain.lower().startswith(word + " "):
            side, name = word, plain[len(word) + 1:]
    position = str(roi.get("position") or "center")
    row, col = ("center", "center") if position == "center" else position.split("-", 1)
    if side is None and view in ("axial", "coronal", "radiological") and col != "center":
        side = OPPOSITE[col]  # radiological convention: the image's left is the patient's right
    x0, y0, x1, y1 = (float(v) for v in roi.get("bbox") or (0, 0, 0, 0))
    extent = ((x1 - x0) * spacing[1], (y1 - y0) * spacing[0]) if spacing else None
    return RoiFact(name.lower(), side, row, col, float(roi.get("area_ratio") or 0.0), extent)


def facts_of(row: Mapping[str, Any]) -> Facts:
    """What the pipeline measured of a row, from the row's own columns."""
    modality, plane = str(row.get("modality") or ""), row.get("plane")
    spacing = tuple(row["pixel_spacing"]) if row.get("pixel_spacing") else None
    view = _view(modality, plane)
    rois = tuple(_roi_fact(roi, view, spacing) for roi in row.get("rois") or [])
    return Facts(modality, (row.get("details") or {}).get("sequence"),
                 frozenset(terms(str(row.get("organ") or ""), "organs")), plane, view, rois,
                 spacing)


def _global_text(text: Mapping[str, str]) -> str:
    """The global attributes (modality, organs), or a paragraph's first two sentences."""
    found = " ".join(text.get(k) or "" for k in ("modality", "organ_detection")).strip()
    return found or " ".join(_SENTENCE.split(text.get("caption") or "")[:2])


def _whole(text: Mapping[str, str]) -> str:
    return " ".join(v for v in text.values() if v)


def _exclusive(rule: str, named: set[str], fact: str | None) -> list[str] | None:
    """A rule of alternatives (modality, sequence, plane): None when nothing is named or known."""
    if not named or not fact:
        return None
    return [] if fact in named else [f"{rule}: text says {', '.join(sorted(named))}, the row is {fact}"]


def _modality(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    named = terms(text.get("modality") or "", "modality") or terms(_whole(text), "modality")
    return _exclusive("modality", named, facts.modality if facts.modality in _NAMED else None)


def _sequence(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    if facts.modality != "mri":
        return None
    named = terms(_whole(text), "sequences")
    if "FLAIR" in named:
        named.add("T2")  # FLAIR is a T2-weighted sequence: "T2-FLAIR"
    return _exclusive("sequence", named, facts.sequence)


def _organ(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    named = terms(_global_text(text), "organs") - ANYWHERE
    known = facts.organs - ANYWHERE
    if not named or not known:
        return None
    regions = set().union(*(REGIONS.get(o, set()) for o in known))
    if any(REGIONS.get(o, set()) & regions for o in named) or not regions:
        return []
    return [f"organ: text names {', '.join(sorted(named))}, the row is of the {', '.join(sorted(known))}"]


def _plane(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    return _exclusive("plane", terms(_NOT_PLANES.sub(" ", _whole(text)), "planes"), facts.plane)


def _mentions(text: Mapping[str, str], facts: Facts) -> list[tuple[str, str, list[RoiFact]]]:
    """(sentence with the ROI's name taken out, name, the ROIs of that name) for each sentence naming one ROI
    name only (a sentence relating two regions is left to the relation)."""
    names = sorted({roi.name for roi in facts.rois if len(roi.name) > 2}, key=len, reverse=True)
    found = []
    for key in ("roi_analysis", "texture", "region_relationship", "caption"):
        for sentence in _SENTENCE.split(text.get(key) or ""):
            low = sentence.lower()
            hits = [n for n in names if re.search(rf"\b{re.escape(n)}\b", low)]
            hits = [n for n in hits if not any(n != m and n in m for m in hits)]  # "cerebellum" in "cerebellum, crus"
            if len(hits) == 1:
                rest = re.sub(rf"\b{re.escape(hits[0])}\b", " ", low)
                found.append((rest, hits[0], [r for r in facts.rois if r.name == hits[0]]))
    return found


def _side(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    if facts.view == "sagittal":
        return None  # left/right are not in a sagittal slice's plane
    out: list[str] | None = None
    for rest, name, rois in _mentions(text, facts):
        said = {w.lower() for w in _SIDE_WORDS.findall(_IMAGE_SIDE.sub(" ", rest))}
        if facts.view == "image":
            known = {r.col for r in rois if r.col != "center"}
        else:
            known = {r.side for r in rois if r.side}
        if not said or not known or len(said) > 1:
            continue
        out = out or []
        if not said & known:
            where = "the image's" if facts.view == "image" else "the patient's"
            out.append(f"side: text puts {name!r} on {where} {said.pop()}, measured {', '.join(sorted(known))}")
    return out


def _position(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    words = _VERTICAL.get(facts.view, _VERTICAL_DEFAULT)
    pattern = re.compile(rf"\b({'|'.join(words)})\b")
    out: list[str] | None = None
    for rest, name, rois in _mentions(text, facts):
        said = {words[w] for w in pattern.findall(rest)}
        known = {r.row for r in rois}
        if len(said) != 1 or "center" in known:
            continue
        out = out or []
        stated = said.pop()
        if OPPOSITE[stated] in known and stated not in known:
            word = next(w for w, cell in words.items() if cell == stated)
            out.append(f"position: text puts {name!r} in the {word} part, measured the opposite")
    return out


def _count(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    out: list[str] | None = None
    for match in _COUNT.finditer(_whole(text)):
        number = match.group(1).lower()
        stated = int(number) if number.isdigit() else NUMBERS[number]
        out = out or []
        if stated != len(facts.rois):
            out.append(f"count: text says {stated} {match.group(3)}, the row has {len(facts.rois)}")
    return out


def _near(value: float, targets: Sequence[float], floor: float) -> bool:
    return any(abs(value - t) <= max(floor, 0.25 * t) for t in targets)


def _area(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    stated = [float(a or b) for a, b in _AREA.findall(_whole(text))]
    if not stated:
        return None
    areas = [100 * r.area for r in facts.rois] + [min(100.0, 100 * sum(r.area for r in facts.rois))]
    return [f"area: text says {value:g}%, measured {', '.join(f'{a:.1f}%' for a in areas[:4])}"
            for value in stated if not _near(value, areas, 0.5)]


def _size(text: Mapping[str, str], facts: Facts) -> list[str] | None:
    stated = [(float(v) * (10 if unit.lower() == "cm" else 1), f"{v} {unit}")
              for a, b, unit in _LENGTH.findall(_whole(text)) for v in (a, b) if v]
    if not stated:
        return None
    if not facts.spacing:
        return [f"size: text gives {said}, but the image's pixel spacing is unknown" for _, said in stated[:1]]
    extents = [e for r in facts.rois if r.extent_mm for e in (*r.extent_mm, math.hypot(*r.extent_mm))]
    return [f"size: text gives {said}, measured extents {', '.join(f'{e:.0f} mm' for e in extents[:4])}"
            for value, said in stated if not _near(value, extents, 2.0)]


_NAMED = frozenset(MODALITY.values())  # the modalities the vocabulary can recognise in text
_RULES = {"modality": _modality, "sequence": _sequence, "organ": _organ, "plane": _plane, "side": _side,
          "position": _position, "count": _count, "area": _area, "size": _size}


def check(text: Mapping[str, str | None], facts: Facts) -> Checks:
    """Every rule on one text (the five attributes, and ``caption`` where the style has it)."""
    clean = {k: str(v) for k, v in text.items() if v}
    checked, contradictions = [], []
    for name, rule in _RULES.items():
        found = rule(clean, facts)
        if found is not None:
            checked.append(name)
            contradictions += found
    return Checks(tuple(checked), tuple(contradictions))
