"""Colin27 T1 MRI with the AAL atlas: a real volume with a real label map."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import COLIN, build, need, write_manifest
from datasets import load_dataset

from builder.anatomy import plain_label

PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}


@pytest.fixture(scope="module")
def colin_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    need(COLIN)
    folder = tmp_path_factory.mktemp("colin")
    sources = [
        {"name": f"colin27-{plane}", "format": "nifti", "images": str(COLIN / "ch2.nii.gz"),
         "masks": str(COLIN / "aal.nii.gz"), "labels_file": str(COLIN / "aal.nii.txt"),
         "modality": "mri", "organ": "brain", "license": "BSD-3-Clause",
         "slicing": {"plane": plane, "step": 12 if plane == "axial" else 40}}
        for plane in PLANES
    ]
    out = folder / "out"
    return out, build(write_manifest(folder, *sources), out)


def aal_names() -> dict[str, int]:
    names = {}
    for line in (COLIN / "aal.nii.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names[parts[1]] = int(parts[0])
    return names


def reference_slice(plane: str, index: int) -> np.ndarray:
    atlas = np.asanyarray(nib.as_closest_canonical(nib.load(COLIN / "aal.nii.gz")).dataobj)
    return np.take(atlas, index, axis=PLANES[plane])


def test_roi_pixel_counts_and_boxes_match_the_atlas(colin_build: tuple[Path, dict]) -> None:
    out, summary = colin_build
    ds = load_dataset(str(out), "mri", split="train")
    assert len(ds) == summary["rows"]["total"] == 16 + 6 + 5  # 181 axial /12, 217 coronal /40, 181 sagittal /40
    values = aal_names()
    checked = 0
    for row in ds:
        reference = reference_slice(row["plane"], row["slice_index"])
        expected = {int(v): int(n) for v, n in zip(*np.unique(reference[reference > 0], return_counts=True))}
        mask = np.asarray(row["mask"]) if row["mask"] is not None else np.zeros((row["height"], row["width"]))
        assert len(row["rois"]) == len(expected)
        for i, roi in enumerate(row["rois"]):
            assert roi["label"] in values, "labels carry AAL names"
            ys, xs = np.nonzero(mask == i + 1)
            assert len(ys) == expected[values[roi["label"]]], roi["label"]
            assert roi["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert roi["area_ratio"] == pytest.approx(len(ys) / mask.size, rel=1e-6)
            assert roi["origin"] == "annotation"
            checked += 1
    assert checked > 500


def test_axial_slices_follow_the_radiological_convention(colin_build: tuple[Path, dict]) -> None:
    out, _ = colin_build
    ds = load_dataset(str(out), "mri", split="train").filter(lambda r: r["plane"] == "axial")
    left_on_image_right = right_on_image_left = total = 0
    for row in ds:
        for roi in row["rois"]:
            cx = (roi["bbox"][0] + roi["bbox"][2]) / 2 / row["width"]
            if roi["label"].endswith("_L"):
                left_on_image_right += cx > 0.5
                total += 1
            elif roi["label"].endswith("_R"):
                right_on_image_left += cx < 0.5
                total += 1
    assert total > 100
    assert (left_on_image_right + right_on_image_left) / total > 0.95
    text = " ".join(ds["caption"])
    assert "the patient's left" in text and "the patient's right" in text


def test_coarse_caption_names_plane_slice_and_regions(colin_build: tuple[Path, dict]) -> None:
    out, _ = colin_build
    row = next(r for r in load_dataset(str(out), "mri", split="train") if r["plane"] == "axial" and r["rois"])
    assert row["coarse_caption"].startswith(f"MRI of the brain, axial slice {row['slice_index']}; regions: ")
    assert plain_label(row["rois"][0]["label"]) in row["coarse_caption"]


@pytest.mark.parametrize("name", ["ch2.nii.gz", "aal.nii.gz"])
def test_a_gzipped_volume_reads_the_same_with_or_without_isal(name: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """ISA-L (the fast extra) inflates the voxels; nibabel's own canonical reorientation of its own read is the
    reference, and a cut-off file is a reject on either path."""
    need(COLIN)
    from builder.errors import Reject
    from builder.pipeline.readers import nifti

    reference = np.asanyarray(nib.as_closest_canonical(nib.load(COLIN / name)).dataobj)
    cut = tmp_path / name
    cut.write_bytes((COLIN / name).read_bytes()[:-5000])
    fast = nifti._fast_gunzip()
    for gunzip in ([fast] if fast else []) + [None]:
        monkeypatch.setattr(nifti, "_fast_gunzip", lambda gunzip=gunzip: gunzip)
        volume, _ = nifti.NiftiReader().read(COLIN / name)
        assert volume.dtype == reference.dtype and np.array_equal(volume, reference)
        with pytest.raises(Reject, match="not a readable NIfTI volume"):
            nifti.NiftiReader().read(cut)


def test_nibabel_loaded_without_pydicom_reads_a_volume_with_a_dicom_extension(tmp_path: Path) -> None:
    """A build reading NIfTI loads nibabel without pydicom (:func:`builder.imaging.nibabel`): a volume carrying a
    DICOM header extension still reads as nibabel with pydicom reads it, and pydicom still imports afterwards."""
    import subprocess
    import sys

    need(COLIN)
    image = nib.load(COLIN / "aal.nii.gz")
    image.header.extensions.append(nib.nifti1.Nifti1Extension(2, b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100"))
    path = tmp_path / "with_dicom_extension.nii.gz"
    nib.save(image, path)
    probe = ("import sys, numpy as np\nfrom builder.imaging import nibabel\nnibabel()\n"
             "from builder.pipeline.readers.nifti import NiftiReader\n"
             "np.save(sys.argv[2], NiftiReader().read(sys.argv[1])[0])\nprint('pydicom' in sys.modules)\n"
             "import pydicom\nprint(pydicom.Dataset.__name__)")
    done = subprocess.run([sys.executable, "-c", probe, str(path), str(tmp_path / "voxels.npy")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "Dataset"]
    reference = np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj)
    assert np.array_equal(np.load(tmp_path / "voxels.npy"), reference)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
@pytest.mark.parametrize("scale", [(1.0, 0.0), (0.37, -1024.0)])
def test_windowing_by_lookup_table_gives_the_arithmetic_bytes(dtype: type, scale: tuple[float, float]) -> None:
    """A volume's 8/16-bit voxels go through one lookup table: the bytes of the float32 arithmetic, written here."""
    from builder.pipeline.readers.display import windowing

    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    values = rng.integers(info.min, info.max, size=(181, 217), endpoint=True).astype(dtype)
    values.flat[:2] = info.min, info.max
    center, width = float(np.median(values)) * scale[0] + scale[1], float(info.max - info.min) * scale[0] / 3
    expected = values.astype(np.float32) * np.float32(scale[0]) + np.float32(scale[1])
    expected = (expected - np.float32(center - width / 2)) * np.float32(255.0 / width)
    expected = np.clip(expected, 0, 255).astype(np.uint8)
    assert np.array_equal(windowing(np.dtype(dtype), scale, (center, width))(values), expected)
    assert np.array_equal(windowing(np.dtype(dtype), scale, (center, width))(values.T), expected.T)  # a strided view


def test_lookup_is_numpys_take_on_every_path() -> None:
    """OpenCV's LUT where it applies (8-bit table and image), np.take elsewhere: the same values."""
    from builder.imaging import lookup

    rng = np.random.default_rng(3)
    image = rng.integers(0, 40, (217, 181), dtype=np.uint8)
    for table in (rng.integers(0, 256, 40, dtype=np.uint8), rng.integers(0, 256, 256, dtype=np.uint8),
                  rng.integers(0, 256, 300, dtype=np.uint8), np.arange(40, dtype=np.uint16) * 1000):
        for values in (image, image.T, image[:, :, None], image.view(np.int8)):
            if values.dtype == np.int8 and table.size < 256:
                continue  # a negative value indexes from the end: only where the table has them all
            assert np.array_equal(lookup(table, values), np.take(table, values))
