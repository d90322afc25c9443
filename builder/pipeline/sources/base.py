"""Work units and records: what a source adapter takes and gives.

A :class:`Unit` is one input file (with its paired mask, metadata row and
boxes); it is small and picklable so worker processes can take it. An adapter
turns a unit into :class:`Record` objects, one per 2D sample (a raster image, a
DICOM frame, a volume slice), or raises :class:`builder.errors.Reject`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import numpy as np

import builder.pipeline.sources.tables as tables
from builder.errors import Problem, Reject
from builder.pipeline.roi import Box
from builder.pipeline.sources.manifest import SourceSpec


@dataclass(frozen=True)
class Unit:
    """One input file of a source and what the manifest pairs with it."""

    spec: SourceSpec
    image: Path
    rel: str  # path relative to the manifest's folder: local, never published
    split: str = "train"
    mask: Path | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    boxes: tuple[Box, ...] = ()
    public: str | None = None  # the file's published name: a public release's own, or opted in
    key: str = ""  # the pseudonymous file key (:mod:`builder.privacy`), set when units are collected
    problem: str | None = None  # why the unit cannot be built, found while listing it (a reject)
    weight: int = 1  # files' worth of work in the unit (an archive of many images): scales its time limit

    @property
    def id(self) -> str:
        """The file's id: ``<source>-<key>`` (a 2D image's row id)."""
        return f"{self.spec.name.replace('.', '_')}-{self.key}"

    @property
    def label(self) -> str:
        """How published outputs name the file: its public name, else its id."""
        return self.public or self.id

    @property
    def names(self) -> tuple[str, ...]:
        """Input names that published text must not hold."""
        return tuple(str(p) for p in (self.rel, self.image, self.mask) if p)


@dataclass
class Record:
    """One 2D sample, pixels ready to store, before ROIs and text."""

    unit: Unit
    pixels: np.ndarray  # (H, W) uint8/uint16 or (H, W, 3) uint8, as displayed
    labelmap: np.ndarray | None
    modality: str
    plane: str | None = None
    slice_index: int | None = None
    hints: dict[str, Any] = field(default_factory=dict)  # e.g. organ from a DICOM header
    notes: dict[str, int] = field(default_factory=dict)  # counted in build.json: what the reader decided
    spacing: tuple[float, float] | None = None  # pixel spacing (row, column) in mm, where known
    volume_index: int | None = None  # which volume of a 4D series, when several are kept
    label_names: Mapping[int, str] | None = None  # the mask's own label names (a DICOM SEG's segments)
    reject: Reject | None = None  # this one sample is unusable (a blank frame): a reject line, not a row
    release: Released | None = None  # a published release's own row: its id, bytes and text, kept as they are


@dataclass(frozen=True)
class Released:
    """What a published release gives one row, kept exactly (MedTrinity-25M: its id, JPEG bytes, caption)."""

    id: str  # the row id
    public: str  # the row's published file name (``source_file``)
    encoded: bytes  # the image as published: stored without re-encoding
    caption: str | None = None  # the release's description, kept verbatim as the row's caption
    source: str | None = None  # the release's own source dataset (the row's ``source``)
    document: str | None = None  # the release's row as JSON (the row's ``record``)
    boxes: tuple[Box, ...] = ()  # boxes recovered from the pixels
    box_origin: str = "recovered"


@dataclass(frozen=True)
class Rule:
    """A named curation rule: ``check(unit)`` gives the reason to flag it, or None."""

    name: str
    check: Callable[[Unit], str | None]


class SourceAdapter(Protocol):
    """A manifest ``format``: which keys it needs, its units, its records."""

    @property
    def options(self) -> type:
        """The format's options dataclass (:mod:`builder.pipeline.sources.options`)."""
        ...

    @property
    def modality_from_data(self) -> bool:
        """True if ``modality`` may be left out."""
        ...

    @property
    def defaults(self) -> Mapping[str, Any]:
        """Manifest defaults of the format (data, not branches)."""
        ...

    @property
    def fields(self) -> frozenset[str]:
        """Template fields its units provide."""
        ...

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Curation rules run before a unit is read."""
        ...

    @property
    def public_names(self) -> bool:
        """True if the inputs are a public release whose names may be published."""
        ...

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]: ...

    def records(self, unit: Unit) -> Iterator[Record]: ...


class FileSource:
    """Base of the formats whose inputs are the files an ``images`` glob matches."""

    modality_from_data = False
    public_names = False  # True for a published release whose file names are public (kept in outputs)
    defaults: Mapping[str, Any] = {}
    fields: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = ()

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        return enumerate_units(spec)


def expand(spec: SourceSpec, pattern: str) -> list[Path]:
    """The files a glob of the source matches, sorted."""
    full = pattern if os.path.isabs(pattern) else os.path.join(spec.root, pattern)
    return sorted(Path(p) for p in glob.glob(full, recursive=True) if os.path.isfile(p))


def relative(spec: SourceSpec, path: Path) -> str:
    """``source_file``: relative to the manifest's folder, else to the source's root."""
    for base in (spec.root, spec.data_root):
        if base is not None and path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.as_posix()


def mask_key(path: Path, suffixes: tuple[str, ...]) -> str:
    """The image stem a mask pairs with: its stem less one of ``suffixes``."""
    stem = tables.file_stem(path)
    for suffix in suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def pair_masks(spec: SourceSpec, images: list[Path]) -> tuple[dict[Path, Path], list[Problem]]:
    """Pair masks with images.

    The rule: when ``masks`` names one file (no glob characters), that file is
    the mask of every image (an atlas on the images' grid). Otherwise a mask
    pairs with the image whose file stem equals the mask's stem, less one of
    ``mask_suffixes`` (``liver_01_seg.nii.gz`` -> ``liver_01``). A mask that
    pairs with no image is reported.
    """
    if spec.options.masks is None:
        return {}, []
    masks = expand(spec, spec.options.masks)
    if not any(c in spec.options.masks for c in "*?["):
        if not masks:
            return {}, [Problem(spec.options.masks, "mask file not found", "masks")]
        return {image: masks[0] for image in images}, []
    image_set = set(images)
    by_stem: dict[str, Path] = {}
    for image in images:
        by_stem.setdefault(tables.file_stem(image), image)
    pairs: dict[Path, Path] = {}
    problems = []
    for mask in masks:
        if mask in image_set:
            continue
        found = by_stem.get(mask_key(mask, spec.options.mask_suffixes)) or by_stem.get(tables.file_stem(mask))
        if found is None:
            problems.append(Problem(relative(spec, mask), "mask pairs with no image", "masks"))
        elif found in pairs:
            problems.append(Problem(relative(spec, mask), f"second mask for {relative(spec, found)}", "masks"))
        else:
            pairs[found] = mask
    return pairs, problems


def enumerate_units(spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
    """Every input file of a source as a unit, and the side-table problems."""
    images = expand(spec, spec.options.images)
    pairs, problems = pair_masks(spec, images)
    meta: dict[str, dict[str, Any]] = {}
    boxes: dict[str, list[Box]] = {}
    try:
        if spec.options.metadata:
            meta, bad = tables.read_metadata(spec.options.metadata)
            problems += bad
        if spec.options.boxes:
            boxes, bad = tables.read_boxes(spec.options.boxes)
            problems += bad
    except tables.TableError as exc:
        problems.append(Problem(str(exc).split(":")[0], str(exc), "side table"))
    stems = {tables.file_stem(image) for image in images}
    for name, table in (("metadata", meta), ("boxes", boxes)):
        for stem in sorted(set(table) - stems):
            problems.append(Problem(f"{getattr(spec.options, name)} ({stem})",
                                    f"{name} row for {stem!r} matches no image",
                                    name))
    broken = {p.stem: p for p in problems if p.stem}
    units = [
        Unit(
            spec=spec,
            image=image,
            rel=relative(spec, image),
            split=spec.split,
            mask=pairs.get(image),
            meta=meta.get(tables.file_stem(image), {}),
            boxes=tuple(boxes.get(tables.file_stem(image), ())),
            public=relative(spec, image) if spec.publish_paths else None,
            problem=_row_problem(broken.get(tables.file_stem(image))),
        )
        for image in images
    ]
    return units, problems


def _row_problem(problem: Problem | None) -> str | None:
    return None if problem is None else f"its {problem.public or 'side-table'} row is unusable: {problem.reason}"


def check_inside(unit: Unit) -> None:
    """Refuse a file that resolves outside its source's folder (a symlink out).

    The folder is the source's ``root`` if it has one, else the manifest's
    folder; a source whose ``images`` glob is an absolute path is not checked.
    """
    spec = unit.spec
    if spec.data_root is None and os.path.isabs(getattr(spec.options, "images", "/")):  # or a remote release
        return
    base = os.path.realpath(spec.data_root or spec.root)
    for path in (unit.image, unit.mask):
        if path is not None and os.path.commonpath([os.path.realpath(path), base]) != base:
            raise Reject("path", f"{path} resolves outside the source's folder {base}")
