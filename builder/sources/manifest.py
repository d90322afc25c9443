"""The sources manifest: YAML, loaded safely, checked whole before any work.

::

    sources:
      - name: colin27-aal
        format: nifti                 # dicom | nifti | image (see builder.sources.ADAPTERS)
        images: ch2.nii.gz            # glob, relative to this file
        masks: aal.nii.gz             # glob or one file (see builder.sources.pairing)
        labels_file: aal.nii.txt      # "<value> <name> [ignored...]" per line; or labels: {1: liver}
        modality: mri                 # optional for DICOM (then from the header)
        organ: brain                  # constant or "{column}" of the metadata table
        disease: "{diagnosis}"
        metadata: labels.csv          # CSV/JSON rows joined on the image's file stem
        boxes: boxes.csv              # rows: image, x_min, y_min, x_max, y_max, label
        caption: "{modality_name}[ of the {organ}][, {view}][; regions: {regions}]"
        license: BSD-3-Clause
        split: train
        slicing: {plane: axial, step: 5, only_with_roi: true}

Every error names the key that is wrong (:class:`builder.errors.ManifestError`).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from medtrinity_25m import MODALITIES, REFERENCE_KEYS

from ..errors import ManifestError
from ..yamlsafe import YamlError, load_yaml
from ..proposers import METHODS, RoiConfig
from ..text.template import Template, TemplateError
from . import tables
from .tables import Curation

PLANES = ("axial", "coronal", "sagittal")
#: Other spellings of the modality configs a manifest may use (any case).
MODALITY_ALIASES = {"mr": "mri", "x-ray": "xray", "cr": "xray", "dx": "xray", "us": "ultrasound",
                    "histopathology": "pathology", "pt": "pet"}
DEFAULT_CAPTION = "{modality_name}[ of the {organ}][, {view}][, {disease}][; regions: {regions}]"
#: Fields every template may use, besides the metadata table's columns.
TEMPLATE_FIELDS = frozenset(
    {"modality", "modality_name", "organ", "disease", "plane", "slice_index", "view",
     "regions", "n_rois", "source", "stem", "width", "height"}
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPLIT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Slicing:
    """How a volume becomes 2D samples."""

    plane: str = "axial"
    step: int = 1
    only_with_roi: bool = False


@dataclass(frozen=True)
class SplitRule:
    """Splits by a group key: every unit whose key renders the same lands in one split.

    The key (a template over the unit's fields, e.g. ``{u_id}`` or ``{patient}``) is
    hashed with ``seed`` to a number in [0, 1) that picks a split by ``ratios``.
    """

    by: str
    ratios: tuple[tuple[str, float], ...]
    seed: int = 0
    blank: str = "reject"  # a unit whose key renders blank: "reject" it, or draw by its "file"

    def assign(self, key: str) -> str:
        digest = hashlib.sha256(f"{self.seed}\0{key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
        total = 0.0
        for name, ratio in self.ratios:
            total += ratio
            if point < total:
                return name
        return self.ratios[-1][0]


@dataclass(frozen=True)
class SourceSpec:
    """One source collection of the manifest, paths resolved."""

    name: str
    format: str
    root: Path  # the manifest's folder: relative paths start here
    images: str = ""
    data_root: Path | None = None  # ``root:`` of formats that read a whole folder (medpix)
    masks: str | None = None
    mask_suffixes: tuple[str, ...] = ("_mask", "_seg", "_label", "_labels", "-mask", "-seg", "-label")
    labels: Mapping[int, str] = field(default_factory=dict)
    boxes: Path | None = None
    metadata: Path | None = None
    modality: str | None = None
    organ: str = "unspecified"
    disease: str = ""
    caption: str = DEFAULT_CAPTION
    case_id: str = ""
    location: str = ""
    reference: Mapping[str, str] = field(default_factory=dict)
    license: str = "unknown"
    split: str = "train"
    split_rule: SplitRule | None = None
    slicing: Slicing = Slicing()
    curation: Mapping[str, Curation] = field(default_factory=dict)
    dedup: bool = False
    allow_burned_in: bool = False  # DICOM: admit images whose BurnedInAnnotation is YES
    roi: RoiConfig | None = None  # ROI proposals (builder.proposers)
    publish_paths: bool = False  # publish input paths in source_file (generic formats: off)
    referenced: frozenset[str] = frozenset()  # fields the source's templates name: only these reach a row


@dataclass(frozen=True)
class Manifest:
    path: Path
    sources: tuple[SourceSpec, ...]
    sha256: str

    @property
    def root(self) -> Path:
        return self.path.parent


_KEYS = {
    "name", "format", "images", "root", "masks", "mask_suffixes", "labels", "labels_file", "boxes",
    "metadata", "modality", "organ", "disease", "caption", "case_id", "location", "reference", "license",
    "split", "slicing", "curation", "dedup", "allow_burned_in", "roi", "publish_paths",
}
TEMPLATE_KEYS = ("organ", "disease", "caption", "case_id", "location")


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and check a manifest; raise :class:`ManifestError` naming the bad key."""
    path = Path(path).resolve()
    try:
        raw_bytes = path.read_bytes()
        doc = load_yaml(raw_bytes, path.name)
    except OSError as exc:
        raise ManifestError("<file>", f"cannot read: {exc.strerror}", str(path)) from exc
    except YamlError as exc:
        raise ManifestError("<file>", str(exc), str(path)) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise ManifestError("sources", "must be a non-empty list of source entries", str(path))
    extra = sorted(set(doc) - {"sources", "version"})
    if extra:
        raise ManifestError(extra[0], "unknown top-level key" + _meant(extra[0], {"sources", "version"}),
                            str(path))
    specs = []
    for i, entry in enumerate(doc["sources"]):
        try:
            specs.append(_source(entry, path.parent))
        except ManifestError as exc:
            raise ManifestError(f"sources[{i}].{exc.key}", exc.reason, str(path)) from None
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ManifestError("name", f"source name {dupes[0]!r} is used twice", str(path))
    return Manifest(path=path, sources=tuple(specs), sha256=hashlib.sha256(raw_bytes).hexdigest())


def _string(entry: Mapping[str, Any], key: str) -> str:
    if not isinstance(entry.get(key), str) or not entry[key].strip():
        raise ManifestError(key, "is required and must be a string")
    return entry[key]


def _source(raw: Any, root: Path) -> SourceSpec:
    if not isinstance(raw, dict):
        raise ManifestError("<entry>", "each source must be a mapping")
    unknown = sorted(set(raw) - _KEYS, key=str)
    if unknown:
        raise ManifestError(str(unknown[0]), "unknown key" + _meant(unknown[0], _KEYS)
                            + f" (known: {', '.join(sorted(_KEYS))})")
    if not _NAME.match(_string(raw, "name")):
        raise ManifestError("name", "use letters, digits, '.', '_' and '-' only")
    from . import ADAPTERS  # the registry decides which formats exist

    fmt = _string(raw, "format")
    if fmt not in ADAPTERS:
        raise ManifestError("format", f"{fmt!r} is not one of {', '.join(sorted(ADAPTERS))}")
    adapter = ADAPTERS[fmt]
    entry = {**adapter.defaults, **raw}  # a format's defaults are data, overridden by the entry
    for key in adapter.required:
        _string(entry, key)
    modality = entry.get("modality")
    if modality is None and not adapter.modality_from_data:
        raise ManifestError("modality", f"is required for format {fmt!r} (one of {', '.join(MODALITIES)})")
    if modality is not None:
        modality = MODALITY_ALIASES.get(str(modality).strip().lower(), str(modality).strip().lower())
        if modality not in MODALITIES:
            raise ManifestError("modality", f"{entry['modality']!r} is not one of {', '.join(MODALITIES)}")
    metadata = _file(entry, "metadata", root)
    try:
        columns = tables.columns(metadata) if metadata else set()
    except tables.TableError as exc:
        raise ManifestError("metadata", str(exc)) from None
    _check_templates(entry, set(TEMPLATE_FIELDS) | set(adapter.fields) | columns)
    _check_boxes(_file(entry, "boxes", root))
    split, rule = _split(entry.get("split", "train"), set(TEMPLATE_FIELDS) | set(adapter.fields) | columns)
    suffixes = entry.get("mask_suffixes", SourceSpec.mask_suffixes)
    if not isinstance(suffixes, (list, tuple)) or not all(isinstance(s, str) for s in suffixes):
        raise ManifestError("mask_suffixes", "must be a list of strings")
    return SourceSpec(
        name=entry["name"], format=fmt, root=root,
        images=_glob(entry, "images", root) if "images" in entry else "",
        data_root=_file(entry, "root", root, folder=True),
        masks=_glob(entry, "masks", root) if entry.get("masks") is not None else None,
        mask_suffixes=tuple(suffixes), labels=_labels(entry, root), boxes=_file(entry, "boxes", root),
        metadata=metadata, modality=modality, organ=entry.get("organ", "unspecified"),
        disease=entry.get("disease", ""), caption=entry.get("caption", DEFAULT_CAPTION),
        case_id=entry.get("case_id", ""), location=entry.get("location", ""),
        reference=dict(entry.get("reference") or {}), license=str(entry.get("license", "unknown")),
        split=split, split_rule=rule, slicing=_slicing(entry.get("slicing")), curation=_curation(entry, root),
        dedup=_flag(entry, "dedup"), allow_burned_in=_flag(entry, "allow_burned_in"),
        roi=_roi(entry.get("roi"), set(TEMPLATE_FIELDS) | set(adapter.fields) | columns),
        publish_paths=_flag(entry, "publish_paths"), referenced=_referenced(entry),
    )


def _meant(key: Any, known: set[str]) -> str:
    """", did you mean 'masks'?" for a key close to a known one."""
    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _referenced(entry: Mapping[str, Any]) -> frozenset[str]:
    """Every field a template of the entry names: the only metadata columns that may reach a row."""
    texts = [entry.get(key) for key in TEMPLATE_KEYS] + list((entry.get("reference") or {}).values())
    split = entry.get("split")
    texts += [split.get("by")] if isinstance(split, dict) else []
    texts += [(entry.get("roi") or {}).get("prompt")] if isinstance(entry.get("roi"), dict) else []
    found: set[str] = set()
    for text in texts:
        if isinstance(text, str):
            try:
                found |= Template(text).fields
            except TemplateError:
                pass
    return frozenset(found)


def _check_templates(entry: Mapping[str, Any], known: set[str]) -> None:
    reference = entry.get("reference") or {}
    if not isinstance(reference, dict) or set(reference) - set(REFERENCE_KEYS):
        raise ManifestError("reference", f"must map some of {', '.join(REFERENCE_KEYS)} to templates")
    rules = [(key, entry.get(key, "")) for key in TEMPLATE_KEYS]
    rules += [(f"reference.{key}", value) for key, value in reference.items()]
    for key, value in rules:
        if not isinstance(value, str):
            raise ManifestError(key, "must be a string (a constant or a template)")
        try:
            Template(value).check(known)
        except TemplateError as exc:
            raise ManifestError(key, str(exc)) from None


def _split(raw: Any, known: set[str]) -> tuple[str, SplitRule | None]:
    """A split name, or a rule ``{by: TEMPLATE, ratios: {train: 0.8, test: 0.2}, seed: 0}``."""
    def name(value: Any, key: str) -> str:
        if not isinstance(value, str) or not _SPLIT.match(value):
            raise ManifestError(key, "a split name starts with a letter and holds letters, digits and '_' only")
        return value

    if not isinstance(raw, dict):
        return name(raw, "split"), None
    unknown = sorted(set(raw) - {"by", "ratios", "seed", "blank"}, key=str)
    if unknown:
        raise ManifestError(f"split.{unknown[0]}", "unknown key (by, ratios, seed, blank)")
    blank = raw.get("blank", "reject")
    if blank not in ("reject", "file"):
        raise ManifestError("split.blank", "must be reject (a blank group key is a reject line) or file "
                                           "(draw such a unit by its own file)")
    ratios = raw.get("ratios")
    if not isinstance(ratios, dict) or not ratios or not all(isinstance(v, (int, float)) and v > 0
                                                             for v in ratios.values()):
        raise ManifestError("split.ratios", "must map split names to positive fractions")
    if abs(sum(ratios.values()) - 1.0) > 1e-6:
        raise ManifestError("split.ratios", f"must add up to 1, not {sum(ratios.values())}")
    by = raw.get("by", "{stem}")
    try:
        Template(str(by)).check(known | {"file"})
    except TemplateError as exc:
        raise ManifestError("split.by", str(exc)) from None
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ManifestError("split.seed", "must be an integer")
    rule = SplitRule(str(by), tuple((name(k, "split.ratios"), float(v)) for k, v in ratios.items()), seed, blank)
    return rule.ratios[0][0], rule


def _roi(raw: Any, known: set[str]) -> RoiConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError("roi", "must be a mapping with method, model, command, prompt, threshold, max_rois, mode")
    fields = {f.name for f in dataclasses.fields(RoiConfig)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ManifestError(f"roi.{unknown[0]}", f"unknown key ({', '.join(sorted(fields))})")
    if raw.get("method") not in METHODS:
        raise ManifestError("roi.method", f"must be one of {', '.join(METHODS)}")
    if raw.get("mode", "fill") not in ("fill", "add"):
        raise ManifestError("roi.mode", "must be fill (only rows without ROIs) or add (always)")
    threshold = raw.get("threshold", 0.3)
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ManifestError("roi.threshold", "must be a number between 0 and 1")
    max_rois = raw.get("max_rois", 3)
    if not isinstance(max_rois, int) or isinstance(max_rois, bool) or max_rois < 1:
        raise ManifestError("roi.max_rois", "must be a positive integer")
    for key in ("model", "command", "prompt"):
        if key in raw and not isinstance(raw[key], str):
            raise ManifestError(f"roi.{key}", "must be a string")
    for key in ("model", "command"):
        if raw["method"] in ("transformers" if key == "model" else "command",) and not raw.get(key):
            raise ManifestError(f"roi.{key}", f"is required by method {raw['method']}")
    try:
        Template(raw.get("prompt", RoiConfig.prompt)).check(known)
    except TemplateError as exc:
        raise ManifestError("roi.prompt", str(exc)) from None
    return RoiConfig(**{**raw, "threshold": float(threshold)})


def _check_boxes(path: Path | None) -> None:
    if path is None:
        return
    try:
        found = tables.columns(path)
    except tables.TableError as exc:
        raise ManifestError("boxes", str(exc)) from None
    missing = [c for c in tables.BOX_COLUMNS if c not in found]
    if found and missing:
        raise ManifestError("boxes", f"{path.name} lacks the column(s) {', '.join(missing)}")


def _flag(entry: Mapping[str, Any], key: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise ManifestError(key, "must be true or false")
    return value


def _curation(entry: Mapping[str, Any], root: Path) -> dict[str, Curation]:
    path = _file(entry, "curation", root)
    if path is None:
        return {}
    try:
        return tables.read_curation(path)
    except ValueError as exc:
        raise ManifestError("curation", str(exc)) from None


def _glob(entry: Mapping[str, Any], key: str, root: Path) -> str:
    pattern = entry[key]
    if not isinstance(pattern, str) or not pattern.strip():
        raise ManifestError(key, "must be a glob pattern (a string)")
    if os.path.isabs(pattern):
        return pattern
    fixed = pattern.split("*")[0].split("?")[0].split("[")[0]
    resolved = os.path.normpath(os.path.join(root, fixed))
    if os.path.commonpath([resolved, str(root)]) != str(root) or ".." in Path(pattern).parts:
        raise ManifestError(key, f"{pattern!r} climbs out of the manifest's folder; give an absolute path")
    return pattern


def _file(entry: Mapping[str, Any], key: str, root: Path, folder: bool = False) -> Path | None:
    """The path a key names, under the manifest's folder unless absolute; it must exist."""
    if entry.get(key) is None:
        return None
    path = Path(_glob(entry, key, root))
    path = path if path.is_absolute() else root / path
    if not (path.is_dir() if folder else path.is_file()):
        raise ManifestError(key, f"{'folder' if folder else 'file'} not found: {path}")
    return path


def _labels(entry: Mapping[str, Any], root: Path) -> dict[int, str]:
    if "labels" in entry and "labels_file" in entry:
        raise ManifestError("labels", "give labels or labels_file, not both")
    if "labels_file" in entry:
        path = _file(entry, "labels_file", root)
        try:
            return tables.read_labels_file(path)
        except ValueError as exc:
            raise ManifestError("labels_file", str(exc)) from None
    labels = entry.get("labels") or {}
    if not isinstance(labels, dict):
        raise ManifestError("labels", "must be a mapping {value: name}")
    try:
        return {int(k): str(v) for k, v in labels.items()}
    except (TypeError, ValueError):
        raise ManifestError("labels", "keys must be integer label values") from None


def _slicing(raw: Any) -> Slicing:
    if raw is None:
        return Slicing()
    if not isinstance(raw, dict):
        raise ManifestError("slicing", "must be a mapping with plane, step, only_with_roi")
    unknown = sorted(set(raw) - {"plane", "step", "only_with_roi"})
    if unknown:
        raise ManifestError(f"slicing.{unknown[0]}", "unknown key")
    plane = raw.get("plane", "axial")
    if plane not in PLANES:
        raise ManifestError("slicing.plane", f"{plane!r} is not one of {', '.join(PLANES)}")
    step = raw.get("step", 1)
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ManifestError("slicing.step", "must be a positive integer")
    only = raw.get("only_with_roi", False)
    if not isinstance(only, bool):
        raise ManifestError("slicing.only_with_roi", "must be true or false")
    return Slicing(plane=plane, step=step, only_with_roi=only)
