"""DICOM series as volumes (``format: dicom`` with ``series: volume``): listing, grouping, geometry.

Files are grouped by SeriesInstanceUID (when it is empty: by folder and
geometry), each group one unit whose slices are ordered along the slice normal
(k = 0 first along it: the most inferior slice of an axial series). Structure
sets (RTSTRUCT) among the inputs, or named by ``rtstruct:``, pair with the
series they reference (by series UID, or by the SOP Instance UIDs of their
contour images). Objects that are not images (RTPLAN, RTDOSE, SR, PR, KO, ...)
are counted as skipped by kind; files of other formats beside the series (a
tool's NIfTI exports) are counted as side files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import Problem
from builder.imaging import RASTER_SUFFIXES
from builder.pipeline.data import Unit
from builder.pipeline.readers.dicom import NOT_IMAGES
from builder.pipeline.sources.base import expand, mask_files, relative, skipped_kind
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import VOLUME_SUFFIXES, is_glob

__all__ = ["NOT_IMAGES", "Header", "SliceGeometry", "geometry", "read_header", "series_units"]

#: Files beside a series that are of another format (a tool's exports, notes): side files, not DICOM.
FOREIGN_SUFFIXES = (*VOLUME_SUFFIXES, *RASTER_SUFFIXES, ".json", ".csv", ".txt", ".md", ".xml", ".yaml", ".yml",
                    ".zip", ".gz", ".html", ".pdf")
HEADER_TAGS = ["Modality", "SOPInstanceUID", "SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient",
               "PixelSpacing", "Rows", "Columns", "ReferencedFrameOfReferenceSequence", "ROIContourSequence"]


@dataclass(frozen=True)
class Header:
    """What listing reads of a DICOM file: its kind, identity and geometry (nothing reaches a row)."""

    path: Path
    modality: str
    sop_uid: str
    series_uid: str
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    shape: tuple[int, int]
    referenced: frozenset[str] = field(default_factory=frozenset)  # an RTSTRUCT's series and image UIDs


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return values if len(values) == count else None


def _references(ds: Any) -> frozenset[str]:
    found = set()
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for study in frame.get("RTReferencedStudySequence", []) or []:
            for series in study.get("RTReferencedSeriesSequence", []) or []:
                found.add(str(series.get("SeriesInstanceUID", "")))
                found.update(str(i.get("ReferencedSOPInstanceUID", "")) for i in series.get("ContourImageSequence",
                                                                                            []) or [])
    for roi in ds.get("ROIContourSequence", []) or []:
        for contour in roi.get("ContourSequence", []) or []:
            found.update(str(i.get("ReferencedSOPInstanceUID", "")) for i in contour.get("ContourImageSequence",
                                                                                         []) or [])
    return frozenset(found - {""})


def read_header(path: Path) -> Header | None:
    """The file's header, or None when it is not DICOM (pydicom cannot parse it)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=HEADER_TAGS)
    except Exception:  # any parse failure: not a DICOM file this listing can use
        return None
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if not modality and "SOPInstanceUID" not in ds:
        return None
    return Header(path, modality, str(ds.get("SOPInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")),
                  _floats(ds.get("ImagePositionPatient"), 3), _floats(ds.get("ImageOrientationPatient"), 6),
                  (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)),
                  _references(ds) if modality == "RTSTRUCT" else frozenset())


def _group_key(header: Header) -> tuple[Any, ...]:
    if header.series_uid:
        return ("uid", header.series_uid)
    orientation = tuple(round(v, 3) for v in header.orientation) if header.orientation else None
    return ("folder", str(header.path.parent), orientation, header.shape)


@dataclass
class _Listing:
    spec: SourceSpec
    units: list[Unit] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def skip(self, path: Path, kind: str) -> None:
        self.problems.append(Problem(relative(self.spec, path), kind, skipped=kind))

    def reject(self, path: Path, reason: str) -> None:
        self.problems.append(Problem(relative(self.spec, path), reason, "series"))


