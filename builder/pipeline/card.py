"""The dataset card: ``OUT/README.md``, rendered from ``dataset_card.md``.

Its YAML header carries the ``configs:`` that ``load_dataset`` reads (one per
modality present, plus ``all``), the features, license, task categories and
tags; its body the counts, the schema, the conventions and the provenance.
"""

from __future__ import annotations

import html
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from builder.formats import FORMATS
from builder.layout import depth_of
from builder.pipeline.accounting import Ledger
from medtrinity_25m import MODALITIES, MODALITY_NAMES, ROW, yaml_features

TEMPLATE_NAME = "dataset_card.md"
TASKS = ["image-to-text", "visual-question-answering", "object-detection", "image-segmentation"]
FIELD_DOCS = {
    "id": "stable id from source, file and slice",
    "image": "PNG of the original pixels",
    "mask": "label-map PNG: 0 background, i+1 for `rois[i]`; null without a mask",
    "restored": "PNG of the image with the ROI outlines drawn into it painted out (`--restore-pixels`); else null",
    "modality": "one of " + ", ".join(MODALITIES),
    "organ": "organ or body region, from the source's metadata",
    "disease": "disease or finding from the source's metadata; null if none",
    "rois": "list of {bbox, label, area_ratio, position, origin, score}",
    "coarse_caption": "caption from the source's metadata rule",
    "caption": "multigranular description: the five attributes joined",
    "attributes": "{modality, organ_detection, roi_analysis, texture, region_relationship}",
    "knowledge": "ids of the knowledge snippets the describer was given",
    "checks": "a model's text checked against what was measured: {checked, contradictions, action}; null for the "
              "template describer's text",
    "reference": "human-written reference text, where the source has one",
    "source": "source collection (manifest `name`)",
    "source_file": "the input file's public name (a published release), else its pseudonymous file id",
    "plane": "axial, coronal or sagittal; null when unknown",
    "slice_index": "slice of the volume or frame of a multi-frame file; null for 2D",
    "record": "a published release's own documents for the row, verbatim JSON (MedPix 2.0); null otherwise",
    "subset": "the part of its split a row belongs to, where the source publishes one (MedPix 2.0: train_1, train_2)",
    "pixel_spacing": "(row, column) pixel spacing in mm of the stored image; null when unknown",
    "width": "image width in pixels",
    "height": "image height in pixels",
    "license": "license of the source",
}


@dataclass(frozen=True)
class CardInputs:
    ledger: Ledger
    layout: str  # the output format the configs point at (builder.formats.FORMATS)
    splits: dict[str, list[str]]  # modality -> splits present
    shards: Sequence[dict[str, Any]]  # build.json's shard entries
    sources: Sequence[dict[str, Any]]  # name, format, license, files, rows, rejected
    describer: str
    version: str
    checks: dict[str, Any] = field(default_factory=dict)  # the model stage's checks (builder/checks.py), if any
    deidentification: dict[str, Any] = field(default_factory=dict)  # build.json's: how DICOM inputs are cleaned
    charts: tuple[str, ...] = ()  # the charts beside the card (builder.pipeline.charts)
    repo: str = "medtrinity-25m"
    title: str = "MedTrinity-style multigranular medical dataset"


def template_text() -> str:
    """``dataset_card.md`` of the repository (also shipped inside the package)."""
    local = Path(__file__).resolve().parents[2] / TEMPLATE_NAME
    if local.is_file():
        return local.read_text(encoding="utf-8")
    return resources.files("builder").joinpath("templates", TEMPLATE_NAME).read_text(encoding="utf-8")


def _data_files(layout: str, modality: str, splits: Iterable[str], depth: int) -> list[dict[str, str]]:
    return [{"split": s, "path": FORMATS[layout].data_files(modality, s, depth)} for s in sorted(splits)]


def configs(layout: str, splits: dict[str, list[str]], depth: int = 0) -> list[dict[str, Any]]:
    """The ``configs:`` entries: ``all`` (default) then one per modality present; ``depth``: the shards' sub-folders
    (:func:`builder.layout.nesting`)."""
    every = sorted({s for ss in splits.values() for s in ss})
    entries = [{"config_name": "all", "data_files": _data_files(layout, "*", every, depth), "default": True}]
    for modality in (m for m in MODALITIES if m in splits):
        entries.append({"config_name": modality,
                        "data_files": _data_files(layout, modality, splits[modality], depth)})
    return entries


