"""Image features measured inside each ROI and in the tissue it is compared with.

Intensities are luminance scaled to 0..1 by the pixel type's range. A ROI is
compared with (``RoiStats.reference``):

- ``"parent"``: the rest of the organ a parcellation's regions make up
  (:func:`builder.pipeline.body.parent_of`), for each region of an atlas: a
  cortical parcel against the brain, not against the CSF and air beside it;
- ``"surroundings"``: else a ring, the ROI's box grown by half its size on each
  side (clipped to the image) less the ROI, counting only pixels inside the body
  (:func:`builder.pipeline.body.body_of`: never the air or padding around it);
- None: the comparison is not meaningful, when under :data:`MIN_RING_SHARE` of
  the ring lies inside the body (a ROI at the body's edge).

Contrast is ``mean_in - mean_ring``; heterogeneity is the coefficient of
variation inside the ROI.
"""

from __future__ import annotations

import math
from typing import Sequence, overload

import numpy as np

from builder.imaging import gray, opencv
from builder.pipeline.body import Body, parent_of
from builder.pipeline.data import Roi, RoiStats


def _luminance(pixels: np.ndarray) -> np.ndarray:
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return gray(pixels) / np.float32(scale)


#: The luminance of every 8-bit grey value, as :func:`_luminance` computes it, in float64.
_LUM8 = _luminance(np.arange(256, dtype=np.uint8)).astype(np.float64)


def _integral(plane: np.ndarray, exact: bool = False) -> np.ndarray:
    """Summed-area table with a zero first row and column: any box sum in four lookups.

    ``exact``: every partial sum of the plane is exact in float64, so any order of summing gives
    the same table bit for bit; then OpenCV's ``integral`` does it where installed (3-4x numpy's two
    ``cumsum`` here), else numpy's order is kept.
    """
    cv2 = opencv() if exact else None
    if cv2 is not None:
        return cv2.integral(plane, sdepth=cv2.CV_64F)
    table = np.zeros((plane.shape[0] + 1, plane.shape[1] + 1), np.float64)
    np.cumsum(np.cumsum(plane, axis=0, dtype=np.float64), axis=1, out=table[1:, 1:])
    return table


def _exact_sums(pixels: np.ndarray) -> bool:
    """8-bit grey luminance: float32 values k/255, multiples of 2**-31; up to 2**22 pixels no sum needs over 53 bits."""
    return pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.size <= 1 << 22


def _sums(table: np.ndarray, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray) -> np.ndarray:
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


MIN_RING_SHARE = 0.25  # of a ROI's ring inside the body, for its surroundings to be a meaningful reference
MIN_REST = 32  # pixels of the organ beside a parcel, for the organ to be its reference