def series_units(spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
    """One unit per series of the source's files, each with its structure set, and every other file accounted."""
    listing = _Listing(spec)
    named = set(expand(spec, spec.options.rtstruct)) if spec.options.rtstruct else set()
    paths = sorted(set(expand(spec, spec.options.images)) | named)
    claimed = set(mask_files(spec)) | (set(expand(spec, spec.options.segmentations))
                                       if spec.options.segmentations else set())
    groups: dict[tuple[Any, ...], list[Header]] = {}
    structures: list[Header] = []
    for path in paths:
        kind = skipped_kind(path, ()) or ("side file (not DICOM)" if path.name.lower().endswith(FOREIGN_SUFFIXES)
                                          else None)
        if path in claimed:
            continue
        header = None if kind else read_header(path)
        if kind:
            listing.skip(path, kind)
        elif header is None:
            listing.reject(path, "not a DICOM file")
        elif header.modality == "RTSTRUCT":
            structures.append(header)
        elif header.modality in NOT_IMAGES or (header.modality == "SEG" and not spec.options.segmentations):
            listing.skip(path, f"DICOM {header.modality} (not an image)")
        else:
            groups.setdefault(_group_key(header), []).append(header)
    masks = _pair(listing, groups, structures)
    masks.update(_label_maps(listing, groups))
    masks.update(_segmentations(listing, groups))
    for key, members in groups.items():
        members.sort(key=lambda h: str(h.path))
        first = members[0].path
        listing.units.append(Unit(spec=spec, image=first, rel=relative(spec, first), split=spec.split,
                                  mask=masks.get(key), series=tuple(h.path for h in members)))
    return sorted(listing.units, key=lambda u: u.rel), listing.problems


def _label_maps(listing: _Listing, groups: dict[tuple[Any, ...], list[Header]]) -> dict[tuple[Any, ...], Path]:
    """``masks:`` label volumes on a series' grid: one file for every series, or one per series folder."""
    spec = listing.spec
    if not spec.options.masks:
        return {}
    files = mask_files(spec)
    if not is_glob(spec.options.masks):
        return {key: files[0] for key in groups}
    by_folder = {path.parent: path for path in files}
    found = {key: by_folder[members[0].path.parent] for key, members in groups.items()
             if members[0].path.parent in by_folder}
    for path in sorted(set(files) - set(found.values())):
        listing.reject(path, "label volume in no series' folder")
    return found


def _segmentations(listing: _Listing, groups: dict[tuple[Any, ...], list[Header]]) -> dict[tuple[Any, ...], Path]:
    """DICOM SEG objects (``segmentations:``) with the series whose images they reference."""
    spec = listing.spec
    if not spec.options.segmentations:
        return {}
    from builder.pipeline.sources.seg import pair_segmentations

    members = {h.path: key for key, headers in groups.items() for h in headers}
    pairs, problems = pair_segmentations(list(members), expand(spec, spec.options.segmentations),
                                         lambda p: relative(spec, p))
    listing.problems += problems
    return {members[image]: seg for image, seg in pairs.items()}


def _pair(listing: _Listing, groups: dict[tuple[Any, ...], list[Header]],
          structures: list[Header]) -> dict[tuple[Any, ...], Path]:
    """Each structure set to the series it references; one that references none of them is a reject line."""
    owner: dict[str, tuple[Any, ...]] = {}
    for key, members in groups.items():
        for header in members:
            owner[header.sop_uid] = key
            owner[header.series_uid] = key
    owner.pop("", None)
    masks: dict[tuple[Any, ...], Path] = {}
    for structure in sorted(structures, key=lambda h: str(h.path)):
        keys = {owner[uid] for uid in structure.referenced if uid in owner}
        if not keys:
            listing.reject(structure.path, "structure set whose series is not among the inputs")
        elif len(keys) > 1 or next(iter(keys)) in masks:
            listing.reject(structure.path, "structure set that references several series, or a second one for "
                                           "its series (one structure set per series)")
        else:
            masks[next(iter(keys))] = structure.path
    return masks


@dataclass(frozen=True)
class SliceGeometry:
    """Where one slice lies: its SOP UID, origin, row and column cosines, spacing (row, column) in mm, shape."""

    sop_uid: str
    origin: np.ndarray
    row_cosine: np.ndarray  # direction of increasing column index
    column_cosine: np.ndarray  # direction of increasing row index
    spacing: tuple[float, float]
    shape: tuple[int, int]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.column_cosine)

    def along(self) -> float:
        """The slice's position along its normal (sorts the series)."""
        return float(self.origin @ self.normal)


def geometry(meta: dict[str, Any], shape: tuple[int, int]) -> SliceGeometry | None:
    """A slice's geometry from what the DICOM reader gives (``meta``); None when position, orientation or
    spacing is missing."""
    position = _floats(meta.get("ImagePositionPatient"), 3)
    orientation = _floats(meta.get("ImageOrientationPatient"), 6)
    spacing = meta["spacing"][0] if meta.get("spacing") else None
    if position is None or orientation is None or not spacing:
        return None
    row, column = np.array(orientation[:3]), np.array(orientation[3:])
    return SliceGeometry(str(meta.get("sop_instance_uid", "")), np.array(position), row, column,
                         (float(spacing[0]), float(spacing[1])), shape)
