"""PNG encoders (builder.pngcodec): every installed one writes the same pixels, decoded by Pillow and datasets."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import COLIN, MEDPIX, build, need, shard_rows, write_manifest
from PIL import Image

from builder.pngcodec import ENCODERS, choose, encode


def _images() -> dict[str, np.ndarray]:
    import nibabel as nib

    ct = np.asarray(Image.open(sorted((need(MEDPIX / "test") / "images").glob("*.png"))[0]))
    labels = np.asarray(nib.load(need(COLIN / "aal.nii.gz")).dataobj)[:, :, 80].astype(np.uint16)  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    return {"8-bit grey": ct if ct.ndim == 2 else ct[..., 0], "RGB": np.ascontiguousarray(np.stack(
        [ct if ct.ndim == 2 else ct[..., 0]] * 3, -1)[:, ::-1]), "16-bit labels": labels,
        "16-bit noise": rng.integers(0, 65535, (64, 80), dtype=np.uint16)}


@pytest.mark.parametrize("name", list(ENCODERS))
def test_each_encoder_is_lossless(name: str) -> None:
    if not ENCODERS[name].available():
        pytest.skip(f"{ENCODERS[name].module} is not installed")
    for kind, pixels in _images().items():
        decoded = np.asarray(Image.open(io.BytesIO(encode(pixels, 1, name))))
        assert decoded.dtype == pixels.dtype and np.array_equal(decoded, pixels), (name, kind)


def test_auto_falls_back_to_pillow() -> None:
    assert choose("auto") in ENCODERS and choose("pillow") == "pillow"
    with pytest.raises(ValueError, match=r"not installed|choices"):
        choose("no-such-encoder")


def test_a_build_with_another_encoder_stores_the_same_pixels(tmp_path: Path) -> None:
    fast = next((name for name in ("opencv", "imagecodecs") if ENCODERS[name].available()), None)
    if fast is None:
        pytest.skip("neither OpenCV nor imagecodecs is installed")
    source = {"name": "colin", "format": "nifti", "modality": "mri", "images": str(need(COLIN / "ch2.nii.gz")),
              "masks": str(COLIN / "aal.nii.gz"), "slicing": {"plane": "axial", "step": 20, "only_with_roi": True}}
    manifest = write_manifest(tmp_path, source)
    plain, other = tmp_path / "pillow", tmp_path / fast
    assert build(manifest, plain, "--png-encoder", "pillow")["options"]["png_encoder"] == "pillow"
    assert build(manifest, other, "--png-encoder", fast)["options"]["png_encoder"] == fast
    a = shard_rows(plain, columns=["id", "image", "mask"])
    b = {r["id"]: r for r in shard_rows(other, columns=["id", "image", "mask"])}
    assert a and len(a) == len(b)
    for row in a:
        for column in ("image", "mask"):
            mine, theirs = row[column]["bytes"], b[row["id"]][column]["bytes"]
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(mine))), np.asarray(Image.open(io.BytesIO(theirs))))
