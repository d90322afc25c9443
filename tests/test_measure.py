"""ROI measurements against per-ROI numpy computed here, and the fast summed-area table against numpy's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import COLIN, need

from builder.pipeline.roi import rois_from_labelmap
from builder.pipeline.text import measure as measuring


def _colin_slices(step: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    nib = pytest.importorskip("nibabel")
    t1 = np.asanyarray(nib.load(need(COLIN / "ch2.nii.gz")).dataobj)
    aal = np.asanyarray(nib.load(COLIN / "aal.nii.gz").dataobj).astype(np.int32)
    low, high = np.percentile(t1, (0.5, 99.5))
    out = []
    for z in range(0, t1.shape[2], step):
        if aal[:, :, z].any():
            pixels = np.clip((t1[:, :, z] - low) / (high - low) * 255, 0, 255).astype(np.uint8)
            out.append((np.ascontiguousarray(pixels), np.ascontiguousarray(aal[:, :, z])))
    return out


@pytest.mark.parametrize("depth,opencv", [(8, True), (8, False), (16, True)])
def test_atlas_measurements_match_each_roi_measured_alone(depth: int, opencv: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """8-bit: one (label, value) histogram, by OpenCV or by numpy; 16-bit: weighted bincounts."""
    if not opencv:
        monkeypatch.setattr(measuring, "opencv", lambda: None)
    for pixels, labels in _colin_slices():
        rois, mask = rois_from_labelmap(labels, {}, "region")
        if depth == 16:
            pixels = pixels.astype(np.uint16) * 257
        lum = pixels.astype(np.float64) / (255.0 if depth == 8 else 65535.0)
        measured = measuring.measure(pixels, mask, rois)
        assert len(measured) == len(rois) and measured[-1] == measured[len(rois) - 1]
        for index, (roi, stats) in enumerate(zip(rois, measured), start=1):
            inside = lum[mask == index]
            x0, y0, x1, y1 = (round(v) for v in roi.bbox)
            gx, gy = max(1, (x1 - x0) // 2), max(1, (y1 - y0) // 2)
            window = np.zeros(mask.shape, bool)
            window[max(0, y0 - gy):y1 + gy, max(0, x0 - gx):x1 + gx] = True
            ring = lum[window & (mask != index)]
            assert stats.mean_in == pytest.approx(inside.mean(), abs=1e-6)
            assert stats.mean_ring == pytest.approx(ring.mean() if ring.size else inside.mean(), abs=1e-6)
            assert stats.cv == pytest.approx(inside.std() / inside.mean() if inside.mean() > 1e-6 else 0, abs=1e-5)


def test_fast_summed_area_table_is_numpys_bit_for_bit_on_8_bit_luminance() -> None:
    pytest.importorskip("cv2", reason="OpenCV is not installed (the [fast] extra)")
    rng = np.random.default_rng(0)
    images = [pixels for pixels, _ in _colin_slices(step=30)] + [rng.integers(0, 256, (1024, 768), np.uint8)]
    for pixels in images:
        assert measuring._exact_sums(pixels)
        lum = measuring._luminance(pixels).astype(np.float64)
        reference = np.zeros((lum.shape[0] + 1, lum.shape[1] + 1))
        reference[1:, 1:] = lum.cumsum(axis=0).cumsum(axis=1)
        assert np.array_equal(measuring._integral(lum, exact=True), reference)
    assert not measuring._exact_sums(np.zeros((8, 8), np.uint16))  # finer values: numpy's own order is kept
