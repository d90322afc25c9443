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
from typing import Any, Iterator, Mapping, Protocol

import numpy as np

from ..errors import Reject
from . import tables
from .manifest import SourceSpec
from ..roi import Box
from .tables import Problem


@dataclass(frozen=True)
class Unit:
    """One input file of a source and what the manifest pairs with it."""

    spec: SourceSpec
    image: Path
    rel: str  # path relative to the manifest's folder (``source_file``)
    mask: Path | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    boxes: tuple[Box, ...] = ()


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


class SourceAdapter(Protocol):
    """Turns one unit of a source into records."""

    def records(self, unit: Unit) -> Iterator[Record]: ...


def _expand(spec: SourceSpec, pattern: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else os.path.join(spec.root, pattern)
    return sorted(Path(p) for p in glob.glob(full, recursive=True) if os.path.isfile(p))


def _relative(spec: SourceSpec, path: Path) -> str:
    try:
        return path.relative_to(spec.root).as_posix()
    except ValueError:
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
    if spec.masks is None:
        return {}, []
    masks = _expand(spec, spec.masks)
    if not any(c in spec.masks for c in "*?["):
        if not masks:
            return {}, [Problem(spec.masks, "mask file not found")]
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
        image = by_stem.get(mask_key(mask, spec.mask_suffixes)) or by_stem.get(tables.file_stem(mask))
        if image is None:
            problems.append(Problem(_relative(spec, mask), "mask pairs with no image"))
        elif image in pairs:
            problems.append(Problem(_relative(spec, mask), f"second mask for {_relative(spec, image)}"))
        else:
            pairs[image] = mask
    return pairs, problems


def enumerate_units(spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
    """Every input file of a source as a unit, and the side-table problems."""
    images = _expand(spec, spec.images)
    pairs, problems = pair_masks(spec, images)
    meta: dict[str, dict[str, Any]] = {}
    boxes: dict[str, list[Box]] = {}
    if spec.metadata:
        meta, bad = tables.read_metadata(spec.metadata)
        problems += bad
    if spec.boxes:
        boxes, bad = tables.read_boxes(spec.boxes)
        problems += bad
    stems = {tables.file_stem(image) for image in images}
    for name, table in (("metadata", meta), ("boxes", boxes)):
        for stem in sorted(set(table) - stems):
            problems.append(Problem(str(getattr(spec, name)), f"{name} row for {stem!r} matches no image"))
    units = [
        Unit(
            spec=spec,
            image=image,
            rel=_relative(spec, image),
            mask=pairs.get(image),
            meta=meta.get(tables.file_stem(image), {}),
            boxes=tuple(boxes.get(tables.file_stem(image), ())),
        )
        for image in images
    ]
    return units, problems


def check_inside(unit: Unit) -> None:
    """Refuse a file that resolves outside the manifest's folder (a symlink out)."""
    if os.path.isabs(unit.spec.images):
        return
    for path in (unit.image, unit.mask):
        if path is None:
            continue
        real = os.path.realpath(path)
        root = os.path.realpath(unit.spec.root)
        if os.path.commonpath([real, root]) != root:
            raise Reject("path", f"{path} resolves outside the manifest's folder")
