"""Licences respected per row: a source whose terms forbid sharing its images is published without pixels (with what
a user needs to fetch the originals), the card says so, and push refuses a folder that holds such pixels, against
the local hub server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import MEDPIX, build, need, write_manifest
from hub_server import HubServer

TOKEN = "hf_licencetesttoken0123456789"
CLI = [sys.executable, "-m", "builder"]


def _mixed(tmp_path: Path) -> Path:
    images = sorted((need(MEDPIX / "test") / "images").glob("*.png"))[:4]
    for folder, chosen in (("open", images[:2]), ("closed", images[2:])):
        (tmp_path / folder).mkdir()
        for path in chosen:
            shutil.copy(path, tmp_path / folder / path.name)
    manifest = write_manifest(
        tmp_path,
        {"name": "open-scans", "format": "image", "images": "open/*.png", "modality": "ct", "license": "CC-BY-4.0"},
        {"name": "closed-scans", "format": "image", "images": "closed/*.png", "modality": "ct",
         "license": "research use only; do not redistribute", "redistribute": False, "publish_paths": True})
    out = tmp_path / "out"
    build(manifest, out)
    return out


def _env(hub: HubServer, home: Path) -> dict[str, str]:
    return dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
                HF_HUB_DISABLE_PROGRESS_BARS="1")


def _push(out: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["push", str(out), "org/mixed", *extra], env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_source_that_may_not_be_redistributed_is_published_without_pixels(tmp_path: Path) -> None:
    out = _mixed(tmp_path)
    closed = {p.name for p in (tmp_path / "closed").glob("*.png")}
    rows = [r for f in sorted(out.rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    assert len(by_source["open-scans"]) == 2 and len(by_source["closed-scans"]) == 2
    for row in by_source["closed-scans"]:
        assert row["image"] is None and row["mask"] is None and row["pixels_withheld"] is True
        assert Path(row["source_file"]).name in closed  # what a user needs to fetch the original: its path
        assert row["caption"] and row["coarse_caption"]  # the annotations and the text are published
    for row in by_source["open-scans"]:
        assert row["image"]["bytes"] and row["pixels_withheld"] is False
    # no byte of a withheld image anywhere in the published folder
    withheld = [(tmp_path / "closed" / name).read_bytes()[-4096:-16] for name in closed]
    for path in out.rglob("*"):
        if path.is_file() and ".private" not in path.parts:
            data = path.read_bytes()
            assert not any(chunk in data for chunk in withheld), path
    from datasets import load_dataset

    loaded = {r["source"]: r for r in load_dataset(str(out), "ct", split="train")}
    assert loaded["closed-scans"]["image"] is None and loaded["open-scans"]["image"] is not None
    card = (out / "README.md").read_text()
    assert "| closed-scans | image | research use only; do not redistribute | annotations only (pixels withheld) |" \
        in card
    assert "| open-scans | image | CC-BY-4.0 | images and annotations |" in card
    assert "do not allow their pixels to be shared" in card
    sources = {s["name"]: s for s in json.loads((out / "build.json").read_text())["sources"]}
    assert sources["closed-scans"]["redistribute"] is False


def test_push_refuses_pixels_of_a_source_that_may_not_be_redistributed(tmp_path: Path) -> None:
    out = _mixed(tmp_path)
    with HubServer(tmp_path / "hub", TOKEN) as hub:
        env = _env(hub, tmp_path / "home")
        plan = _push(out, env, "--dry-run")
        assert plan.returncode == 0, plan.stderr[-2000:]
        assert not any(name in plan.stdout for name in os.listdir(tmp_path / "closed"))
        # the same sources built as if both could be shared, then declared in build.json as not: refused
        leaky = tmp_path / "leaky"
        manifest = tmp_path / "sources.yaml"
        manifest.write_text(manifest.read_text().replace("redistribute: false", "redistribute: true"))
        build(manifest, leaky)
        doc = json.loads((leaky / "build.json").read_text())
        for source in doc["sources"]:
            source["redistribute"] = source["name"] != "closed-scans"
        (leaky / "build.json").write_text(json.dumps(doc, indent=2))
        refused = _push(leaky, env)
        assert refused.returncode != 0
        assert "'closed-scans': 2 rows" in refused.stderr + refused.stdout and "nothing was pushed" in \
            refused.stderr + refused.stdout
        assert hub.repo("datasets", "org/mixed") is None
        pushed = _push(out, env)
        assert pushed.returncode == 0, pushed.stderr[-2000:]
        assert hub.repo("datasets", "org/mixed") is not None


@pytest.mark.parametrize("recipe", ["chexpert", "mimic-cxr-jpg", "vindr-cxr", "rsna-pneumonia"])
def test_recipes_of_datasets_that_forbid_redistribution_withhold_pixels(recipe: str) -> None:
    import yaml

    doc = yaml.safe_load((Path(__file__).parents[1] / "builder" / "recipes" / f"{recipe}.yaml").read_text())
    assert doc["source"]["redistribute"] is False and doc["source"]["publish_paths"] is True
