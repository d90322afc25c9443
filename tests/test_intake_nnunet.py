"""``format: nnunet``: nnU-Net v2 raw datasets and Medical Segmentation Decathlon tasks as published.

Real files of ``../shared/data/intake-dev`` (its README gives the numbers checked here) and a replica written by the
test from nnU-Net's documented layout; expected boxes are computed with nibabel and numpy in the test.
"""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from conftest import SHARED, build, need, rejects, run_cli, shard_rows, write_manifest
from PIL import Image

INTAKE = SHARED / "intake-dev"
V2 = INTAKE / "nnunet-v2" / "Dataset502_BraTS18"
MSD = INTAKE / "msd" / "Task01_BrainTumour"



def displayed_boxes(label_file: Path) -> dict[int, list[float]]:
    """Per axial slice, the pixel-edge box of the label's voxels, displayed as the README's conventions say."""
    labels = np.asanyarray(nib.as_closest_canonical(nib.load(label_file)).dataobj) > 0.5
    boxes = {}
    for k in range(labels.shape[2]):
        shown = labels[::-1, ::-1, k].T
        if shown.any():
            ys, xs = np.nonzero(shown)
            boxes[k] = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return boxes


def by_slice(rows: list[dict[str, Any]]) -> dict[int, dict[str, list[float]]]:
    return {r["slice_index"]: {roi["label"]: roi["bbox"] for roi in r["rois"]} for r in rows}


