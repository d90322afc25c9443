"""The pipeline's plain data types, at the bottom: what one stage hands the next.

sources -> :class:`Unit` (one input file) -> :class:`Record` (one 2D sample) ->
:class:`Roi` (+ :class:`RoiStats`) -> :class:`DescribeRequest` -> :class:`UnitResult`
(a unit's rows, or its reject). Plain dataclasses (after datatrove's ``data.py``):
this module imports nothing of the pipeline, every stage imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from builder.errors import Reject
from builder.imaging import STEM_SUFFIXES

if TYPE_CHECKING:  # the manifest's source entry: a Unit carries it, the type is only named
    from builder.pipeline.sources.manifest import SourceSpec

__all__ = ["Box", "DescribeRequest", "Record", "Released", "Roi", "RoiStats", "Shape", "Sphere", "Unit", "UnitResult",
           "file_stem"]


def file_stem(path: str | Path) -> str:
    """The stem an image is joined on: its name without any image suffix."""
    name = Path(path).name
    for suffix in STEM_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


@dataclass(frozen=True)
class Box:
    """A drawn box of a box table, in pixel-edge coordinates (``normalised``: as fractions of the image's size)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    label: str
    normalised: bool = False


@dataclass(frozen=True)
class Sphere:
    """A finding given in world millimetres (LUNA16's nodules): its centre (x, y, z in the file's patient frame,
    LPS as ITK and DICOM write it) and diameter; a volume turns it into a box on each slice it crosses."""

    x: float
    y: float
    z: float
    diameter: float
    label: str


@dataclass(frozen=True)
class Shape:
    """An annotated region of a 2D image as its format gives it: COCO polygons (``x0, y0, x1, y1, ...`` in
    pixel-edge coordinates) or a COCO run-length encoding (``{"size": [h, w], "counts": [...] or "..."}``)."""

    label: str
    polygons: tuple[tuple[float, ...], ...] = ()
    rle: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Roi:
    bbox: tuple[float, float, float, float]
    label: str
    area_ratio: float
    position: str
    origin: str = "annotation"
    score: float | None = None
    pixels: int = 0  # pixels in the label map (0 for a box)

    def as_row(self) -> dict[str, object]:
        return {
            "bbox": list(map(float, self.bbox)),
            "label": self.label,
            "area_ratio": float(self.area_ratio),
            "position": self.position,
            "origin": self.origin,
            "score": self.score,
        }


@dataclass(frozen=True)
class RoiStats:
    mean_in: float
    mean_ring: float
    cv: float
    redness_in: float | None = None  # RGB only: R - (G + B) / 2, scaled 0..1
    redness_ring: float | None = None
    reference: str | None = "surroundings"  # what mean_ring measures: "surroundings", "parent" (its organ), None

    @property
    def contrast(self) -> float:
        return self.mean_in - self.mean_ring


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
    related: tuple[str, ...] = ()  # other input files its problem names (an ambiguous pairing): never published
    structures: tuple[Path, ...] = ()  # one binary mask file per structure (``structures:``), sorted
    shapes: tuple[Shape, ...] = ()  # regions drawn as polygons or run lengths (COCO), rasterised when read
    series: tuple[Path, ...] = ()  # the files of a DICOM series read as one volume (``series: volume``)
    spheres: tuple[Sphere, ...] = ()  # findings in world millimetres, boxed on each slice they cross

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
        return tuple(str(p) for p in (self.rel, self.image, self.mask, *self.related, *self.structures,
                                            *self.series) if p)


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
    boxes: tuple[Box, ...] = ()  # this sample's own boxes (a sphere's section on a slice), beside its unit's


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
class DescribeRequest:
    id: str
    modality: str
    organ: str
    disease: str
    plane: str | None
    slice_index: int | None
    coarse_caption: str
    rois: Sequence[Roi]
    stats: Sequence[RoiStats]
    view: str  # display convention: radiological, sagittal or image
    image_png: bytes | None = None  # the stored image, for model-backed describers
    spacing: tuple[float, float] | None = None  # (row, column) mm per pixel, where known
    finding_shown: bool | None = None  # a slice: does it show the finding (its ROI)? None: not a slice
    knowledge: Sequence[str] = field(default_factory=tuple)  # retrieved snippet texts
    sequence: str | None = None  # an MR image's sequence (T1, T2, FLAIR, ...), where known
    correction: str = ""  # a retry's note: what the model's first answer contradicted (--on-contradiction)


@dataclass
class UnitResult:
    unit: Unit
    rows: list[dict[str, Any]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)  # of each row's decoded pixels, for dedup
    requests: list[DescribeRequest] = field(default_factory=list)  # rows still to describe (main process)
    dropped: list[tuple[dict[str, Any], Reject]] = field(default_factory=list)  # rows refused after the worker
    reject: Reject | None = None
    notes: dict[str, int] = field(default_factory=dict)  # reader decisions, counted in build.json

    @property
    def unit_id(self) -> str:
        return self.unit.id
