"""``format: medpix``: MedPix 2.0 as its authors publish it.

``root`` holds ``images/<image>.png`` and either the split files
``data_<split>.jsonl`` + ``descriptions_<split>.jsonl`` (each split becomes a
split of the configs) or ``Case_topic.json`` + ``Descriptions.json`` (one split,
the manifest's ``split``). Each image description is one unit; its case (by
``U_id``) gives the diagnosis and the report kept as reference text.

Curation rules (``RULES``) flag noisy samples before any pixel is read; a
curation file (``curation:``) keeps or drops ids by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

from builder.errors import Problem, Reject, Stage
from builder.imaging import MISSING
from builder.pipeline.data import Record, Unit
from builder.pipeline.readers import READERS
from builder.pipeline.sources.base import FileSource, Rule, relative
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import RootOptions
from medtrinity_25m import REFERENCE_KEYS

TYPES = {"CT": "ct", "MR": "mri"}
_SAFE_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
PLANES = {"axial": "axial", "transverse": "axial", "coronal": "coronal", "sagittal": "sagittal"}
#: MedPix's organ-system locations. Anything else ("Bethesda, MD", "Left Blank") is flagged.
KNOWN_LOCATIONS = frozenset({
    "Abdomen", "Brain and Neuro", "Breast and Mammography", "Cardiovascular", "Chest, Pulmonary",
    "Dental, Oral, or Tooth", "Endocrine", "Eye and Orbit", "Gastrointestinal", "Generalized",
    "Genitourinary", "Head and Neck", "Hematopoietic", "Multisystem", "Musculoskeletal", "Nerve, central",
    "Nerve, peripheral", "Obstetrics", "Ophthalmology", "Pathology", "Pediatrics", "Spine", "Vascular",
})
LOCATION_CATEGORIES = ("Head", "Thorax", "Abdomen", "Spine and Muscles", "Reproductive and Urinary System")
#: What each MedPix location says of the organ: an organ or region, or nothing where it names a specialty or a
#: system spread over the body (Generalized, Pathology, Pediatrics, Vascular, ...): those are never stated as organs.
ORGANS = {
    "Abdomen": "abdomen", "Brain and Neuro": "brain", "Breast and Mammography": "breast",
    "Cardiovascular": "heart and great vessels", "Chest, Pulmonary": "chest and lungs",
    "Dental, Oral, or Tooth": "teeth and oral cavity",
    "Eye and Orbit": "eye and orbit", "Gastrointestinal": "gastrointestinal tract",
    "Genitourinary": "genitourinary tract", "Head and Neck": "head and neck", "Nerve, central": "brain",
    "Ophthalmology": "eye", "Spine": "spine", "Musculoskeletal": "bones and joints",
}
#: The template fields a MedPix unit provides (its ``meta``).
FIELDS = frozenset({
    "type", "u_id", "image", "location", "location_category", "age", "sex", "caption", "modality_detail",
    "organ_region",
    "plane_given", "acr_codes", "figure_part", "title", "history", "exam", "findings",
    "differential_diagnosis", "diagnosis", "diagnosis_by", "discussion", "topic_title", "topic_category",
    "disease_discussion", "subset",
})


def _value(value: Any) -> str | None:
    """A MedPix field as text; "N/A" and blanks are missing."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in MISSING else text


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _read_json_objects(path: Path, problems: list[Problem], public: str) -> list[dict[str, Any]]:
    """The objects of a JSON list or JSON-lines file; each unusable line is a problem naming its number."""
    try:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            values = list(enumerate(json.loads(text), 1))
        else:
            values = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        values.append((number, json.loads(line)))
                    except (json.JSONDecodeError, RecursionError) as exc:
                        problems.append(Problem(f"{path}:{number}", f"line {number} is not JSON ({exc})",
                                                f"{public}:{number}"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        problems.append(Problem(str(path), f"not readable JSON ({type(exc).__name__}: {exc})", public))
        return []
    objects = []
    for number, value in values:
        if isinstance(value, dict):
            objects.append(value)
        else:
            problems.append(Problem(f"{path}:{number}", f"entry {number} is not a JSON object",
                                    f"{public}:{number}"))
    return objects


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def flatten(description: Mapping[str, Any], case: Mapping[str, Any] | None) -> dict[str, str | None]:
    """One image's fields, snake_case, from its description and its case."""
    details = _mapping(description.get("Description"))
    meta = {
        "type": _value(description.get("Type")),
        "u_id": _value(description.get("U_id")),
        "image": _value(description.get("image")),
        "location": _value(description.get("Location")),
        "organ_region": ORGANS.get(_value(description.get("Location")) or "", ""),
        "location_category": _value(description.get("Location Category")),
        "age": _value(details.get("Age")),
        "sex": _value(details.get("Sex")),
        "caption": _value(details.get("Caption")),
        "modality_detail": _value(details.get("Modality")),
        "plane_given": _value(details.get("Plane")),
        "acr_codes": _value(details.get("ACR Codes")),
        "figure_part": _value(details.get("Figure Part")),
    }
    report = _mapping(_mapping(case).get("Case"))
    topic = _mapping(_mapping(case).get("Topic"))
    for key in ("Title", "History", "Exam", "Findings", "Differential Diagnosis", "Diagnosis By", "Discussion"):
        meta[_snake(key)] = _value(report.get(key))
    meta["diagnosis"] = _value(report.get("Case Diagnosis"))
    meta["topic_title"] = _value(topic.get("Title"))
    meta["topic_category"] = _value(topic.get("Category"))
    meta["disease_discussion"] = _value(topic.get("Disease Discussion"))
    return meta


#: Split names as ``datasets`` users expect them: MedPix's ``dev`` is the ``validation`` split.
SPLIT_NAMES = {"dev": "validation"}
_HALF = re.compile(r"^(.+)_(\d+)$")


@dataclass(frozen=True)
class Layout:
    """Where a MedPix 2.0 folder keeps its images, its split files and its train halves."""

    images: Path
    splits: list[tuple[str, Path, Path]]  # (split, cases file, descriptions file)
    halves: dict[str, str]  # image stem -> "train_1" / "train_2"


def find_layout(root: Path, default: str) -> Layout:
    """The published layout (``MedPix-2-0/`` with ``splitted_dataset/``), its split folder alone, or one split.

    Split files are ``descriptions_<split>.jsonl`` (+ ``data_<split>.jsonl``); files ending in ``_<n>``
    (``descriptions_train_1.jsonl``) are halves of a split, recorded per row, never rows of their own.
    """
    folder = root / "splitted_dataset" if (root / "splitted_dataset").is_dir() else root
    images = root / "images" if (root / "images").is_dir() else root.parent / "images"
    splits, halves = [], {}
    for descriptions in sorted(folder.glob("descriptions_*.jsonl")):
        name = descriptions.stem[len("descriptions_"):]
        if _HALF.match(name):
            for line in descriptions.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    stem = json.loads(line).get("image") if line.strip() else None
                except (json.JSONDecodeError, AttributeError):
                    stem = None  # reported when the split's own file is read
                if isinstance(stem, str):
                    halves[stem] = name
            continue
        splits.append((SPLIT_NAMES.get(name, name), folder / f"data_{name}.jsonl", descriptions))
    if not splits and (root / "Descriptions.json").is_file():
        splits = [(default, root / "Case_topic.json", root / "Descriptions.json")]
    return Layout(images, splits, halves)


def _caption_missing(unit: Unit) -> str | None:
    return None if unit.meta.get("caption") else "image caption is missing or N/A"


def _location_unknown(unit: Unit) -> str | None:
    location = unit.meta.get("location")
    return None if location in KNOWN_LOCATIONS else f"location {location!r} is not a MedPix location"


def _type_mismatch(unit: Unit) -> str | None:
    kind, detail = unit.meta.get("type"), unit.meta.get("modality_detail") or ""
    if kind not in TYPES:
        return f"Type {kind!r} is neither CT nor MR"
    return None if detail.upper().startswith(kind) else f"Type {kind} contradicts modality {detail!r}"


RULES = (
    Rule("caption_missing", _caption_missing),
    Rule("location_unknown", _location_unknown),
    Rule("type_mismatch", _type_mismatch),
)


MEDPIX_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "organ": "{organ_region}",
    "location": "{location_category}",
    "disease": "{diagnosis}",
    "case_id": "{u_id}",
    "caption": "{modality_name}[ ({modality_detail})][, {view}][; {location_category}, {organ}]"
               "[; diagnosis: {disease}]",
    "reference": {key: "{" + key + "}" for key in REFERENCE_KEYS},
    "license": "MedPix 2.0 (images from the NLM MedPix collection)",
    "dedup": True,
})


