"""The sources manifest: YAML, loaded safely, checked whole before any work.

::

    sources:
      - name: colin27-aal
        format: nifti                 # dicom | nifti | image (see builder.pipeline.sources.ADAPTERS)
        images: ch2.nii.gz            # glob, relative to this file
        masks: aal.nii.gz             # glob or one file (see builder.pipeline.sources.pairing)
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

import contextlib
import dataclasses
import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import builder.pipeline.sources.tables as tables
from builder.errors import ManifestError
from builder.pipeline.proposers import RoiConfig
from builder.pipeline.sources.options import (
    ImageOptions,
    check_template,
    nested,
    option_keys,
    parse_options,
    path_of,
)
from builder.pipeline.sources.recipes import expand_recipe
from builder.pipeline.sources.tables import Curation
from builder.pipeline.template import DEFAULT_CAPTION, Template, TemplateError
from builder.pipeline.values import flag
from builder.vocabulary import SEQUENCES, sequence_of
from builder.yamlsafe import YamlError, load_yaml
from medtrinity_25m import MODALITIES, REFERENCE_KEYS

#: Fields every template may use, besides the metadata table's columns.
TEMPLATE_FIELDS = frozenset(
    {"modality", "modality_name", "organ", "disease", "plane", "slice_index", "view",
     "regions", "n_rois", "source", "stem", "folder", "width", "height"}
)
#: Other spellings of the modality configs a manifest may use (any case).
MODALITY_ALIASES = {"mr": "mri", "x-ray": "xray", "cr": "xray", "dx": "xray", "us": "ultrasound",
                    "histopathology": "pathology", "pt": "pet"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SPLIT = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


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
    """One source collection of the manifest: what every format shares, and the format's own ``options``."""

    name: str
    format: str
    root: Path  # the manifest's folder: relative paths start here
    options: Any = field(default_factory=ImageOptions)  # the format's options dataclass (``adapter.options``)
    modality: str | None = None
    organ: str = "unspecified"
    sequence: str | None = None  # the MR sequence (T1, T2, FLAIR, ...): the contrast its text may state
    disease: str = ""
    caption: str = DEFAULT_CAPTION
    case_id: str = ""
    location: str = ""
    reference: Mapping[str, str] = field(default_factory=dict)
    license: str = "unknown"
    redistribute: bool = True  # False: the source's terms forbid sharing its pixels; its rows are published without
    split: str = "train"
    split_rule: SplitRule | None = None
    curation: Mapping[str, Curation] = field(default_factory=dict)
    dedup: bool = False
    roi: RoiConfig | None = None  # ROI proposals (builder.pipeline.proposers)
    publish_paths: bool = False  # publish input paths in source_file (generic formats: off)
    referenced: frozenset[str] = frozenset()  # fields the source's templates name: only these reach a row
    finding_labels: frozenset[str] = frozenset()  # ROI labels that show the disease on a slice

    @property
    def data_root(self) -> Path | None:
        return self.options.data_root


@dataclass(frozen=True)
class Manifest:
    path: Path
    sources: tuple[SourceSpec, ...]
    sha256: str
    benchmarks: tuple[Path, ...] = ()  # benchmark test images the training rows must not copy (push checks)

    @property
    def root(self) -> Path:
        return self.path.parent

    def with_settings(self, settings: Mapping[str, Any]) -> Manifest:
        """The manifest with ``settings`` (format options given on the command line, ``{field: value}``) set in
        every source whose format's options have the field."""
        if not settings:
            return self
        return dataclasses.replace(self, sources=tuple(
            dataclasses.replace(spec, options=dataclasses.replace(spec.options, **{
                k: v for k, v in settings.items() if k in {f.name for f in dataclasses.fields(spec.options)}}))
            for spec in self.sources))


