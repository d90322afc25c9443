"""``format: medtrinity``: the official MedTrinity-25M release, re-sharded by modality.

``root`` is a snapshot of ``UCSC-VLAA/MedTrinity-25M`` (a local folder or
``hf://datasets/UCSC-VLAA/MedTrinity-25M``), ``subset`` is ``25M_demo`` (Parquet
with the images inside: one unit per Parquet file) or ``25M_full`` (captions in
Parquet, images in ``25M_accessible/*.tar.zst``: one unit per shard, joined to
the captions through an index, :func:`release.caption_index`).

Each row keeps the release as published: the image bytes (JPEG stays JPEG), the
caption verbatim, the official ``id`` (else a hash of ``file_name``), and the
official ``source`` and ``file_name`` (``source`` and ``source_file``; the whole
row as JSON in ``record``). Its modality comes from :data:`SOURCE_MODALITIES` (a
source that holds one modality; the manifest's ``source_modalities`` adds to it),
else from the caption's first sentence; which one decided, and where the two
disagree, is counted in ``build.json``. The green ROI outlines drawn into the
images are recovered as boxes (:mod:`builder.pipeline.drawn_boxes`).

Every input ends as a row or a reject line: a row that cannot be decided or
decoded, a shard member with no caption row, a truncated shard (and how many
members came out of it), and, once every shard is read, each caption row whose
image is in no shard (:meth:`MedtrinitySource.unmatched`).
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from builder.errors import ManifestError, Problem, Reject, Stage
from builder.imaging import RASTER_SUFFIXES
from builder.pipeline import drawn_boxes
from builder.pipeline.data import Box, Record, Released, Unit
from builder.pipeline.readers.raster import RasterReader
from builder.pipeline.sources import release
from builder.pipeline.sources.base import AdapterHooks
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import Parse, flag, path_of
from builder.privacy import redact
from builder.yamlsafe import YamlError, load_yaml

__all__ = ["SOURCE_MODALITIES", "MedtrinitySource", "caption_modality"]

#: Sources of the release that hold one modality. Mixed sources (``pmc_oa``, ``pmc_vqa``,
#: ``llava_med_data``, ``sammed``, ``VALSET``, ...) are not here: their rows are decided by caption.
SOURCE_MODALITIES: Mapping[str, str] = MappingProxyType({
    "deeplesion": "ct", "ct_rate": "ct", "uls23": "ct", "flare23": "ct", "kipa22_kits23_cervix": "ct", "bhx": "ct",
    "brats": "mri", "brats24": "mri", "brats_24": "mri", "mama_mia": "mri",
    "nih_chest": "xray", "chexpert": "xray", "padchest": "xray",
    "breast_histo": "pathology", "quilt_1m": "pathology", "quilt_llava": "pathology",
    "nct_crc_he_100k": "pathology", "ptcga": "pathology", "tcga": "pathology", "ihc4bc": "pathology",
})

#: Modality words of a caption's first sentence; the earliest mention decides.
_CAPTION_WORDS = (
    ("pet", r"\bPET\b|positron emission"),
    ("ct", r"computed tomograph|\b(?:HR|NC|CE|MD|LD)?CTA?\b"),
    ("mri", r"magnetic resonance|\bMR[IA]?\b|\bT[12][- ]?weighted|\bT[12]W\b|\bFLAIR\b|diffusion[- ]weighted|\bDWI\b"),
    ("xray", r"x-?ray|radiograph|mammogra|\bCXR\b|fluoroscop"),
    ("ultrasound", r"ultrasound|ultrasonogra|sonogra|echocardiogra|doppler"),
    ("pathology", r"histopatholog|patholog|histolog|H&E|hematoxylin|immunohistochem|\bstain(ed|ing)\b"),
    ("dermoscopy", r"dermoscop|dermatoscop"),
    ("endoscopy", r"endoscop|colonoscop|gastroscop|laparoscop|bronchoscop|cystoscop|arthroscop"),
    ("fundus", r"fundus|fundoscop|retinal photograph"),
    ("microscopy", r"microscop|micrograph"),
)
_WORDS = [(name, re.compile(pattern, re.I)) for name, pattern in _CAPTION_WORDS]
_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.S)
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _key(source: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (source or "").lower()).strip("_")


def caption_modality(caption: str) -> str | None:
    """The modality the caption's first sentence names first (histology before a stray "microscopy")."""
    match = _SENTENCE.match(caption.strip())
    first = match.group(1) if match else caption.strip()[:400]
    found = [(hit.start(), order, name) for order, (name, word) in enumerate(_WORDS) if (hit := word.search(first))]
    names = {name for _, _, name in found}
    if {"pathology", "microscopy"} <= names:  # "a microscopic image of H&E-stained tissue" is histopathology
        found = [f for f in found if f[2] != "microscopy"]
    return min(found)[2] if found else None


