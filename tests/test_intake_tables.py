"""Side tables as published: RSNA pneumonia (x,y,w,h, one line per box, negatives), NIH ChestX-ray14 (a header cell
spanning four columns, findings joined by |), CheXpert (relative paths as keys, 1 / 0 / -1 / blank), LUNA16
(world-millimetre centres and diameters), TotalSegmentator's meta.csv (; and a BOM, keyed by subject folder).

Real files of ``../shared/data/intake-dev``; the expectations are the README's, or computed in the test with the
csv module and the affine written out here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED, build, need, rejects, shard_rows, write_manifest

INTAKE = SHARED / "intake-dev"
FINDINGS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
            "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
            "Fracture", "Support Devices"]



def by_file(out: Path) -> dict[str, dict[str, Any]]:
    """Rows by the name of their input file (from the local provenance map)."""
    files = {}
    for line in (out / ".private" / "provenance.jsonl").read_text().splitlines():
        entry = json.loads(line)
        files.update({row_id: entry["file"] for row_id in entry["ids"]})
    return {files[row["id"]]: row for row in shard_rows(out)}


def test_rsna_boxes_one_line_each_negatives_and_lines_for_absent_images(tmp_path: Path) -> None:
    root = need(INTAKE / "rsna-pneumonia")
    summary = build(write_manifest(tmp_path, {
        "name": "rsna", "format": "dicom", "modality": "xray", "images": f"{root}/stage_2_train_images/*.dcm",
        "allow_burned_in": True,  # deid flags these DERIVED images; the challenge published them de-identified
        "boxes": {"file": str(root / "stage_2_train_labels.csv"), "key": "patientId", "box": "xywh",
                  "columns": {"x": "x", "y": "y", "w": "width", "h": "height"}, "label": "Lung Opacity"}}),
        tmp_path / "out")
    rows = {Path(name).stem[:8]: row for name, row in by_file(tmp_path / "out").items()}
    expected = {"01cad8d0": [[218, 667, 476, 991], [756, 556, 981, 997]],
                "7bf09d53": [[144, 501, 378, 741], [563, 480, 801, 717]],
                "2cafbcf4": [[298, 266, 415, 350]], "445de2e1": [], "e28ed2f3": []}
    assert {k: sorted(r["bbox"] for r in row["rois"]) for k, row in rows.items()} == \
        {k: sorted([float(v) for v in box] for box in boxes) for k, boxes in expected.items()}
    assert {r["label"] for row in rows.values() for r in row["rois"]} == {"Lung Opacity"}
    assert summary["rows"]["total"] == 5
    (line,) = rejects(tmp_path / "out")  # the lines of two patients whose images are not supplied: one line
    assert "2 image(s) named by the boxes table are not among the source's images" in line["reason"]


def test_nih_boxes_under_a_spanning_header_and_findings_joined_by_a_bar(tmp_path: Path) -> None:
    root = need(INTAKE / "nih-chestxray14")
    summary = build(write_manifest(tmp_path, {
        "name": "nih", "format": "image", "modality": "xray", "images": f"{root}/images/*.png",
        "disease": "{findings}",
        "boxes": {"file": str(root / "BBox_List_2017.csv"), "key": "Image Index", "box": "xywh",
                  "columns": {"label": "Finding Label"}},
        "metadata": {"file": str(root / "Data_Entry_2017_v2020.csv"), "key": "Image Index", "label_sep": "|",
                     "columns": {"label": "Finding Labels"}}}), tmp_path / "out")
    rows = {Path(name).name: row for name, row in by_file(tmp_path / "out").items()}
    # independent: the BBox lines read with the csv module, x, y, w, h the four cells after the label
    with open(root / "BBox_List_2017.csv", newline="") as fh:
        lines = list(csv.reader(fh))[1:]
    for name, row in rows.items():
        want = [(cells[1], [float(cells[2]), float(cells[3]), float(cells[2]) + float(cells[4]),
                            float(cells[3]) + float(cells[5])]) for cells in lines if cells[0] == name]
        got = [(r["label"], r["bbox"]) for r in row["rois"]]
        assert [label for label, _ in got] == [label for label, _ in want]
        assert np.allclose([b for _, b in got] or [[0] * 4], [b for _, b in want] or [[0] * 4], atol=1e-3)
    assert np.allclose(rows["00001369_000.png"]["rois"][0]["bbox"], [337.00, 276.32, 890.72, 663.16], atol=0.01)
    assert rows["00004296_000.png"]["disease"] == "Atelectasis, Fibrosis, Nodule"
    assert rows["00000129_000.png"]["disease"] == "no finding" and not rows["00000129_000.png"]["rois"]
    assert summary["rows"]["total"] == 3
    reasons = sorted(line["reason"] for line in rejects(tmp_path / "out"))
    assert len(reasons) == 2 and reasons[0].startswith("10 image(s) named by the boxes table")
    assert reasons[1].startswith("2 image(s) named by the metadata table")


def test_chexpert_paths_as_keys_and_uncertain_findings_never_positive(tmp_path: Path) -> None:
    root = need(INTAKE / "chexpert")
    build(write_manifest(tmp_path, {
        "name": "chexpert", "format": "image", "modality": "xray", "images": f"{root}/**/*.jpg",
        "disease": "{findings}",
        "metadata": {"file": str(root / "CheXpert-v1.0-small" / "train.csv"), "key": "Path", "match": "path",
                     "findings": FINDINGS}}), tmp_path / "out")
    rows = by_file(tmp_path / "out")
    assert len(rows) == 9 and not rejects(tmp_path / "out")
    with open(root / "CheXpert-v1.0-small" / "train.csv", newline="") as fh:  # independent: csv and the README
        table = {line["Path"]: line for line in csv.DictReader(fh)}
    for name, row in rows.items():
        line = next(v for k, v in table.items() if name.endswith(k))
        positive = [f for f in FINDINGS if line[f] in ("1", "1.0") and f != "No Finding"]
        uncertain = [f for f in FINDINGS if line[f] in ("-1", "-1.0")]
        for finding in positive:
            assert finding in row["disease"].split("; uncertain:")[0]
        for finding in uncertain:
            assert finding in row["disease"].split("; uncertain:")[1]
    study = next(row for name, row in rows.items() if "patient00011/study1/view1" in name)
    assert study["disease"] == ("Lung Opacity, Support Devices; uncertain: Consolidation, Pneumothorax, "
                                "Pleural Effusion")
    twins = [row for name, row in rows.items() if "patient00005/study2" in name]
    assert len(twins) == 2 and {row["disease"] for row in twins} == {"Pneumothorax"}


def test_luna16_world_millimetre_nodules_become_boxes_on_the_slices_they_cross(tmp_path: Path) -> None:
    root = need(INTAKE / "luna16")
    build(write_manifest(tmp_path, {
        "name": "luna", "format": "volume", "modality": "ct", "images": f"{root}/subset*/*.mhd",
        "slicing": {"only_with_roi": True},
        "boxes": {"file": str(root / "annotations.csv"), "key": "seriesuid", "units": "world_mm", "label": "nodule",
                  "columns": {"x": "coordX", "y": "coordY", "z": "coordZ", "diameter": "diameter_mm"}}}),
        tmp_path / "out")
    rows = {r["slice_index"]: r for r in shard_rows(tmp_path / "out")}
    assert sorted(rows) == [*range(71, 78), *range(82, 89)]  # the README's slices
    # independent: voxel = (world - Offset) / spacing from the .mhd header, the section's radius at each slice
    header = dict(line.split(" = ") for line in next(root.glob("subset*/*.mhd")).read_text().splitlines())
    offset = np.array([float(v) for v in header["Offset"].split()])
    spacing = np.array([float(v) for v in header["ElementSpacing"].split()])
    with open(root / "annotations.csv", newline="") as fh:
        for line in csv.DictReader(fh):
            world = np.array([float(line["coordX"]), float(line["coordY"]), float(line["coordZ"])])
            i, j, k = (world - offset) / spacing
            radius = float(line["diameter_mm"]) / 2
            for index in range(int(np.ceil(k - radius / spacing[2])), int(np.floor(k + radius / spacing[2])) + 1):
                section = np.sqrt(radius**2 - ((index - k) * spacing[2]) ** 2)
                # axial display of this LPS-identity volume: column = i, row = j (both as stored)
                want = [i + 0.5 - section / spacing[0], j + 0.5 - section / spacing[1],
                        i + 0.5 + section / spacing[0], j + 0.5 + section / spacing[1]]
                assert any(np.allclose(r["bbox"], want, atol=1e-3) for r in rows[index]["rois"]), index


def test_totalsegmentator_meta_csv_joins_by_subject_folder(tmp_path: Path) -> None:
    root = need(INTAKE / "totalseg-mr-structures")
    build(write_manifest(tmp_path, {
        "name": "ts", "format": "volume", "modality": "mri", "images": f"{root}/*/mri.nii.gz",
        "structures": "segmentations/*.nii.gz", "case_id": "{image_id}",
        "metadata": {"file": str(root / "meta.csv"), "key": "image_id", "match": "folder", "delimiter": ";"}}),
        tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    assert len(rows) == 20 and {r["case_id"] for r in rows} == {"s0001"} and not rejects(tmp_path / "out")


@pytest.mark.parametrize(("form", "cells", "want"), [
    ("xyxy", "2,3,9,8", [2.0, 3.0, 9.0, 8.0]),
    ("xywh", "2,3,7,5", [2.0, 3.0, 9.0, 8.0]),
    ("voc", "3,4,9,8", [2.0, 3.0, 9.0, 8.0]),  # 1-based inclusive
    ("cxcywh_norm", "0.275,0.55,0.35,0.5", [2.0, 3.0, 9.0, 8.0]),  # of a 20 x 10 image
])
def test_every_box_form_gives_the_same_pixel_edges(form: str, cells: str, want: list[float], tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((10, 20), 90, np.uint8)).save(tmp_path / "img" / "a.png")
    roles = {"xyxy": "x_min,y_min,x_max,y_max", "voc": "x_min,y_min,x_max,y_max"}.get(form, "x,y,w,h")
    (tmp_path / "boxes.csv").write_text(f"image,{roles},kind\na.png,{cells},cyst\n")
    build(write_manifest(tmp_path, {"name": "t", "format": "image", "modality": "ultrasound", "images": "img/*.png",
                                    "boxes": {"file": "boxes.csv", "box": form, "columns": {"label": "kind"}}}),
          tmp_path / "out")
    ((label, box),) = [(r["label"], r["bbox"]) for r in shard_rows(tmp_path / "out")[0]["rois"]]
    assert label == "cyst" and np.allclose(box, want)