def measure(pixels: np.ndarray, mask: np.ndarray | None, rois: Sequence[Roi], body: np.ndarray | None = None,
            parent: np.ndarray | None = None) -> Measurements:
    """One :class:`RoiStats` per ROI (mask pixels for mask ROIs, the box for others), made when asked for.

    ``body``: the body mask (holding every mask pixel); ``parent``: the organ a parcellation makes up.
    One pass over the image whatever the number of ROIs, vectorised over the ROIs: per-label
    sums of the mask (:func:`_mask_sums`) give each mask ROI's inside, summed-area tables give every
    box and ring window; the ring is the window's sum less the inside's.
    """
    if not rois:
        return Measurements({}, {}, np.zeros(0))
    height, width = pixels.shape[:2]
    lum = _luminance(pixels).astype(np.float64)
    planes = {"lum": lum}
    if pixels.ndim == 3:
        rgb = pixels[..., :3].astype(np.float64) / 255.0
        planes["red"] = rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2
    x0, y0, x1, y1 = np.rint(np.array([roi.bbox for roi in rois], dtype=np.float64)).astype(np.intp).T  # as round()
    x0, x1 = np.minimum(np.maximum(x0, 0), width), np.minimum(np.maximum(x1, 0), width)
    y0, y1 = np.minimum(np.maximum(y0, 0), height), np.minimum(np.maximum(y1, 0), height)
    gx, gy = np.maximum(1, (x1 - x0) // 2), np.maximum(1, (y1 - y0) // 2)
    window = (np.maximum(0, x0 - gx), np.maximum(0, y0 - gy), np.minimum(width, x1 + gx), np.minimum(height, y1 + gy))
    masked = np.array([bool(roi.pixels) and mask is not None for roi in rois])
    # a mask ROI's pixel count is its label's count in the mask (rois_from_labelmap), a box ROI's its box's area
    inside = {"n": np.where(masked, [float(roi.pixels) for roi in rois], (x1 - x0) * (y1 - y0)).astype(np.float64)}
    if not masked.all():  # box ROIs sum their squares from a table
        planes["sq"] = lum * lum
    in_mask = _mask_sums(pixels, mask, planes, len(rois)) if mask is not None and masked.any() else {}
    if parent is not None and masked.all() and "red" not in planes:  # every parcel against its organ: no rings
        rest_n = float(np.count_nonzero(parent)) - inside["n"]
        if (rest_n >= np.maximum(MIN_REST, inside["n"] / 2)).all():
            inside.update(lum=in_mask["lum"], sq=in_mask["sq"])
            around = {"lum": float(lum[parent].sum()) - in_mask["lum"], "n": rest_n, "parent": np.ones(len(rois))}
            return Measurements(inside, around, np.zeros(len(rois)))
    around = {}
    for name in ("lum", "sq", "red"):
        plane = planes.get(name)
        if plane is None and name not in in_mask:
            continue
        table = None if plane is None else _integral(plane, name == "lum" and _exact_sums(pixels))
        boxed = np.zeros(len(rois)) if table is None else _sums(table, x0, y0, x1, y1)
        if name in in_mask:
            boxed = np.where(masked, in_mask[name], boxed)
        inside[name] = boxed
        if name != "sq":
            around[name] = _sums(table, *window) - boxed  # type: ignore[arg-type]
    area = ((window[2] - window[0]) * (window[3] - window[1])).astype(np.float64)
    rings = area - inside["n"]
    if body is not None:  # the ring's pixels inside the body only
        weight = body.astype(np.float64)
        exact = _exact_sums(pixels)
        in_body, lum_in_body = (_integral(weight, exact), _integral(lum * weight, exact))
        box_n, box_lum = _sums(in_body, x0, y0, x1, y1), _sums(lum_in_body, x0, y0, x1, y1)
        around["lum"] = _sums(lum_in_body, *window) - np.where(masked, inside["lum"], box_lum)
        around["n"] = _sums(in_body, *window) - np.where(masked, inside["n"], box_n)
        around["meaningful"] = (around["n"] >= MIN_RING_SHARE * rings).astype(np.float64)
    if parent is not None:  # each parcel against the rest of its organ
        rest_n = float(parent.sum()) - inside["n"]
        rest_lum = float(lum[parent].sum()) - inside["lum"]
        around["parent"] = (masked & (rest_n >= np.maximum(MIN_REST, inside["n"] / 2))).astype(np.float64)
        around["lum"] = np.where(around["parent"] > 0, rest_lum, around.get("lum", rest_lum))
        around["n"] = np.where(around["parent"] > 0, rest_n, around.get("n", rings))
    return Measurements(inside, around, area)


def _mask_sums(pixels: np.ndarray, mask: np.ndarray, planes: dict[str, np.ndarray],
               count: int) -> dict[str, np.ndarray]:
    """Sums of luminance, its square (and redness) over each mask label 1..``count``.

    8-bit grey under an 8-bit mask: one histogram of (label, value) pairs, since every plane is a
    function of the value alone (the luminance sums are exact, as the weighted ``bincount``'s:
    multiples of 2**-31 under 2**22 pixels). Otherwise one weighted ``np.bincount`` per plane.
    """
    if _exact_sums(pixels) and mask.dtype == np.uint8:
        hist = _label_value_histogram(mask, pixels, count)[1:count + 1]
        return {"lum": hist @ _LUM8, "sq": hist @ (_LUM8 * _LUM8)}
    flat = mask.ravel().astype(np.intp)
    weighted = dict(planes, sq=planes["sq"] if "sq" in planes else planes["lum"] * planes["lum"])
    return {name: np.bincount(flat, weights=plane.ravel(), minlength=count + 1)[1:count + 1]
            for name, plane in weighted.items()}


def _label_value_histogram(mask: np.ndarray, pixels: np.ndarray, count: int) -> np.ndarray:
    """Pixels of each (label 0..``count``, value 0..255) pair: OpenCV's ``calcHist`` where installed
    (counts exact in float32 up to 2**24 pixels, which 8-bit grey here never exceeds), else ``np.bincount``."""
    cv2 = opencv()
    if cv2 is not None:
        return cv2.calcHist([mask, pixels], [0, 1], None, [count + 1, 256], [0, count + 1, 0, 256])
    key = (mask.astype(np.uint16) << 8) | pixels
    return np.bincount(key.ravel(), minlength=256 * (count + 1)).reshape(-1, 256)[:count + 1]


def measure_in(body: Body, pixels: np.ndarray, mask: np.ndarray | None, rois: Sequence[Roi]) -> Measurements:
    """:func:`measure` against the tissue of ``body``, and an atlas's parcels against the organ they make up."""
    return measure(pixels, mask, rois, body.mask, parent_of(mask, sum(bool(r.pixels) for r in rois), body))


class Measurements(Sequence[RoiStats]):
    """The ROIs' :class:`RoiStats`, each made from the vectorised sums when first read.

    Describers read a few of them (the largest ROIs), so the rest are never built.
    """

    def __init__(self, inside: dict[str, np.ndarray], around: dict[str, np.ndarray], area: np.ndarray) -> None:
        self._inside = {name: values.tolist() for name, values in inside.items()}
        self._around = {name: values.tolist() for name, values in around.items()}
        self._area = area.tolist()

    def __len__(self) -> int:
        return len(self._area)

    @overload
    def __getitem__(self, index: int) -> RoiStats: ...

    @overload
    def __getitem__(self, index: slice) -> list[RoiStats]: ...

    def __getitem__(self, index: int | slice) -> RoiStats | list[RoiStats]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        return _stats(index, self._inside, self._around, self._area[index])


def _reference(i: int, around: dict[str, list[float]], ring: float) -> str | None:
    if "parent" in around and around["parent"][i]:
        return "parent"
    if ring <= 0 or ("meaningful" in around and not around["meaningful"][i]):
        return None
    return "surroundings"


def _stats(i: int, inside: dict[str, list[float]], around: dict[str, list[float]], area: float) -> RoiStats:
    count = inside["n"][i]
    ring = around["n"][i] if "n" in around else area - count
    mean_in = inside["lum"][i] / count if count else 0.0
    mean_ring = around["lum"][i] / ring if ring > 0 else mean_in
    variance = max(0.0, inside["sq"][i] / count - mean_in * mean_in) if count else 0.0
    cv = math.sqrt(variance) / mean_in if count and mean_in > 1e-6 else 0.0
    red_in = red_ring = None
    if "red" in inside:
        red_in = inside["red"][i] / count if count else 0.0
        red_ring = around["red"][i] / (area - count) if area > count else 0.0
    return RoiStats(mean_in, mean_ring, cv, red_in, red_ring, _reference(i, around, ring))