def decide(source: str | None, caption: str, table: Mapping[str, str]) -> tuple[str | None, dict[str, int]]:
    """(modality or None, what decided it) for one row."""
    by_table, by_caption = table.get(_key(source)), caption_modality(caption)
    if by_table:
        notes = {"modality decided by the source table": 1}
        if by_caption and by_caption != by_table:
            notes[f"modality: source table says {by_table}, caption says {by_caption}"] = 1
        return by_table, notes
    if by_caption:
        return by_caption, {"modality decided by the caption": 1}
    return None, {}


def _row_id(spec: SourceSpec, official: Any, fallback: str) -> str:
    if isinstance(official, str) and _SAFE_ID.match(official):
        return official
    return f"{spec.name.replace('.', '_')}-{hashlib.sha1(fallback.encode()).hexdigest()[:20]}"


def _boxes(pixels: np.ndarray, on: bool) -> tuple[Box, ...]:
    if not on:
        return ()
    return tuple(Box(float(x0), float(y0), float(x1), float(y1), "drawn ROI")
                 for x0, y0, x1, y1 in drawn_boxes.find_boxes(pixels))


def _refused(unit: Unit, row_id: str, public: str, stage: Stage, reason: str) -> Record:
    return Record(unit=unit, pixels=np.zeros((1, 1), np.uint8), labelmap=None, modality="",
                  reject=Reject(stage, reason), release=Released(id=row_id, public=public, encoded=b""))


def _release_root(value: Any, root: Path, key: str) -> str:
    """A local snapshot folder, or an ``hf://`` path (streamed through huggingface_hub)."""
    if isinstance(value, str) and value.startswith("hf://"):
        return value.rstrip("/")
    return str(path_of(value, root, key, folder=True))


def _one_of(*choices: str) -> Parse:
    def parse(value: Any, root: Path, key: str) -> str:
        if value not in choices:
            raise ManifestError(key, f"must be one of {', '.join(choices)}")
        return str(value)

    return parse


def _modality_table(value: Any, root: Path, key: str) -> dict[str, str]:
    from medtrinity_25m import MODALITIES

    if not isinstance(value, dict) or not all(isinstance(v, str) and v in MODALITIES for v in value.values()):
        raise ManifestError(key, f"must map source names to modalities ({', '.join(MODALITIES)})")
    return {re.sub(r"[^a-z0-9]+", "_", str(k).lower()).strip("_"): v for k, v in value.items()}


@dataclass(frozen=True)
class MedtrinityOptions:
    """``format: medtrinity``: the official MedTrinity-25M release (a snapshot folder or ``hf://`` path)."""

    root: str = field(default="", metadata={"parse": _release_root, "required": True})
    subset: str = field(default="25M_demo", metadata={"parse": _one_of("25M_demo", "25M_full")})
    # more sources of one modality: {source: modality}, added to the built-in table
    source_modalities: Mapping[str, str] = field(default_factory=dict, metadata={"parse": _modality_table})
    recover_boxes: bool = field(default=True, metadata={"parse": flag})  # the green outlines, as ROIs

    def columns(self) -> set[str]:
        return set()

    def inputs(self) -> str:
        return f"root {self.root} (subset {self.subset})"

    @property
    def data_root(self) -> Path | None:
        return None if self.root.startswith("hf://") else Path(self.root)


