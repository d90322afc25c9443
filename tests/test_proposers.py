"""ROI proposals for images without annotations: classical, transformers, command."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MEDPIX, build, real_files, write_manifest
from datasets import load_dataset
from PIL import Image


@pytest.fixture(scope="module")
def medpix_classical(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = MEDPIX / "test"
    if not root.exists():
        pytest.skip(f"reference data {root} is absent (it lives in ../shared/data beside the repository)")
    folder = tmp_path_factory.mktemp("proposals")
    out = folder / "medpix-roi"
    build(write_manifest(folder, {"name": "medpix", "format": "medpix", "root": str(root),
                                  "roi": {"method": "classical"}}), out, "--workers", "2")
    return out


def test_classical_gives_every_medpix_row_a_body_region(medpix_classical: Path) -> None:
    ds = load_dataset(str(medpix_classical), "all", split="test")
    assert len(ds) == 200
    coverage = []
    for row in ds:
        assert row["rois"] and all(r["origin"] == "classical" for r in row["rois"])
        for roi in row["rois"]:
            x0, y0, x1, y1 = roi["bbox"]
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
            assert 0 < roi["area_ratio"] <= 1 and 0 <= roi["score"] <= 1
            assert roi["label"] in ("body region", "bright focal region")  # never a disease
        body = next(r for r in row["rois"] if r["label"] == "body region")
        foreground = np.asarray(row["image"].convert("L")) > 40  # an independent, simple threshold
        x0, y0, x1, y1 = map(int, body["bbox"])
        coverage.append(foreground[y0:y1, x0:x1].sum() / max(foreground.sum(), 1))
    coverage = np.array(coverage)
    assert np.median(coverage) >= 0.9, "the body region leaves out most of the anatomy"
    assert (coverage >= 0.8).mean() >= 0.8
    card = (medpix_classical / "README.md").read_text()
    assert "from classical" in card


def _images(folder: Path, n: int = 4) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    masks = []
    for i in range(n):
        image = np.full((60, 80), 30, np.uint8)
        mask = np.zeros((60, 80), np.uint8)
        mask[10 + i:25 + i, 5 + 6 * i:30 + 6 * i] = 1
        mask[40:50, 60:70] = 2
        image[mask == 1], image[mask == 2] = 200, 120
        Image.fromarray(image).save(folder / f"scan{i}.png")
        masks.append(mask)
    return masks


SCRIPT = '''
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
source, target = Path(sys.argv[1]), Path(sys.argv[2])
for line in (source / "prompts.jsonl").read_text().splitlines():
    item = json.loads(line)
    image = np.asarray(Image.open(source / item["image"]))
    labels = np.where(image == 200, 1, np.where(image == 120, 2, 0)).astype(np.uint8)
    key = item["image"][:-4]
    Image.fromarray(labels).save(target / f"{key}_mask.png")
    (target / f"{key}.json").write_text(json.dumps({"labels": {"1": "lesion", "2": "cyst"},
                                                    "scores": {"1": 0.9, "2": 0.7}, "prompt": item["prompt"]}))
'''


def test_command_masks_become_rois_as_annotated_masks_do(tmp_path: Path) -> None:
    masks = _images(tmp_path / "img")
    for i, mask in enumerate(masks):
        Image.fromarray(mask).save(tmp_path / "img" / f"scan{i}_mask.png")
    (tmp_path / "expert.py").write_text(SCRIPT)
    annotated = tmp_path / "annotated"
    build(write_manifest(tmp_path, {"name": "a", "format": "image", "images": "img/scan?.png",
                                    "masks": "img/*_mask.png", "labels": {1: "lesion", 2: "cyst"},
                                    "modality": "ct"}), annotated)
    proposed = tmp_path / "proposed"
    build(write_manifest(tmp_path, {"name": "a", "format": "image", "images": "img/scan?.png", "modality": "ct",
                                    "roi": {"method": "command",
                                            "command": f"{sys.executable} {tmp_path / 'expert.py'} "
                                                       "{input} {output}"}}),
          proposed, "--allow-commands")

    def geometry(out: Path) -> dict[str, list[tuple]]:
        files = real_files(out)
        return {files[r["id"]]: [(x["label"], x["bbox"], x["area_ratio"], x["position"]) for x in r["rois"]]
                for r in load_dataset(str(out), "ct", split="train")}

    assert geometry(proposed) == geometry(annotated)
    rows = load_dataset(str(proposed), "ct", split="train")
    assert {x["origin"] for r in rows for x in r["rois"]} == {"command"}
    assert {x["score"] for r in rows for x in r["rois"]} == {np.float32(0.9), np.float32(0.7)}
    assert all(r["mask"] is None for r in rows), "proposals are not stored as annotated masks"


def test_annotated_sources_are_untouched_unless_mode_add(tmp_path: Path) -> None:
    masks = _images(tmp_path / "img")
    for i, mask in enumerate(masks):
        Image.fromarray(mask).save(tmp_path / "img" / f"scan{i}_mask.png")
    entry = {"name": "a", "format": "image", "images": "img/scan?.png", "masks": "img/*_mask.png",
             "labels": {1: "lesion", 2: "cyst"}, "modality": "ct"}
    fill, add = tmp_path / "fill", tmp_path / "add"
    build(write_manifest(tmp_path, {**entry, "roi": {"method": "classical"}}), fill)
    build(write_manifest(tmp_path, {**entry, "roi": {"method": "classical", "mode": "add"}}), add)
    for filled, added in zip(load_dataset(str(fill), "ct", split="train"), load_dataset(str(add), "ct", split="train")):
        assert [r["origin"] for r in filled["rois"]] == ["annotation", "annotation"]
        assert added["rois"][:2] == filled["rois"]
        assert {r["origin"] for r in added["rois"][2:]} == {"classical"}


def test_transformers_detector_runs_on_a_local_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the transformers proposer needs torch")
    from tiny_models import tiny_owlvit

    model = tiny_owlvit(tmp_path / "tiny-owlvit")
    _images(tmp_path / "img")
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {
        "name": "t", "format": "image", "images": "img/scan?.png", "modality": "ct", "disease": "lesion",
        "organ": "liver", "roi": {"method": "transformers", "model": str(model), "threshold": 0.0,
                                  "max_rois": 2, "prompt": "{disease} in the {organ}"}}), out)
    assert summary["files"]["accepted"] == 4
    rows = load_dataset(str(out), "ct", split="train")
    for row in rows:
        assert 1 <= len(row["rois"]) <= 2
        for roi in row["rois"]:
            assert roi["origin"] == "transformers" and roi["label"] == "lesion in the liver"
            x0, y0, x1, y1 = roi["bbox"]
            assert 0 <= x0 < x1 <= row["width"] and 0 <= y0 < y1 <= row["height"]
