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
        data = encode(pixels, 1, name)
        Image.open(io.BytesIO(data)).verify()  # every chunk's CRC
        decoded = np.asarray(Image.open(io.BytesIO(data)))
        assert decoded.dtype == pixels.dtype and np.array_equal(decoded, pixels), (name, kind)


def test_the_isal_writer_makes_pngs_libpng_reads_for_every_layout_it_takes() -> None:
    pytest.importorskip("isal", reason="ISA-L is not installed (the [fast] extra)")
    cv2 = pytest.importorskip("cv2", reason="OpenCV (libpng) is not installed (the [fast] extra)")
    rng = np.random.default_rng(1)
    layouts = {"grey": (33, 17), "grey+alpha": (9, 31, 2), "RGB": (20, 11, 3), "RGBA": (7, 5, 4), "one row": (1, 40)}
    for kind, shape in layouts.items():
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        data = encode(pixels, 1, "isal")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels), kind
        if kind == "grey+alpha":
            continue  # OpenCV reads grey + alpha as four channels
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # libpng, strict about chunks
        if pixels.ndim == 3:
            decoded = np.concatenate([decoded[..., 2::-1], decoded[..., 3:]], axis=-1)  # OpenCV reads BGR(A)
        assert np.array_equal(decoded.reshape(pixels.shape), pixels), kind
    wide = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    assert np.array_equal(cv2.imdecode(np.frombuffer(encode(wide, 6, "isal"), np.uint8), cv2.IMREAD_UNCHANGED), wide)
    odd = rng.random((4, 4)).astype(np.float32)  # a layout PNG has no type for: Pillow's answer, as before
    with pytest.raises((TypeError, OSError, KeyError, ValueError)):
        encode(odd, 1, "pillow")
    with pytest.raises((TypeError, OSError, KeyError, ValueError)):
        encode(odd, 1, "isal")


def test_auto_falls_back_to_pillow() -> None:
    assert choose("auto") in ENCODERS and choose("pillow") == "pillow"
    with pytest.raises(ValueError, match=r"not installed|choices"):
        choose("no-such-encoder")


def test_a_build_with_another_encoder_stores_the_same_pixels(tmp_path: Path) -> None:
    fast = next((name for name in ("isal", "opencv", "imagecodecs") if ENCODERS[name].available()), None)
    if fast is None:
        pytest.skip("none of ISA-L, OpenCV and imagecodecs is installed")
    source = {"name": "colin", "format": "nifti", "modality": "mri", "images": str(need(COLIN / "ch2.nii.gz")),
              "masks": str(COLIN / "aal.nii.gz"), "slicing": {"plane": "axial", "step": 20, "only_with_roi": True}}
    manifest = write_manifest(tmp_path, source)
    plain, other = tmp_path / "pillow", tmp_path / fast
    assert build(manifest, plain, "--png-encoder", "pillow")["options"]["triplets.png_encoder"] == "pillow"
    assert build(manifest, other, "--png-encoder", fast)["options"]["triplets.png_encoder"] == fast
    a = shard_rows(plain, columns=["id", "image", "mask"])
    b = {r["id"]: r for r in shard_rows(other, columns=["id", "image", "mask"])}
    assert a and len(a) == len(b)
    for row in a:
        for column in ("image", "mask"):
            mine, theirs = row[column]["bytes"], b[row["id"]][column]["bytes"]
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(mine))), np.asarray(Image.open(io.BytesIO(theirs))))
