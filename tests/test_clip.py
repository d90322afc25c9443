"""tools/train_clip.py: a CLIP scan classifier trained on built MedPix 2.0 shards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MEDPIX, ROOT, build, need, write_manifest


def test_train_evaluate_save_and_predict(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="training needs the torch extra")
    pytest.importorskip("transformers", reason="training needs transformers")
    need(MEDPIX / "train-256")
    train, test = tmp_path / "train", tmp_path / "test"
    build(write_manifest(tmp_path / "m1", {"name": "medpix", "format": "medpix", "root": str(MEDPIX / "train-256")}),
          train, "--workers", "2")
    build(write_manifest(tmp_path / "m2", {"name": "medpix", "format": "medpix", "root": str(MEDPIX / "test")}),
          test, "--workers", "2")
    model = tmp_path / "clip"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "train_clip.py"), "--train", str(train), "--eval",
                           str(test), "--out", str(model), "--epochs", "1", "--image-size", "32"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["evaluated"] == 200
    modality = metrics["confusion"]["modality"]["rows_true_columns_predicted"]
    location = metrics["confusion"]["location"]["rows_true_columns_predicted"]
    assert sum(map(sum, modality)) == sum(map(sum, location)) == 200 and len(location) == 5
    # the accuracies are what the confusion matrices say, computed here independently
    assert metrics["modality_accuracy"] == pytest.approx(sum(modality[i][i] for i in range(len(modality))) / 200)
    assert metrics["location_accuracy"] == pytest.approx(sum(location[i][i] for i in range(len(location))) / 200)
    assert metrics["majority_class"]["location"] > metrics["chance"]["location"]
    assert (model / "config.json").is_file() and (model / "model.safetensors").is_file()
    image = next((MEDPIX / "test" / "images").glob("*.png"))
    predicted = subprocess.run([sys.executable, str(ROOT / "tools" / "train_clip.py"), "--predict", str(model),
                                str(image)], capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answer = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert answer["modality"] in ("ct", "mri") and answer["location"] in (
        "Head", "Thorax", "Abdomen", "Spine and Muscles", "Reproductive and Urinary System")
