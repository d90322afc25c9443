"""Inputs that would take gigabytes: each ends as rows or a reject line, and the build goes on."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from bombs import deflated_bomb, nifti_bomb
from conftest import build, dicom_file, rejects, shard_rows, write_manifest
from PIL import Image


def _neighbour(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.arange(16 * 16 * 4, dtype=np.int16).reshape(16, 16, 4), np.eye(4)),
             folder / "small.nii.gz")


def test_a_huge_scaled_volume_is_sliced_in_its_stored_type(tmp_path: Path) -> None:
    _neighbour(tmp_path / "vol")
    nifti_bomb(tmp_path / "vol" / "bomb.nii.gz")
    assert (tmp_path / "vol" / "bomb.nii.gz").stat().st_size < 2 * 2**20
    manifest = write_manifest(tmp_path, {"name": "v", "format": "nifti", "images": "vol/*.nii.gz",
                                         "modality": "mri", "slicing": {"step": 120}})
    summary = build(manifest, tmp_path / "out", "--max-memory", "3")
    assert summary["files"] == {"seen": 2, "accepted": 2, "rejected": 0, "skipped": 0}
    assert summary["rows"]["total"] == 4 + 1  # slices 0, 120, 240, 360 of the bomb, slice 0 of the neighbour
    tight = build(manifest, tmp_path / "tight", "--max-memory", "0.5")  # 1 GiB of voxels cannot fit in 0.5
    assert tight["files"] == {"seen": 2, "accepted": 1, "rejected": 1, "skipped": 0}
    (line,) = rejects(tmp_path / "tight")
    assert line["file"] == "vol/bomb.nii.gz" and "memory" in line["reason"]


def test_a_deflated_dicom_that_inflates_a_huge_element_is_rejected_before_inflating(tmp_path: Path) -> None:
    folder = tmp_path / "dcm"
    folder.mkdir()
    deflated_bomb(folder / "bomb.dcm")
    (folder / "fine.dcm").write_bytes(dicom_file("CT_small.dcm").read_bytes())
    assert (folder / "bomb.dcm").stat().st_size < 2 * 2**20
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "d", "format": "dicom", "images": "dcm/*.dcm"}), out)
    assert summary["files"] == {"seen": 2, "accepted": 1, "rejected": 1, "skipped": 0}
    (line,) = rejects(out)
    assert line["file"] == "dcm/bomb.dcm" and "inflates past the limit" in line["reason"]


@pytest.mark.parametrize("slope", ["NaN", "1e308", "0"])
def test_a_meaningless_rescale_is_a_reject_not_a_constant_image(tmp_path: Path, slope: str) -> None:
    folder = tmp_path / "dcm"
    folder.mkdir()
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.RescaleSlope = slope
    ds.save_as(folder / "bad.dcm")
    (folder / "fine.dcm").write_bytes(dicom_file("CT_small.dcm").read_bytes())
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "d", "format": "dicom", "images": "dcm/*.dcm"}), out)
    assert summary["files"]["accepted"] == 1
    (line,) = rejects(out)
    assert line["file"] == "dcm/bad.dcm" and "rescale" in line["reason"]


def test_label_maps_beyond_a_16_bit_mask_are_rejected_and_huge_values_cost_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "vol"
    folder.mkdir()
    image = np.arange(300 * 300 * 2, dtype=np.int16).reshape(300, 300, 2)
    many = np.arange(1, 300 * 300 * 2 + 1, dtype=np.int32).reshape(300, 300, 2)  # 90,000 labels per slice
    huge = np.zeros((300, 300, 2), np.int64)
    huge[10:20, 10:20, :] = 2**40  # a value far beyond any lookup table
    for name, labels in (("many", many), ("huge", huge)):
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(labels, np.eye(4), dtype=labels.dtype), folder / f"{name}_seg.nii.gz")
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "v", "format": "nifti", "images": "vol/[hm]???.nii.gz",
                                              "masks": "vol/*_seg.nii.gz", "modality": "ct"}), out)
    (line,) = rejects(out)
    assert line["file"] == "vol/many.nii.gz" and "65535" in line["reason"]
    assert summary["rows"]["total"] == 2
    masks = [np.asarray(Image.open(io.BytesIO(r["mask"]["bytes"]))) for r in shard_rows(out, "ct")]
    assert all(set(np.unique(m)) == {0, 1} and (m == 1).sum() == 100 for m in masks)
