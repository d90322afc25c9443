"""Colin27 T1 MRI with the AAL atlas: a real volume with a real label map."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import COLIN, build, need, write_manifest
from datasets import load_dataset

from builder.pipeline.text.anatomy import plain_label

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