def test_an_nnunet_v2_dataset_gives_its_labelled_slices_and_its_test_cases(tmp_path: Path) -> None:
    root = need(V2)
    summary = build(write_manifest(tmp_path, {"name": "brats", "format": "nnunet", "root": str(root)}),
                    tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    train = [r for r in rows if r["rois"]]
    expected = displayed_boxes(root / "labelsTr" / "Brats18_TCIA08_105_1.nii.gz")
    assert by_slice(train) == {k: {"whole_tumor": box} for k, box in expected.items()}
    assert sorted(expected)[0] == 36 and sorted(expected)[-1] == 120 and len(train) == 85
    assert expected[78] == [65.0, 137.0, 139.0, 205.0]  # the README's [65, 137, 138, 204], max inclusive
    assert summary["rows"]["by_split"] == {"train": 85, "test": 155} and {r["modality"] for r in rows} == {"mri"}
    assert summary["skipped"] == {"another channel (channel:)": 2, "dataset description (dataset.json)": 1}
    assert not rejects(tmp_path / "out")
    # the stored image is channel 0000 (FLAIR): its slice through a monotone window
    flair = np.asanyarray(nib.as_closest_canonical(nib.load(root / "imagesTr" /
                                                            "Brats18_TCIA08_105_1_0000.nii.gz")).dataobj)
    row = next(r for r in train if r["slice_index"] == 78)
    stored = np.asarray(Image.open(BytesIO(row["image"]["bytes"]))).astype(float)
    assert np.corrcoef(stored.ravel(), flair[::-1, ::-1, 78].T.ravel().astype(float))[0, 1] > 0.98


def test_channel_by_name_every_channel_and_no_test_cases(tmp_path: Path) -> None:
    root = need(V2)
    t1 = build(write_manifest(tmp_path / "a", {"name": "b", "format": "nnunet", "root": str(root), "channel": "T1",
                                               "include_test": False}), tmp_path / "t1")
    assert t1["rows"]["by_split"] == {"train": 85} and t1["skipped"]["test case (include_test: false)"] == 2
    every = build(write_manifest(tmp_path / "b", {"name": "b", "format": "nnunet", "root": str(root),
                                                  "channels": "all"}), tmp_path / "all")
    assert every["rows"]["by_split"] == {"train": 170, "test": 310} and "another channel (channel:)" not in \
        every["skipped"]
    result = run_cli("build", write_manifest(tmp_path / "c", {"name": "b", "format": "nnunet", "root": str(root),
                                                              "channel": "T2"}), "--out", tmp_path / "bad", ok=False)
    assert result.exit_code != 0 and "'T2' is not a channel" in result.output and "FLAIR" in result.output


def test_an_msd_task_reads_its_4d_images_by_channel_and_counts_appledouble_files(tmp_path: Path) -> None:
    root = need(MSD)
    summary = build(write_manifest(tmp_path, {"name": "msd", "format": "nnunet", "root": str(root)}),
                    tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    expected = displayed_boxes(root / "labelsTr" / "BRATS_002.nii.gz")
    assert by_slice(rows) == {k: {"whole tumour": box} for k, box in expected.items()}
    assert len(rows) == 83 and min(expected) == 30 and max(expected) == 112
    assert expected[71] == [52.0, 80.0, 137.0, 187.0]
    assert summary["skipped"] == {"AppleDouble metadata (._*)": 2, "dataset description (dataset.json)": 1}
    image = np.asanyarray(nib.as_closest_canonical(nib.load(root / "imagesTr" / "BRATS_002.nii.gz")).dataobj)
    row = next(r for r in rows if r["slice_index"] == 71)
    stored = np.asarray(Image.open(BytesIO(row["image"]["bytes"]))).astype(float)
    channel0 = image[::-1, ::-1, 71, 0].T.astype(float)  # FLAIR, the first channel of the last axis
    assert np.corrcoef(stored.ravel(), channel0.ravel())[0, 1] > 0.98


def _save(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def test_a_replica_with_the_layouts_traps_accounts_for_every_file(tmp_path: Path) -> None:
    """A case id ending in _1, a label stored as float, a region-based label, a label without its image, an image
    whose name is not CASE_XXXX, a case missing its chosen channel, a README beside dataset.json."""
    root = tmp_path / "Dataset900_Toy"
    image = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    label = np.zeros((6, 5, 4), np.float32)
    label[1:3, 2:4, 2] = 1.0
    label[4, 0, 3] = 2.0
    _save(root / "imagesTr" / "case_1_0000.nii.gz", image)
    _save(root / "labelsTr" / "case_1.nii.gz", label)
    _save(root / "labelsTr" / "orphan.nii.gz", label)
    _save(root / "imagesTr" / "badname.nii.gz", image)
    _save(root / "imagesTr" / "other_0001.nii.gz", image)
    (root / "README.md").write_text("notes")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT", "1": "PET"}, "file_ending": ".nii.gz", "numTraining": 2,
        "labels": {"background": 0, "organ": 1, "lesion": 2, "organ_or_lesion": [1, 2]}}))
    summary = build(write_manifest(tmp_path, {"name": "toy", "format": "nnunet", "root": str(root)}),
                    tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    assert {r["modality"] for r in rows} == {"ct"}
    slices = by_slice(rows)
    # independent: RAS+ identity affine, displayed as label[::-1, ::-1, k].T (6 wide, 5 high)
    assert slices == {2: {"organ": [6 - 3.0, 5 - 4.0, 6 - 1.0, 5 - 2.0]}, 3: {"lesion": [1.0, 4.0, 2.0, 5.0]}}
    reasons = {Path(line["file"]).name: line["reason"] for line in rejects(tmp_path / "out")}
    assert "pairs with no image" in reasons["orphan.nii.gz"]
    assert "not named CASE_XXXX" in reasons["badname.nii.gz"]
    assert "has no channel 0000" in reasons["other"]
    assert summary["skipped"] == {"another channel (channel:)": 1, "dataset description (dataset.json)": 1,
                                  "side file (not read by the format)": 1}


def test_a_2d_nnunet_dataset_of_pngs_gives_one_row_per_case(tmp_path: Path) -> None:
    """nnU-Net's 2D datasets (file_ending .png): each case one image, its label map beside it."""
    root = tmp_path / "Dataset901_Skin2D"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case in ("isic_1", "isic_2"):
        Image.fromarray(np.full((20, 30, 3), 140, np.uint8)).save(root / "imagesTr" / f"{case}_0000.png")
        label = np.zeros((20, 30), np.uint8)
        label[4:9, 6:16] = 1
        Image.fromarray(label).save(root / "labelsTr" / f"{case}.png")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                   "labels": {"background": 0, "lesion": 1}, "numTraining": 2,
                                                   "file_ending": ".png"}))
    summary = build(write_manifest(tmp_path, {"name": "skin", "format": "nnunet", "root": str(root),
                                              "modality": "dermoscopy"}), tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    assert summary["rows"]["total"] == 2 and not rejects(tmp_path / "out")
    assert all([(r["label"], r["bbox"]) for r in row["rois"]] == [("lesion", [6.0, 4.0, 16.0, 9.0])] for row in rows)
