"""RTSTRUCT contours as label maps on a series' slices (DICOM PS3.3 C.8.8.6, the commonest annotation on TCIA).

Each ROI of the structure set (``StructureSetROISequence``: number, name) has
contours (``ROIContourSequence``); a ``CLOSED_PLANAR`` contour is a polygon of
patient coordinates (mm) on one slice, the slice its Contour Image Sequence
names or else the one its points lie on (within half the spacing between slices).
Points become (row, column) indices through the slice's origin, cosines and
pixel spacing and are filled with scikit-image's polygon (pixel centres inside
the polygon). Several contours of one ROI on a slice combine by the even-odd
rule (a contour inside another is a hole). ``POINT`` and open contours give no
mask; a contour on a slice that is not in the series gives nothing (counted);
an ROI without contours gives nothing. ROIs are painted largest first, so a
structure inside another (the cord inside the body) stays whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from builder.errors import Reject
from builder.pipeline.sources.series import SliceGeometry

__all__ = ["rtstruct_labels"]


def _slice_of(contour: Any, points: np.ndarray, slices: Sequence[SliceGeometry], by_uid: dict[str, int],
              tolerance: float) -> int | None:
    for image in contour.get("ContourImageSequence", []) or []:
        index = by_uid.get(str(image.get("ReferencedSOPInstanceUID", "")))
        if index is not None:
            return index
    if not slices:
        return None
    heights = np.array([s.along() for s in slices])
    height = float(points[:, :3].mean(axis=0) @ slices[0].normal)
    nearest = int(np.argmin(np.abs(heights - height)))
    return nearest if abs(heights[nearest] - height) <= tolerance else None


def _polygon(points: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """The filled polygon of patient-coordinate points on a slice's grid (skimage: pixel centres inside)."""
    from skimage.draw import polygon

    offset = points - geometry.origin
    columns = offset @ geometry.row_cosine / geometry.spacing[1]
    rows = offset @ geometry.column_cosine / geometry.spacing[0]
    inside = np.zeros(geometry.shape, dtype=bool)
    rr, cc = polygon(rows, columns, shape=geometry.shape)
    inside[rr, cc] = True
    return inside


def rtstruct_labels(path: Path, slices: Sequence[SliceGeometry]) -> tuple[np.ndarray, dict[int, str], int]:
    """A (K, H, W) label map of the structure set on ``slices`` (in series order), the ROI names by value, and how
    many contours lay on no slice of the series."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
        names = {int(item.ROINumber): str(item.get("ROIName", f"roi {item.ROINumber}"))
                 for item in ds.get("StructureSetROISequence", []) or []}
    except Exception as exc:  # a broken structure set is the file's fault: the series is rejected with it
        raise Reject("mask", f"structure set {path.name} is unreadable ({type(exc).__name__}: {exc})") from None
    shape = slices[0].shape
    by_uid = {s.sop_uid: i for i, s in enumerate(slices) if s.sop_uid}
    gaps = np.diff(sorted(s.along() for s in slices))
    tolerance = float(np.median(gaps)) / 2 if gaps.size else 0.5
    masks: dict[int, np.ndarray] = {}
    missed = 0
    for roi in ds.get("ROIContourSequence", []) or []:
        number = int(roi.get("ReferencedROINumber", 0))
        for contour in roi.get("ContourSequence", []) or []:
            if str(contour.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            points = np.asarray(contour.get("ContourData", []), dtype=float).reshape(-1, 3)
            if len(points) < 3:
                continue
            index = _slice_of(contour, points, slices, by_uid, tolerance)
            if index is None:
                missed += 1
                continue
            mask = masks.setdefault(number, np.zeros((len(slices), *shape), dtype=bool))
            mask[index] ^= _polygon(points, slices[index])
    labels = np.zeros((len(slices), *shape), dtype=np.uint16)
    for number in sorted(masks, key=lambda n: -int(masks[n].sum())):  # largest first: nested ones stay whole
        labels[masks[number]] = number
    return labels, {n: names.get(n, f"roi {n}") for n in masks if masks[n].any()}, missed
