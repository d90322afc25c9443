"""A DICOM series read as one volume: its slices in order along the normal, its structure set as masks.

In the series' own plane (an axial series sliced axially, the default) each
row is a slice as stored, displayed with its own header window, exactly the
pixels ``series: file`` would give; in another plane the slices are stacked
into a volume with the series' geometry, reoriented to RAS+ and sliced as a
NIfTI is (:mod:`builder.pipeline.readers.nifti`), displayed with the middle
slice's window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from builder.errors import Reject
from builder.pipeline.data import Record, Unit
from builder.pipeline.readers.dicom import DicomReader, plane_of
from builder.pipeline.readers.frames import display
from builder.pipeline.readers.itk import LPS_TO_RAS
from builder.pipeline.readers.nifti import n_slices, ras, slice_display
from builder.pipeline.roi import as_labels
from builder.pipeline.sources.options import VOLUME_SUFFIXES
from builder.pipeline.sources.rtstruct import rtstruct_labels
from builder.pipeline.sources.series import SliceGeometry, geometry, read_header
from builder.pipeline.sources.volume import read_volume

__all__ = ["series_records"]

Slice = tuple[SliceGeometry, np.ndarray, dict[str, Any]]


def _slices(unit: Unit, reader: DicomReader) -> list[Slice]:
    slices = []
    for path in unit.series:
        values, meta = reader.read(path)
        if values.shape[0] != 1 or meta["color"]:
            raise Reject("read", f"{path.name}: a slice of a series read as a volume must be one grey frame")
        found = geometry(meta, values.shape[1:3])
        if found is None:
            raise Reject("read", f"{path.name} has no position, orientation or pixel spacing: the series cannot be "
                                 "ordered (read it with series: file)")
        slices.append((found, values[0], meta))
    first = slices[0][0]
    for found, values, _ in slices:
        if values.shape != slices[0][1].shape or not np.allclose(found.normal, first.normal, atol=1e-3):
            raise Reject("read", "the series' slices differ in size or orientation: it is not one volume")
    return sorted(slices, key=lambda s: s[0].along())


def series_records(unit: Unit, reader: DicomReader, modality_of: Callable[[Any, Any], str]) -> Iterator[Record]:
    options = unit.spec.options
    slices = _slices(unit, reader)
    geometries = [s[0] for s in slices]
    labels, names, missed = _masks(unit, slices)
    meta = slices[len(slices) // 2][2]
    modality = unit.spec.modality or modality_of(meta.get("Modality"), options.modality_map)
    notes = {"series_slices": len(slices), **({"contours_on_no_slice": missed} if missed else {})}
    hints = {k: meta[k] for k in ("organ", "sequence", "screen_text") if meta.get(k)}
    native = plane_of(list(geometries[0].row_cosine) + list(geometries[0].column_cosine))
    in_place = (options.slicing.plane in (native, None) or native is None) and not isinstance(labels, Volume)
    rows = _native(slices, labels) if in_place else _resliced(slices, labels, options.slicing.plane or "axial")
    if not in_place:  # a line of text burned into an acquired slice is one row of pixels across a reslice: unreadable
        hints.pop("screen_text", None)
    first = True
    for index, pixels, labelmap, spacing, window in rows:
        if index % options.slicing.step:
            continue
        if options.slicing.only_with_roi and (labelmap is None or not labelmap.any()):
            continue
        yield Record(unit=unit, pixels=display(pixels, window, modality, meta["invert"]), labelmap=labelmap,
                     label_names=names or None, modality=modality, plane=options.slicing.plane if native else None,
                     slice_index=index, hints=hints, notes=notes if first else {}, spacing=spacing)
        first = False


Row = tuple[int, np.ndarray, "np.ndarray | None", "tuple[float, float]", Any]


class Volume(np.ndarray):
    """A label volume already in RAS+ (a NIfTI label map on the series' grid), not in the slices' stored layout."""


def _masks(unit: Unit, slices: list[Slice]) -> tuple[Any, dict[int, str] | None, int]:
    """The series' labels: an RTSTRUCT's or a SEG's as (K, H, W) in the stored layout, a label volume's in RAS+."""
    path = unit.mask
    if path is None:
        return None, None, 0
    if path.name.lower().endswith(VOLUME_SUFFIXES):
        values, found = read_volume(path)
        _, canonical = _ras_volume(slices)
        if values.shape[:3] != _stored_shape(slices) or not np.allclose(found["affine"], canonical, atol=1e-2):
            raise Reject("mask", f"label volume {path.name} is not on the series' grid (shape {values.shape}, "
                                 f"affine {found['affine']}); it is not resampled")
        return as_labels(values).view(Volume), None, 0
    header = read_header(path)
    if header is not None and header.modality == "SEG":
        return _seg_labels(path, slices)
    return rtstruct_labels(path, [s[0] for s in slices])


def _seg_labels(path: Path, slices: list[Slice]) -> tuple[np.ndarray, dict[int, str], int]:
    from builder.pipeline.sources.seg import seg_labelmaps

    shape = slices[0][1].shape
    labels = np.zeros((len(slices), *shape), dtype=np.uint16)
    names: dict[int, str] = {}
    missed = 0
    for index, (found, _, _) in enumerate(slices):
        try:
            maps, names = seg_labelmaps(path, found.sop_uid, 1, shape)
        except Reject:
            missed += 1  # a slice the SEG does not cover: no labels there
            continue
        labels[index] = maps[0]
    return labels, names, 0 if missed < len(slices) else missed


def _stored_shape(slices: list[Slice]) -> tuple[int, int, int]:
    rows, columns = slices[0][1].shape
    return columns, rows, len(slices)


def _native(slices: list[Slice], labels: np.ndarray | None) -> Iterator[Row]:
    for index, (found, values, meta) in enumerate(slices):
        yield index, values, None if labels is None else labels[index], found.spacing, meta["windows"][0]


def _affine(slices: list[Slice]) -> np.ndarray:
    """The voxel (column i, row j, slice k) to RAS+ affine of the series."""
    first = slices[0][0]
    gaps = np.diff([s[0].along() for s in slices])
    gap = float(np.median(gaps)) if gaps.size else 1.0
    lps = np.eye(4)
    lps[:3, 0] = first.row_cosine * first.spacing[1]  # voxel i: the column index
    lps[:3, 1] = first.column_cosine * first.spacing[0]  # voxel j: the row index
    lps[:3, 2] = first.normal * gap
    lps[:3, 3] = first.origin
    return LPS_TO_RAS @ lps


def _ras_volume(slices: list[Slice]) -> tuple[np.ndarray, np.ndarray]:
    stack = np.stack([s[1] for s in slices]).transpose(2, 1, 0)  # (k, row, column) -> (i, j, k)
    return ras(stack, _affine(slices))


def _resliced(slices: list[Slice], labels: np.ndarray | None, plane: str) -> Iterator[Row]:
    """The series as a RAS+ volume, sliced across ``plane``."""
    volume, canonical = _ras_volume(slices)
    label_volume = labels if labels is None or isinstance(labels, Volume) else \
        ras(labels.transpose(2, 1, 0), _affine(slices))[0]
    zooms = np.linalg.norm(canonical[:3, :3], axis=0)
    spacing = {"axial": (zooms[1], zooms[0]), "coronal": (zooms[2], zooms[0]), "sagittal": (zooms[2], zooms[1])}
    window = slices[len(slices) // 2][2]["windows"][0]
    for index in range(n_slices(volume.shape, plane)):
        labelmap = None if label_volume is None else slice_display(label_volume, plane, index)
        yield (index, slice_display(volume, plane, index), labelmap,
               (float(spacing[plane][0]), float(spacing[plane][1])), window)
