"""Bad input becomes one reject line naming the file and the reason; the rest builds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from conftest import build, dicom_file, published_rejects, real_files, rejects, write_manifest
from datasets import load_dataset
from PIL import Image


def _volume(path: Path, data: np.ndarray, zoom: float = 1.0) -> None:
    nib.save(nib.Nifti1Image(data, np.diag([zoom, zoom, zoom, 1.0])), path)


def test_broken_inputs_are_rejected_by_name_and_counts_reconcile(tmp_path: Path) -> None:
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    good = dicom_file("CT_small.dcm")
    shutil.copy(good, dicom / "good.dcm")
    data = good.read_bytes()
    (dicom / "truncated.dcm").write_bytes(data[: len(data) // 2])

    vols = tmp_path / "vols"
    vols.mkdir()
    rng = np.random.default_rng(0)
    labels = np.zeros((32, 32, 8), dtype=np.uint8)
    labels[10:20, 12:18, 2:6] = 1
    _volume(vols / "ok.nii.gz", rng.normal(size=(32, 32, 8)).astype(np.float32))
    _volume(vols / "ok_seg.nii.gz", labels)
    _volume(vols / "shifted.nii.gz", rng.normal(size=(32, 32, 8)).astype(np.float32))
    _volume(vols / "shifted_seg.nii.gz", labels[:, :, :6])  # another grid

    pngs = tmp_path / "pngs"
    pngs.mkdir()
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(pngs / "fine.png")
    (pngs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")

    manifest = write_manifest(
        tmp_path,
        {"name": "dicoms", "format": "dicom", "images": "dicom/*.dcm"},
        {"name": "volumes", "format": "nifti", "images": "vols/*[!g].nii.gz", "masks": "vols/*_seg.nii.gz",
         "labels": {1: "lesion"}, "modality": "mri", "slicing": {"only_with_roi": True}},
        {"name": "pictures", "format": "image", "images": "pngs/*.png", "modality": "dermoscopy"},
    )
    out = tmp_path / "out"
    summary = build(manifest, out)

    lines = {line["file"]: line for line in rejects(out)}
    assert set(lines) == {"dicom/truncated.dcm", "vols/shifted.nii.gz", "pngs/broken.png"}
    assert lines["dicom/truncated.dcm"]["stage"] == "read"
    assert "grid" in lines["vols/shifted.nii.gz"]["reason"]
    assert lines["vols/shifted.nii.gz"]["stage"] == "mask"
    assert "not a readable image" in lines["pngs/broken.png"]["reason"]

    files = summary["files"]
    assert files == {"seen": 6, "accepted": 3, "rejected": 3, "skipped": 0}
    assert files["seen"] == files["accepted"] + files["rejected"]
    assert summary["rows"]["by_modality"] == {"ct": 1, "mri": 4, "dermoscopy": 1}
    assert len(load_dataset(str(out), "mri", split="train")) == 4


def test_side_table_problems_are_logged_not_dropped(tmp_path: Path) -> None:
    images = tmp_path / "img"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((20, 30), 100, dtype=np.uint8)).save(images / f"{name}.png")
    (tmp_path / "boxes.csv").write_text(
        "image,x_min,y_min,x_max,y_max,label\n"
        "a.png,2,3,12,13,nodule\n"
        "b.png,5,5,oops,9,nodule\n"
        "ghost.png,1,1,4,4,nodule\n"
    )
    manifest = write_manifest(tmp_path, {"name": "xr", "format": "image", "images": "img/?.png",
                                         "boxes": "boxes.csv", "modality": "xray", "organ": "chest"})
    out = tmp_path / "out"
    summary = build(manifest, out)
    lines = rejects(out)
    reasons = [line["reason"] for line in lines]
    assert any("needs numbers in x_min" in r for r in reasons)
    # the row naming no image: the local log names its key, the published one only the table and the line
    assert any("ghost" in line["file"] and "not among the source's images (lines 4)" in line["reason"]
               for line in lines)
    assert not any("ghost" in json.dumps(line) for line in published_rejects(out))
    # b.png's only box row is unusable: b.png is a reject, never a row that claims it has no ROI
    assert summary["files"] == {"seen": 2, "accepted": 1, "rejected": 1, "skipped": 0}
    assert [line["file"] for line in lines if line["stage"] == "listing"] == ["img/b.png"]
    files = real_files(out)
    rows = {files[r["id"]]: r for r in load_dataset(str(out), "xray", split="train")}
    assert set(rows) == {"img/a.png"}
    assert rows["img/a.png"]["rois"][0]["bbox"] == [2, 3, 12, 13]
    assert rows["img/a.png"]["rois"][0]["area_ratio"] == np.float32(100 / 600)
    assert "nodule" in rows["img/a.png"]["coarse_caption"]
