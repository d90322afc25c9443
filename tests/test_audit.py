"""Duplicates and leakage: audit, --dedup, and splits by a group key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import MEDPIX, build, need, real_files, rejects, run_cli, write_manifest
from datasets import load_dataset
from PIL import Image


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """30 real scans in train; 10 of them copied into test, 5 re-encoded and resized; 10 other scans in test."""
    images = MEDPIX / "test" / "images"
    need(images)
    root = tmp_path_factory.mktemp("leaky")
    files = sorted(images.glob("*.png"))[::4][:40]  # one image in four: distinct cases
    (root / "train").mkdir()
    (root / "test").mkdir()
    for path in files[:30]:
        shutil.copy(path, root / "train" / path.name)
    planted = []
    for i, path in enumerate(files[:10]):
        target = root / "test" / f"copy_{path.stem}.png"
        if i < 5:
            Image.open(path).save(target, compress_level=9)  # same pixels, other bytes
        else:
            img = Image.open(path)
            img.resize((int(img.width * 0.8), int(img.height * 0.8)), Image.Resampling.LANCZOS).convert("RGB") \
                .save(target.with_suffix(".jpg"), quality=85)
            target = target.with_suffix(".jpg")
        planted.append(target.name)
    for path in files[30:40]:
        shutil.copy(path, root / "test" / path.name)
    manifest = write_manifest(
        root, {"name": "leak-train", "format": "image", "images": "train/*.png", "modality": "ct", "split": "train"},
        {"name": "leak-test", "format": "image", "images": "test/*", "modality": "ct", "split": "test"})
    out = root / "out"
    build(manifest, out)
    return out, planted


def test_audit_reports_every_planted_copy(leaky: tuple[Path, list[str]]) -> None:
    out, planted = leaky
    report = json.loads(run_cli("audit", out, "--json").stdout)
    ids = real_files(out)
    found = {Path(ids[i]).name for group in report["exact"] + report["near"] for i in group}
    assert set(planted) <= found, f"missed {set(planted) - found}"
    exact_files = {Path(ids[i]).name for group in report["exact"] for i in group}
    assert {name for name in planted if name.endswith(".png")} <= exact_files
    assert {name for name in planted if name.endswith(".jpg")} <= {Path(ids[i]).name for g in report["near"]
                                                                    for i in g}
    markdown = run_cli("audit", out).stdout
    assert "across splits" in markdown


def test_audit_against_an_image_folder_finds_the_leak(leaky: tuple[Path, list[str]], tmp_path: Path) -> None:
    out, planted = leaky
    benchmark = tmp_path / "benchmark"
    benchmark.mkdir()
    for name in planted[5:]:
        shutil.copy(out.parent / "test" / name, benchmark / name)
    report = json.loads(run_cli("audit", out, "--against", benchmark, "--json").stdout)
    leaked = {i for group in report["near"] + report["exact"] for i in group if i.startswith("benchmark:")}
    assert leaked == {f"benchmark:{name}" for name in planted[5:]}


def test_build_dedup_drops_exact_copies_naming_the_kept_twin(leaky: tuple[Path, list[str]], tmp_path: Path) -> None:
    out, planted = leaky
    again = tmp_path / "dedup"
    summary = build(out.parent / "sources.yaml", again, "--dedup")
    lines = [line for line in rejects(again) if line.get("rule") == "duplicate_pixels"]
    assert sorted(Path(line["file"]).name for line in lines) == sorted(n for n in planted if n.endswith(".png"))
    train_ids = set(load_dataset(str(out), "ct", split="train")["id"])
    assert all(line["reason"].split()[-1] in train_ids for line in lines)
    assert summary["files"]["rejected"] == 5


def test_splits_by_group_key_keep_each_group_whole(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for i in range(120):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / "img" / f"{i:03d}.png")
        rows.append(f"{i:03d},patient{i % 30}")
    (tmp_path / "meta.csv").write_text("image,patient\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "p", "format": "image", "images": "img/*.png", "modality": "xray",
                                    "metadata": "meta.csv", "case_id": "{patient}",
                                    "split": {"by": "{patient}", "ratios": {"train": 0.7, "test": 0.3}}}), out)
    splits: dict[str, set[str]] = {}
    for split in ("train", "test"):
        for row in load_dataset(str(out), "xray", split=split):
            splits.setdefault(row["case_id"], set()).add(split)
    assert len(splits) == 30 and all(len(s) == 1 for s in splits.values()), "a patient straddles two splits"
    tests = sum(s == {"test"} for s in splits.values())
    assert 3 <= tests <= 17