def _configs(inputs: CardInputs) -> list[dict[str, Any]]:
    return configs(inputs.layout, inputs.splits,
                   depth_of(s["path"] for s in inputs.shards if s["format"] == inputs.layout))


def _license(sources: Sequence[dict[str, Any]]) -> str:
    licenses = {str(s["license"]).lower() for s in sources}
    return licenses.pop() if len(licenses) == 1 and "unknown" not in licenses else "other"


def front_matter(inputs: CardInputs) -> dict[str, Any]:
    features = yaml_features(FORMATS[inputs.layout].features)
    entries = _configs(inputs)
    return {
        "license": _license(inputs.sources),
        "pretty_name": inputs.title,
        "task_categories": TASKS,
        "language": ["en"],
        "tags": ["medical", "multimodal", "medtrinity"] + sorted(inputs.splits),
        "size_categories": [_size_category(inputs.ledger.rows_total)],
        "configs": entries,
        "dataset_info": [dict(config_name=e["config_name"], features=features,
                              **_sizes(inputs, e["config_name"])) for e in entries],
    }


def _sizes(inputs: CardInputs, config: str) -> dict[str, Any]:
    """Split sizes and bytes of a config's files.

    ``datasets`` checks ``num_examples`` when it prepares a split, and hashes
    this info into its cache key: a rebuilt folder is not served from the cache
    of the previous build.
    """
    shards = [s for s in inputs.shards
              if s["format"] == inputs.layout and config in ("all", s["modality"])]
    splits: dict[str, dict[str, int]] = {}
    for shard in shards:
        entry = splits.setdefault(shard["split"], {"name": shard["split"], "num_bytes": 0, "num_examples": 0})
        entry["num_bytes"] += shard["bytes"]
        entry["num_examples"] += shard["rows"]
    total = sum(s["bytes"] for s in shards)
    return {"splits": [splits[k] for k in sorted(splits)], "download_size": total, "dataset_size": total}


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) if len(lines) > 2 else "_none_"


def _cell(value: Any) -> str:
    """A table cell from metadata: HTML escaped, pipes escaped, on one line."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return " ".join(text.split())


class _Dumper(yaml.SafeDumper):
    """Plain YAML for the Hub: every config spells its features out (no anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _skipped(ledger: Ledger) -> str:
    """The files passed over on purpose, by kind, as a clause of the card's opening sentence."""
    if not ledger.skipped:
        return ""
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(ledger.skipped.items()))
    return f"; {sum(ledger.skipped.values()):,} files were passed over on purpose ({kinds})"


CHART_TEXT = {"card/rows.png": "Rows per modality and per organ or region",
              "card/rois.png": "ROIs per row and ROI area as a share of the image",
              "card/examples.png": "Example rows with their ROIs' boxes drawn"}


def _charts(charts: Sequence[str]) -> str:
    """The card's charts, as images the Hub renders from the repository's files."""
    if not charts:
        return ""
    return "\n\n## At a glance\n\n" + "\n\n".join(f"![{CHART_TEXT.get(c, c)}]({c})" for c in charts)


def _published(source: dict[str, Any]) -> str:
    return "images and annotations" if source.get("redistribute", True) else "annotations only (pixels withheld)"


def _withheld_note(sources: Sequence[dict[str, Any]]) -> str:
    withheld = [s["name"] for s in sources if not s.get("redistribute", True)]
    if not withheld:
        return ""
    return (f"\n\nThe terms of {', '.join(f'`{n}`' for n in withheld)} do not allow their pixels to be shared: "
            "their rows hold the annotations, the text and the file's name in its source (`source`, `source_file`), "
            "with `image` and `mask` null and `pixels_withheld` true. Fetch the originals from their publishers to "
            "use them.")