#: The keys every source has; the rest belong to its format's options class.
COMMON_KEYS = frozenset({"name", "format", "modality", "organ", "sequence", "disease", "caption", "case_id", "location",
                         "reference", "license", "redistribute", "split", "curation", "dedup", "roi", "publish_paths",
                         "finding_labels"})
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
    top = {"sources", "version", "benchmarks"}
    extra = sorted(set(doc) - top, key=str) if isinstance(doc, dict) else []
    if extra:  # first: a misspelt "sources" is named as such, with the key it was meant to be
        raise ManifestError(str(extra[0]), "unknown top-level key" + _meant(extra[0], top), str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise ManifestError("sources", "must be a non-empty list of source entries", str(path))
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
    return Manifest(path=path, sources=tuple(specs), sha256=hashlib.sha256(raw_bytes).hexdigest(),
                    benchmarks=_benchmarks(doc.get("benchmarks"), path))


def _benchmarks(value: Any, path: Path) -> tuple[Path, ...]:
    """Benchmark folders whose test images the training rows must not copy (push's leakage gate)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError("benchmarks", "must be a list of folders", str(path))
    folders = tuple((path.parent / v).resolve() for v in value)
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise ManifestError("benchmarks", f"folder not found: {missing[0]}", str(path))
    return folders


def _string(entry: Mapping[str, Any], key: str) -> str:
    if not isinstance(entry.get(key), str) or not entry[key].strip():
        raise ManifestError(key, "is required and must be a string")
    return entry[key]


def _source(raw: Any, root: Path) -> SourceSpec:
    if not isinstance(raw, dict):
        raise ManifestError("<entry>", "each source must be a mapping")
    raw = expand_recipe(raw, root)  # a public dataset's layout as data (builder/recipes), the entry's keys on top
    if not _NAME.match(_string(raw, "name")):
        raise ManifestError("name", "use letters, digits, '.', '_' and '-' only")
    from builder.pipeline.sources import ADAPTERS  # the registry decides which formats exist

    fmt = _string(raw, "format")
    if fmt not in ADAPTERS:
        raise ManifestError("format", f"{fmt!r} is not one of {', '.join(sorted(ADAPTERS))}")
    adapter = ADAPTERS[fmt]
    known = set(COMMON_KEYS) | option_keys(adapter.options)
    unknown = sorted(set(raw) - known, key=str)
    if unknown:
        raise ManifestError(str(unknown[0]), "unknown key" + _meant(unknown[0], known)
                            + f" (format {fmt} knows: {', '.join(sorted(known))})")
    entry = {**adapter.defaults, **raw}  # a format's defaults are data, overridden by the entry
    options = parse_options(adapter.options, entry, root)
    fields = set(TEMPLATE_FIELDS) | set(adapter.fields) | options.columns()
    _check_templates(entry, fields)
    split, rule = _split(entry.get("split", "train"), fields)
    roi = nested(RoiConfig)(entry["roi"], root, "roi") if entry.get("roi") is not None else None
    if roi is not None:
        check_template(roi.prompt, "roi.prompt", fields)
    return SourceSpec(
        name=entry["name"], format=fmt, root=root, options=options, modality=_modality(entry, adapter),
        organ=entry.get("organ", "unspecified"), sequence=_sequence(entry.get("sequence")),
        disease=entry.get("disease", ""),
        caption=entry.get("caption", DEFAULT_CAPTION), case_id=entry.get("case_id", ""),
        location=entry.get("location", ""), reference=dict(entry.get("reference") or {}),
        license=str(entry.get("license", "unknown")),
        redistribute=flag(entry.get("redistribute", True), root, "redistribute"), split=split, split_rule=rule,
        curation=_curation(entry, root),
        dedup=flag(entry.get("dedup", False), root, "dedup"), roi=roi,
        publish_paths=flag(entry.get("publish_paths", False), root, "publish_paths"), referenced=_referenced(entry),
        finding_labels=_finding_labels(entry.get("finding_labels"), options),
    )


def _sequence(value: Any) -> str | None:
    """The MR sequence a source states, as one of :data:`builder.vocabulary.SEQUENCES`' names."""
    if value is None:
        return None
    found = sequence_of(value) if isinstance(value, str) else None
    if found is None:
        known = ", ".join(dict.fromkeys(SEQUENCES.values()))
        raise ManifestError("sequence", f"{value!r} names no MR sequence ({known})")
    return found


def _finding_labels(value: Any, options: Any) -> frozenset[str]:
    """Label names (or values of the source's labels) whose ROI on a slice shows the source's disease."""
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise ManifestError("finding_labels", "must be a list of label names or label values")
    names = getattr(options, "label_names", {}) or {}
    return frozenset(str(names.get(v, v)) if isinstance(v, int) else v for v in value)


def _modality(entry: Mapping[str, Any], adapter: Any) -> str | None:
    modality = entry.get("modality")
    if modality is None:
        if not adapter.modality_from_data:
            raise ManifestError("modality", f"is required for format {entry['format']!r} "
                                            f"(one of {', '.join(MODALITIES)})")
        return None
    name = MODALITY_ALIASES.get(str(modality).strip().lower(), str(modality).strip().lower())
    if name not in MODALITIES:
        raise ManifestError("modality", f"{modality!r} is not one of {', '.join(MODALITIES)}")
    return name


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
            with contextlib.suppress(TemplateError):  # an unparsable template is reported where it is checked
                found |= Template(text).fields
    return frozenset(found)


def _check_templates(entry: Mapping[str, Any], known: set[str]) -> None:
    reference = entry.get("reference") or {}
    if not isinstance(reference, dict) or set(reference) - set(REFERENCE_KEYS):
        raise ManifestError("reference", f"must map some of {', '.join(REFERENCE_KEYS)} to templates")
    rules = [(key, entry.get(key, "")) for key in TEMPLATE_KEYS]
    rules += [(f"reference.{key}", value) for key, value in reference.items()]
    for key, value in rules:
        check_template(value, key, known)


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


def _curation(entry: Mapping[str, Any], root: Path) -> dict[str, Curation]:
    if entry.get("curation") is None:
        return {}
    path = path_of(entry["curation"], root, "curation")
    try:
        return tables.read_curation(path)
    except ValueError as exc:
        raise ManifestError("curation", str(exc)) from None


