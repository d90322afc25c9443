"""tools/train_clip.py: a CLIP scan classifier trained on a built MedPix 2.0 folder, on its authors' splits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MEDPIX, ROOT, build, write_manifest
from medpix_folder import lines, medpix_folder

sys.path.insert(0, str(ROOT / "tools"))  # scan_clip, for the fine-tuning test
TRAIN = [sys.executable, str(ROOT / "tools" / "train_clip.py")]
LOCATIONS = ("Head", "Thorax", "Abdomen", "Spine and Muscles", "Reproductive and Urinary System")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="training needs the torch extra")
    pytest.importorskip("transformers", reason="training needs transformers")
    parent = tmp_path_factory.mktemp("clip")
    root, _, _ = medpix_folder(parent)
    out = parent / "built"
    build(write_manifest(parent, {"name": "medpix", "format": "medpix", "root": str(root)}), out, "--workers", "2")
    return out


def _check_split(metrics: dict, expected: int) -> None:
    assert metrics["evaluated"] == expected
    modality = metrics["confusion"]["modality"]["rows_true_columns_predicted"]
    location = metrics["confusion"]["location"]["rows_true_columns_predicted"]
    assert sum(map(sum, modality)) == sum(map(sum, location)) == expected and len(location) == 5
    # the accuracies are what the confusion matrices say, computed here independently
    assert metrics["modality_accuracy"] == pytest.approx(sum(modality[i][i] for i in range(2)) / expected, abs=1e-4)
    assert metrics["location_accuracy"] == pytest.approx(sum(location[i][i] for i in range(5)) / expected, abs=1e-4)


def _known(split_file: Path) -> int:
    """Images of a split with a modality and location category the classifier knows, from the authors' file."""
    return sum(d["Type"] in ("CT", "MR") and d["Location Category"] in LOCATIONS for d in lines(split_file))


def test_trains_on_train_chooses_by_dev_reports_test_and_predicts(built: Path, tmp_path: Path) -> None:
    model = tmp_path / "clip"
    done = subprocess.run([*TRAIN, "--data", str(built), "--out", str(model), "--epochs", "2", "--image-size", "32"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["dev_source"].startswith("the validation split")
    assert metrics["chosen_epoch"] in (1, 2)
    _check_split(metrics["test"], _known(MEDPIX / "test" / "descriptions_test.jsonl"))
    split_dir = built.parent / "MedPix-2-0" / "splitted_dataset"
    assert metrics["dev"]["evaluated"] <= _known(split_dir / "descriptions_dev.jsonl")  # less what curation dropped
    _check_split(metrics["dev"], metrics["dev"]["evaluated"])
    assert metrics["test"]["majority_class"]["location"] > metrics["test"]["chance"]["location"]
    image = next((MEDPIX / "test" / "images").glob("*.png"))
    predicted = subprocess.run([*TRAIN, "--predict", str(model), str(image)], capture_output=True, text=True,
                               timeout=300)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    answer = json.loads(predicted.stdout.strip().splitlines()[-1])
    assert answer["modality"] in ("ct", "mri") and answer["location"] in LOCATIONS


def test_fine_tunes_a_local_clip_checkpoint(built: Path, tmp_path: Path) -> None:
    from scan_clip import character_tokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    checkpoint = tmp_path / "pretrained"
    tokenizer = character_tokenizer(checkpoint / "tokenizer")
    layer = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(text_config={**layer, "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
                        vision_config={**layer, "image_size": 32, "patch_size": 16}, projection_dim=16)
    CLIPModel(config).save_pretrained(checkpoint)
    size = {"height": 32, "width": 32}
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=size),
                  tokenizer=tokenizer).save_pretrained(checkpoint)
    model = tmp_path / "tuned"
    done = subprocess.run([*TRAIN, "--data", str(built), "--out", str(model), "--model", str(checkpoint),
                           "--epochs", "1"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["model"] == f"fine-tuned from {checkpoint}"
    assert CLIPModel.from_pretrained(model).config.projection_dim == 16  # saved as the checkpoint's own kind
