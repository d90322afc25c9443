"""The leakage gate: push refuses a dataset whose training rows copy a benchmark's test images, and pushes with
--allow-leakage, the card saying what was checked and found; against the local hub server, real MedPix images."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import MEDPIX, build, need, write_manifest
from hub_server import HubServer
from PIL import Image

TOKEN = "hf_leakagetesttoken0123456789"
CLI = [sys.executable, "-m", "builder"]


def _push(out: Path, hub: HubServer, home: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    return subprocess.run(CLI + ["push", str(out), "org/leaky", *extra], env=env, capture_output=True, text=True,
                          timeout=600)


def _folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    cases: dict[str, Path] = {}  # one image per case: slices of one case are near-duplicates of each other
    for path in sorted((need(MEDPIX / "test") / "images").glob("*.png")):
        cases.setdefault(path.name.split("_")[0], path)
    images = list(cases.values())
    train, bench, other = tmp_path / "train", tmp_path / "vqa-rad-test", tmp_path / "slake-test"
    for folder in (train, bench, other):
        folder.mkdir()
    for path in images[:4]:
        shutil.copy(path, train / path.name)
    # the benchmark holds a copy of one training image, re-encoded as JPEG and resized as benchmarks publish them
    with Image.open(images[1]) as image:
        image.convert("RGB").resize((image.width * 3 // 4, image.height * 3 // 4)).save(bench / "synpic_q17.jpg",
                                                                                        quality=85)
    shutil.copy(images[10], bench / "synpic_q18.png")
    shutil.copy(images[11], other / "slake_0001.png")
    return train, bench, other


def test_a_push_with_test_images_in_training_is_refused_unless_allowed(tmp_path: Path) -> None:
    _, bench, other = _folders(tmp_path)
    manifest = write_manifest(tmp_path, {"name": "scans", "format": "image", "images": "train/*.png",
                                         "modality": "ct"})
    text = manifest.read_text()
    manifest.write_text(f"benchmarks: [{bench.name}]\n" + text)
    out = tmp_path / "out"
    summary = build(manifest, out)
    assert summary["benchmarks"] == ["vqa-rad-test"] and str(tmp_path) not in (out / "build.json").read_text()
    with HubServer(tmp_path / "hub", TOKEN) as hub:
        refused = _push(out, hub, tmp_path / "home", "--against", str(other))
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0 and "nothing was pushed" in said
        assert "vqa-rad-test: 0 exact and 1 near copies" in said and "slake-test" not in said.split("nothing")[0]
        assert hub.repo("datasets", "org/leaky") is None
        pushed = _push(out, hub, tmp_path / "home", "--against", str(other), "--allow-leakage")
        assert pushed.returncode == 0, pushed.stderr[-2000:]
        card = (hub.repo("datasets", "org/leaky").files / "README.md").read_text()
    assert "## Leakage checked" in card
    assert "| vqa-rad-test | 2 | 0 | 1 |" in card and "| slake-test | 1 | 0 | 0 |" in card
    assert "1 training rows copy a benchmark image; pushed with `--allow-leakage`" in card
    assert card == (out / "README.md").read_text()  # the folder and the repo stay byte-identical


def test_a_clean_dataset_pushes_and_its_card_says_what_was_checked(tmp_path: Path) -> None:
    _, _, other = _folders(tmp_path)
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "scans", "format": "image", "images": "train/*.png", "modality": "ct"}),
          out)
    with HubServer(tmp_path / "hub", TOKEN) as hub:
        plan = _push(out, hub, tmp_path / "home", "--against", str(other), "--dry-run")
        assert plan.returncode == 0 and "leakage against slake-test (1 images): 0 exact and 0 near" in plan.stdout
        assert _push(out, hub, tmp_path / "home", "--against", str(other)).returncode == 0
    card = (out / "README.md").read_text()
    assert "No benchmark image was found in the training rows." in card and card.count("## Leakage checked") == 1
