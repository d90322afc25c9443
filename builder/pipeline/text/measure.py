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


def _redness(pixels: np.ndarray, where: np.ndarray) -> float:
    rgb = pixels[where].astype(np.float32) / 255.0
    return float(np.mean(rgb[:, 0] - (rgb[:, 1] + rgb[:, 2]) / 2)) if rgb.size else 0.0


def measure(pixels: np.ndarray, mask: np.ndarray | None, rois: Sequence[Roi]) -> list[RoiStats]:
    """One :class:`RoiStats` per ROI (mask pixels for mask ROIs, the box for others)."""
    lum = _luminance(pixels)
    height, width = lum.shape
    stats = []
    for index, roi in enumerate(rois):
        x0, y0, x1, y1 = (round(v) for v in roi.bbox)
        gx, gy = max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2)
        wx0, wy0, wx1, wy1 = max(0, x0 - gx), max(0, y0 - gy), min(width, x1 + gx), min(height, y1 + gy)
        window = lum[wy0:wy1, wx0:wx1]
        if roi.pixels and mask is not None:
            inside = mask[wy0:wy1, wx0:wx1] == index + 1
        else:
            inside = np.zeros(window.shape, dtype=bool)
            inside[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0] = True
        values, ring = window[inside], window[~inside]
        mean_in = float(values.mean()) if values.size else 0.0
        mean_ring = float(ring.mean()) if ring.size else mean_in
        cv = float(values.std() / mean_in) if values.size and mean_in > 1e-6 else 0.0
        red_in = red_ring = None
        if pixels.ndim == 3:
            crop = pixels[wy0:wy1, wx0:wx1]
            red_in, red_ring = _redness(crop, inside), _redness(crop, ~inside)
        stats.append(RoiStats(mean_in, mean_ring, cv, red_in, red_ring))
    return stats
