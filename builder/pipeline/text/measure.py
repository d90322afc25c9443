"""Image features measured inside each ROI and in a ring around it.

Intensities are luminance scaled to 0..1 by the pixel type's range. The ring
is the ROI's box grown by half its size on each side (clipped to the image),
less the ROI itself. Contrast is ``mean_in - mean_ring``; heterogeneity is the
coefficient of variation inside the ROI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from builder.imaging import gray
from builder.pipeline.roi import Roi


@dataclass(frozen=True)
class RoiStats:
    mean_in: float
    mean_ring: float
    cv: float
    redness_in: float | None = None  # RGB only: R - (G + B) / 2, scaled 0..1
    redness_ring: float | None = None

    @property
    def contrast(self) -> float:
        return self.mean_in - self.mean_ring


def _luminance(pixels: np.ndarray) -> np.ndarray:
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    return gray(pixels) / np.float32(scale)


def _integral(plane: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: any box sum in four lookups."""
    table = np.zeros((plane.shape[0] + 1, plane.shape[1] + 1), np.float64)
    np.cumsum(np.cumsum(plane, axis=0, dtype=np.float64), axis=1, out=table[1:, 1:])
    return table


def _box(table: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    return float(table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0])


def measure(pixels: np.ndarray, mask: np.ndarray | None, rois: Sequence[Roi]) -> list[RoiStats]:
    """One :class:`RoiStats` per ROI (mask pixels for mask ROIs, the box for others).

    One pass over the image whatever the number of ROIs: per-label sums of the mask
    (``np.bincount``) give each mask ROI's inside, summed-area tables give every box
    and ring window; the ring is the window's sum less the inside's.
    """
    if not rois:
        return []
    lum = _luminance(pixels).astype(np.float64)
    planes = {"lum": lum, "sq": lum * lum}
    if pixels.ndim == 3:
        rgb = pixels[..., :3].astype(np.float64) / 255.0
        planes["red"] = rgb[..., 0] - (rgb[..., 1] + rgb[..., 2]) / 2
    tables = {name: _integral(plane) for name, plane in planes.items()}
    labelled: dict[str, np.ndarray] = {}
    if mask is not None and any(roi.pixels for roi in rois):
        flat = mask.ravel().astype(np.intp)
        size = len(rois) + 1
        labelled = {name: np.bincount(flat, weights=plane.ravel(), minlength=size) for name, plane in planes.items()}
        labelled["n"] = np.bincount(flat, minlength=size).astype(np.float64)
    height, width = lum.shape
    return [_stats(roi, index, tables, labelled, width, height) for index, roi in enumerate(rois)]


def _stats(roi: Roi, index: int, tables: dict[str, np.ndarray], labelled: dict[str, np.ndarray], width: int,
           height: int) -> RoiStats:
    x0, y0, x1, y1 = (round(v) for v in roi.bbox)
    gx, gy = max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2)
    window = (max(0, x0 - gx), max(0, y0 - gy), min(width, x1 + gx), min(height, y1 + gy))
    area = float((window[2] - window[0]) * (window[3] - window[1]))
    if roi.pixels and labelled:
        inside = {name: float(values[index + 1]) for name, values in labelled.items()}
    else:
        box = (max(0, x0), max(0, y0), min(width, x1), min(height, y1))
        inside = {name: _box(table, *box) for name, table in tables.items()}
        inside["n"] = float(max(0, box[2] - box[0]) * max(0, box[3] - box[1]))
    around = {name: _box(table, *window) - inside[name] for name, table in tables.items()}
    count, ring = inside["n"], area - inside["n"]
    mean_in = inside["lum"] / count if count else 0.0
    mean_ring = around["lum"] / ring if ring > 0 else mean_in
    variance = max(0.0, inside["sq"] / count - mean_in * mean_in) if count else 0.0
    cv = float(np.sqrt(variance) / mean_in) if count and mean_in > 1e-6 else 0.0
    red_in = red_ring = None
    if "red" in tables:
        red_in = inside["red"] / count if count else 0.0
        red_ring = around["red"] / ring if ring > 0 else 0.0
    return RoiStats(float(mean_in), float(mean_ring), cv, red_in, red_ring)