def _deid(method: dict[str, Any], notes: dict[str, int]) -> str:
    """The card's words on how inputs were de-identified, and what OCR found."""
    if not method:
        return ""
    options = "; ".join(o.split(" ", 1)[1] for o in method["options"])
    found = ", ".join(f"{n:,} {what}" for what, n in (
        ("screened by OCR", notes.get("pixels_screened_by_ocr", 0)),
        ("with text redacted", notes.get("burned_in_text_redacted", 0)),
        ("with text kept and flagged", notes.get("burned_in_text_flagged", 0)),
        ("refused for their text", notes.get("burned_in_text_rejected", 0)),
        ("cleaned by deid's device rules", notes.get("pixels_cleaned_by_deid", 0))) if n)
    return (f" DICOM inputs are de-identified as {method['standard']} describes: {options}. Pixels: "
            f"{method['pixels']}{f' (images: {found})' if found else ''}.")


def checks_note(checks: dict[str, Any]) -> str:
    """What the card says of the model answers' checks against what was measured."""
    if not checks.get("checked"):
        return ""
    rules = ", ".join(f"{rule} {n:,}" for rule, n in checks["by_rule"].items())
    return (f" Each model answer was checked against what the pipeline measured (modality, sequence, organ, plane, "
            f"each region's side, position, count, area and size): {checks['checked']:,} checked, "
            f"{checks['contradicted']:,} contradicted it{f' ({rules})' if rules else ''}; "
            f"{checks['retried']:,} were asked again, {checks['flagged']:,} are flagged, {checks['kept']:,} kept "
            f"and {checks['rejected']:,} rejected (policy `{checks['policy']}`). Each row's `checks` column says "
            "what was checked, what contradicted and what was done.")


def render(inputs: CardInputs) -> str:
    ledger = inputs.ledger
    entries = _configs(inputs)
    example = next((e["config_name"] for e in entries[1:]), "all")
    values = {
        "front_matter": yaml.dump(front_matter(inputs), Dumper=_Dumper, sort_keys=False, allow_unicode=True).strip(),
        "title": inputs.title,
        "version": inputs.version,
        "rows": f"{ledger.rows_total:,}",
        "files": f"{ledger.files_accepted:,}",
        "rejected": f"{ledger.files_rejected:,}",
        "skipped_note": _skipped(ledger),
        "describer": inputs.describer,
        "checks_note": checks_note(inputs.checks),
        "charts": _charts(inputs.charts),
        "deid_note": _deid(inputs.deidentification, ledger.notes),
        "repo": inputs.repo,
        "example_config": example,
        "config_table": _table(
            ["config", "splits", "files"],
            [(e["config_name"], ", ".join(d["split"] for d in e["data_files"]),
              ", ".join(f"`{d['path']}`" for d in e["data_files"])) for e in entries],
        ),
        "modality_table": _table(
            ["modality", "config", "rows"],
            [(MODALITY_NAMES[m], m, f"{n:,}") for m, n in sorted(ledger.by_modality.items())],
        ),
        "organ_table": _table(["organ", "rows"], ledger.by_organ.most_common(20)),
        "disease_table": _table(["disease", "rows"], ledger.by_disease.most_common(20)),
        "roi_summary": ", ".join(f"{n:,} from {o}" for o, n in sorted(ledger.roi_origins.items())) or "none",
        "schema_table": _table(["field", "type", "meaning"],
                               [(f"`{k}`", _type_name(v), FIELD_DOCS.get(k, "")) for k, v in ROW.items()]),
        "decisions_table": _table(["decision", "rows"], sorted(ledger.notes.items())) if ledger.notes else "none",
        "terms": "".join(f"\nTerms of `{s['name']}`, from the original release: {s['terms']}\n"
                         for s in inputs.sources if s.get("terms")),
        "provenance_table": _table(
            ["source", "format", "license", "published", "files", "rows", "rejected", "skipped"],
            [(s["name"], s["format"], s["license"], _published(s), s["files"], s["rows"], s["rejected"],
              s.get("skipped", 0)) for s in inputs.sources],
        ) + _withheld_note(inputs.sources),
    }
    return string.Template(template_text()).substitute(values)


def _type_name(spec: Any) -> str:
    """A field of ``medtrinity_25m.ROW`` as the card's field table names its type."""
    if isinstance(spec, str):
        return spec
    return "list" if isinstance(spec, (tuple, list)) else "struct"