class MedtrinitySource(AdapterHooks):
    options = MedtrinityOptions
    modality_from_data = True
    public_names = True  # the release's paths are public
    defaults: Mapping[str, Any] = MappingProxyType({
        "caption": "{modality_name} image[ from the {release_source} collection][, {regions}]",
        "license": "see the original repository (UCSC-VLAA/MedTrinity-25M)",
    })
    fields = frozenset({"release_source", "file_name"})
    rules = ()

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        options: MedtrinityOptions = spec.options
        fs, base = release.filesystem(options.root)
        tables = release.glob(fs, base, f"{options.subset}/*.parquet", f"{options.subset}/**/*.parquet")
        if options.subset == "25M_demo":
            return [self._unit(spec, base, path, {"table": path}) for path in tables], []
        shards = release.glob(fs, base, "25M_accessible/*.tar.zst", "25M_accessible/**/*.tar.zst",
                              "25M_accessible/*.tar", "25M_accessible/**/*.tar")
        if not tables:
            return [], [Problem(options.root, f"no Parquet files under {options.subset}/")]
        index = release.caption_index(fs, tables)
        return [self._unit(spec, base, path, {"shard": path, "index": index},
                           weight=max(1, int(fs.info(path).get("size", 0)) // (8 << 20))) for path in shards], []

    @staticmethod
    def _unit(spec: SourceSpec, base: str, path: str, meta: dict[str, Any], weight: int = 1) -> Unit:
        public = posixpath.relpath(path, base)
        return Unit(spec=spec, image=Path(path), rel=path, split=spec.split, meta=meta, public=public,
                    weight=weight)

    def records(self, unit: Unit) -> Iterator[Record]:
        fs, _ = release.filesystem(unit.spec.options.root)
        if "table" in unit.meta:
            yield from self._table(unit, fs)
        else:
            yield from self._shard(unit, fs)

    def _record(self, unit: Unit, row: Mapping[str, Any], data: bytes | None, public: str, where: str) -> Record:
        spec, options = unit.spec, unit.spec.options
        row_id = _row_id(spec, row.get("id"), where)
        caption = row.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            return _refused(unit, row_id, public, Stage.CAPTION, f"{public}: the row has no caption")
        if not data:
            return _refused(unit, row_id, public, Stage.READ, f"{public}: the row has no image bytes")
        modality, notes = decide(row.get("source"), caption, {**SOURCE_MODALITIES, **options.source_modalities})
        if modality is None:
            return _refused(unit, row_id, public, Stage.MODALITY,
                            f"{public}: neither the source table nor the caption's first sentence names a modality")
        try:
            pixels, _ = RasterReader().read(io.BytesIO(data))
        except Reject as exc:
            return _refused(unit, row_id, public, Stage.READ, f"{public}: {exc.reason}")
        if row.get("source"):
            notes[f"release source: {row['source']}"] = 1
        document = {k: row.get(k) for k in ("id", "file_name", "source", "caption") if row.get(k) is not None}
        released = Released(id=row_id, public=public, encoded=data, caption=caption,
                            source=row.get("source") or None, document=json.dumps(document, ensure_ascii=False),
                            boxes=_boxes(pixels, options.recover_boxes))
        notes["drawn boxes recovered"] = len(released.boxes)
        return Record(unit=unit, pixels=pixels, labelmap=None, modality=modality, notes=notes, release=released)

    def _table(self, unit: Unit, fs: Any) -> Iterator[Record]:
        path = unit.meta["table"]
        with fs.open(path, "rb") as fh:
            columns = release.detect(release.parquet_schema(fh))
        if columns.caption is None or columns.image is None:
            raise Reject(Stage.READ, f"{unit.label}: no caption column or no image column "
                                     f"(columns found: {', '.join(columns.names()) or 'none'})")
        line = 0
        for batch in release.parquet_batches(fs, path, columns.names()):
            for row in batch:
                given = {"id": row.get(columns.id or ""), "caption": row.get(columns.caption),
                         "source": row.get(columns.source or ""), "file_name": row.get(columns.file_name or "")}
                public = given["file_name"] or f"{unit.label}:{line}"
                yield self._record(unit, given, release.image_bytes(row.get(columns.image)), public,
                                   f"{unit.label}\0{line}")
                line += 1

    def _shard(self, unit: Unit, fs: Any) -> Iterator[Record]:
        rows_of = release.lookup(unit.meta["index"])
        try:
            for member in release.members(fs, unit.meta["shard"]):
                rows = rows_of(member.name)
                if not rows:
                    image = member.name.lower().endswith(RASTER_SUFFIXES)
                    yield _refused(unit, _row_id(unit.spec, None, f"member\0{unit.label}\0{member.name}"),
                                   member.name, Stage.PAIRING, f"{unit.label}: member {member.name} has no caption row"
                                   + ("" if image else " (and is not an image file)"))
                for row in rows:
                    yield self._record(unit, row, member.data, row["file_name"] or member.name, row["file_name"])
        except release.Truncated as exc:
            yield _refused(unit, _row_id(unit.spec, None, f"truncated\0{unit.label}"), unit.label, Stage.READ,
                           f"{unit.label}: shard {exc}; the members before the end were kept")

    def terms(self, spec: SourceSpec) -> dict[str, str]:
        """The release's licence and gating terms, from the snapshot's card when it has one."""
        fs, base = release.filesystem(spec.options.root)
        try:
            with fs.open(posixpath.join(base, "README.md"), "r", encoding="utf-8") as fh:
                text = fh.read(1 << 20)
            meta = load_yaml(text.split("---")[1], "README.md") if text.startswith("---") else {}
        except (OSError, IndexError, YamlError, UnicodeDecodeError):
            return {}
        if not isinstance(meta, dict):
            return {}
        gate = " ".join(str(meta[k]).strip() for k in ("extra_gated_heading", "extra_gated_prompt") if meta.get(k))
        return {"license": str(meta.get("license") or ""), "terms": redact(gate)[:2000]}

    def unmatched(self, spec: SourceSpec, seen_ids: Callable[[], set[str]], units: Iterable[Unit]) -> list[Problem]:
        """Caption rows whose image is in no shard (25M_full), once every shard has been read."""
        indexes = sorted({u.meta["index"] for u in units if u.spec.name == spec.name and "index" in u.meta})
        problems = []
        seen = seen_ids() if indexes else set()
        for index in indexes:
            for row in release.all_rows(index):
                row_id = _row_id(spec, row["id"], row["file_name"] or f"{row['part']}\0{row['line']}")
                if row_id in seen:
                    continue
                name = row["file_name"] or f"{posixpath.basename(row['part'])}:{row['line']}"
                why = "its image is in no shard of 25M_accessible" if row["file_name"] else "the row names no file"
                problems.append(Problem(f"{row['part']}:{row['line']}", f"{name}: {why}", name))
        return problems
