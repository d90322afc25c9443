"""``format: coco``, ``voc`` and ``yolo`` on real files in their published layouts (``../shared/data/intake-dev``).

The references are computed in the test: pycocotools' ``annToMask`` for COCO instances, the VOC XMLs read with
ElementTree for VOC and (as the README says the YOLO labels were made from them) for YOLO.
"""

from __future__ import annotations

import io
import json
import shutil
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from conftest import SHARED, build, need, published_rejects, rejects, shard_rows, write_manifest
from PIL import Image

INTAKE = SHARED / "intake-dev"
COCO_DIR = INTAKE / "coco" / "colin27-aal"
VOC = INTAKE / "voc" / "BCCD"
YOLO = INTAKE / "yolo" / "BCCD"



def voc_boxes() -> dict[str, list[tuple[str, list[float]]]]:
    """Image stem -> (name, pixel-edge box) of each VOC object: 1-based inclusive, so [xmin - 1, ymin - 1, xmax,
    ymax]."""
    found = {}
    for xml in sorted((VOC / "Annotations").glob("*.xml")):
        root = ElementTree.parse(xml).getroot()
        found[xml.stem] = [(o.findtext("name"), [float(o.findtext(f"bndbox/{k}")) - d for k, d in
                                                 (("xmin", 1), ("ymin", 1), ("xmax", 0), ("ymax", 0))])
                           for o in root.iter("object")]
    return found


def stem_of(row: dict[str, Any], out: Path) -> str:
    files = {}
    for line in (out / ".private" / "provenance.jsonl").read_text().splitlines():
        entry = json.loads(line)
        for row_id in entry["ids"]:
            files[row_id] = Path(entry["file"]).stem
    return files[row["id"]]


def test_coco_instances_become_the_masks_pycocotools_draws(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    annotations = need(COCO_DIR / "annotations" / "instances_train.json")
    summary = build(write_manifest(tmp_path, {"name": "coco", "format": "coco", "modality": "mri",
                                              "annotations": str(annotations), "images": str(COCO_DIR / "images")}),
                    tmp_path / "out")
    assert summary["rows"]["total"] == 3 and not rejects(tmp_path / "out") and summary["skipped"] == {}
    api = COCO(str(annotations))
    rows = {stem_of(r, tmp_path / "out"): r for r in shard_rows(tmp_path / "out")}
    counts = {}
    for image in api.dataset["images"]:
        row = rows[Path(image["file_name"]).stem]
        anns = api.loadAnns(api.getAnnIds(imgIds=[image["id"]]))
        counts[Path(image["file_name"]).name] = len(row["rois"])
        mask = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"]))) if row["mask"] else None
        expected = Counter()
        for value, ann in enumerate(anns, start=1):
            drawn = api.annToMask(ann).astype(bool)
            assert mask is not None and np.array_equal(mask == value, drawn), ann["id"]
            ys, xs = np.nonzero(drawn)
            name = api.loadCats([ann["category_id"]])[0]["name"]
            expected[(name, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))] += 1
            x, _, w, _ = ann["bbox"]  # the README: x_min = floor(x), x_max = ceil(x + w) - 1
            assert (xs.min(), xs.max()) == (np.floor(x), np.ceil(x + w) - 1)
        assert Counter((r["label"], tuple(r["bbox"])) for r in row["rois"]) == expected
    assert counts == {"colin27_k050.png": 37, "colin27_k110.png": 27, "colin27_k170.png": 0}


def test_a_coco_file_with_missing_images_and_orphan_annotations_accounts_for_each(tmp_path: Path) -> None:
    need(COCO_DIR)
    shutil.copytree(COCO_DIR / "images", tmp_path / "images")
    (tmp_path / "images" / "notes.txt").write_text("not an image of the file")
    doc = json.loads((COCO_DIR / "annotations" / "instances_train.json").read_text())
    doc["images"].append({"id": 99, "file_name": "axial/absent.png", "width": 181, "height": 217})
    doc["annotations"].append({**doc["annotations"][0], "id": 9999, "image_id": 1234})
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    summary = build(write_manifest(tmp_path, {"name": "c", "format": "coco", "modality": "mri",
                                              "annotations": "instances.json", "images": "images"}),
                    tmp_path / "out")
    reasons = {Path(line["file"]).name: line["reason"] for line in rejects(tmp_path / "out")}
    assert "it is not there" in reasons["absent.png"]
    assert any("names no image" in reason for reason in reasons.values())
    assert summary["skipped"] == {"not listed in the annotation file": 1} and summary["rows"]["total"] == 3
    assert all("absent" not in line["reason"] for line in published_rejects(tmp_path / "out"))


def test_voc_boxes_splits_and_the_one_pixel_box(tmp_path: Path) -> None:
    need(VOC)
    summary = build(write_manifest(tmp_path, {"name": "voc", "format": "voc", "modality": "microscopy",
                                              "root": str(VOC)}), tmp_path / "out")
    expected = voc_boxes()
    rows = shard_rows(tmp_path / "out")
    assert len(rows) == 6 and sum(len(r["rois"]) for r in rows) == 114
    for row in rows:
        stem = stem_of(row, tmp_path / "out")
        assert Counter((r["label"], tuple(r["bbox"])) for r in row["rois"]) == \
            Counter((name, tuple(box)) for name, box in expected[stem])
    assert Counter(r["label"] for row in rows for r in row["rois"]) == {"RBC": 99, "WBC": 8, "Platelets": 7}
    assert summary["rows"]["by_split"] == {"train": 2, "val": 3, "test": 1}
    assert ("RBC", [503.0, 336.0, 504.0, 337.0]) in expected["BloodImage_00338"]  # the one-pixel box
    assert summary["skipped"] == {"split list (ImageSets)": 4} and not rejects(tmp_path / "out")


def test_yolo_boxes_are_the_voc_boxes_and_an_absent_split_folder_is_reported(tmp_path: Path) -> None:
    need(YOLO)
    need(VOC)
    summary = build(write_manifest(tmp_path, {"name": "yolo", "format": "yolo", "modality": "microscopy",
                                              "root": str(YOLO)}), tmp_path / "out")
    expected = voc_boxes()
    rows = shard_rows(tmp_path / "out")
    for row in rows:
        stem = stem_of(row, tmp_path / "out")
        got = sorted((r["label"], r["bbox"]) for r in row["rois"])
        want = sorted(expected[stem])
        assert [name for name, _ in got] == [name for name, _ in want]
        assert np.allclose([box for _, box in got], [box for _, box in want], atol=0.01)
    assert summary["rows"]["by_split"] == {"train": 3, "val": 3} and sum(len(r["rois"]) for r in rows) == 114
    (line,) = rejects(tmp_path / "out")
    assert "test folder ../test/images is not there" in line["reason"]