@dataclass(frozen=True)
class MedpixOptions(RootOptions):
    """``format: medpix``: the folder MedPix 2.0's authors publish."""

    @property
    def data_root(self) -> Path | None:
        """The release's folder: ``root``, or its parent when ``root`` is the split folder beside ``images/``."""
        if not (self.root / "images").is_dir() and (self.root.parent / "images").is_dir():
            return self.root.parent
        return self.root


class MedpixSource(FileSource):
    options = MedpixOptions
    modality_from_data = True
    public_names = True  # MedPix 2.0's image names are published by its authors
    defaults = MEDPIX_DEFAULTS
    fields = FIELDS
    rules = RULES

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        root = spec.data_root
        if root is None:
            raise Reject("read", "format medpix needs root")
        units: list[Unit] = []
        problems: list[Problem] = []
        layout = find_layout(root, spec.split)
        if not layout.splits:
            problems.append(Problem(relative(spec, root), "no descriptions_<split>.jsonl or Descriptions.json"))
        order = count()
        case_order: dict[Any, int] = {}
        for split, cases_file, descriptions_file in layout.splits:
            cases_doc = _read_json_objects(cases_file, problems, cases_file.name) if cases_file.is_file() else []
            cases = {c.get("U_id"): c for c in cases_doc}
            for case in cases_doc:
                case_order.setdefault(case.get("U_id"), len(case_order))
            for description in _read_json_objects(descriptions_file, problems, descriptions_file.name):
                stem = _value(description.get("image"))
                if stem is None or not _SAFE_STEM.match(stem):
                    problems.append(Problem(relative(spec, descriptions_file),
                                            "description names no image" if stem is None else
                                            "image name is not a plain file name", descriptions_file.name))
                    continue
                image = layout.images / f"{stem}.png"
                found = cases.get(description.get("U_id"))
                record = {"description": description, "case": found, "order": next(order),
                          "case_order": case_order.get(description.get("U_id"), 0)}
                meta = {**flatten(description, found), "subset": layout.halves.get(stem),
                        "record": json.dumps(record, ensure_ascii=False)}
                units.append(Unit(spec=spec, image=image, rel=relative(spec, image), split=split, meta=meta,
                                  public=f"images/{stem}.png"))
        return units, problems

    def records(self, unit: Unit) -> Iterator[Record]:
        if not unit.image.is_file():
            raise Reject("read", f"image file {unit.image.name} is missing", rule="image_unreadable")
        try:
            pixels, _ = READERS["image"].read(unit.image)
        except Reject as exc:
            raise Reject(Stage(exc.stage), exc.reason, rule="image_unreadable") from None
        plane = PLANES.get((unit.meta.get("plane_given") or "").lower())
        yield Record(unit=unit, pixels=pixels, labelmap=None, modality=TYPES[str(unit.meta["type"])],
                     plane=plane)

