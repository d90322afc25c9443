"""Output the Hub can hold: no folder with more files than its limit, globs that follow, a small build.json.

The Hub refuses a folder with more than 10,000 entries; ``--files-per-folder`` makes that limit small here, so a
build of a few thousand rows in shards of five rows needs the sub-folders a 25M-row build needs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import build, run_cli, write_manifest
from PIL import Image

PER_FOLDER = 12
SPLITS = {"train": 1200, "test": 300}


@pytest.fixture(scope="module")
def nested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of 3,000 rows (two configs, two splits each) in shards of five rows, at most 12 files a folder."""
    root = tmp_path_factory.mktemp("hub-sized")
    rng = np.random.default_rng(7)
    sources = []
    for modality in ("ct", "xray"):
        for split, n in SPLITS.items():
            folder = root / "src" / modality / split
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i:04d}.png")
            sources.append({"name": f"{modality}_{split}", "format": "image", "images": f"{modality}/{split}/*.png",
                            "modality": modality, "split": split})
    out = root / "out"
    build(write_manifest(root / "src", *sources), out, "--shard-rows", "5", "--files-per-folder", str(PER_FOLDER),
          "--format", "both")
    return out


def test_no_folder_holds_more_than_the_limit(nested: Path) -> None:
    out = nested
    crowded = {root: len(dirs) + len(files) for root, dirs, files in os.walk(out) if len(dirs) + len(files) > PER_FOLDER
               and ".private" not in root}
    assert not crowded
    shards = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert len(shards) == 2 * sum(SPLITS.values()) // 5  # every shard of five rows is there
    assert {len(p.split("/")) for p in shards} == {6}  # data/<config>/<split>/NN/NN/<name>: 240 shards a split
    assert all(p.split("/")[2] == p.split("/")[-1].split("-")[0] for p in shards)  # a split's own folder
    assert len(list(out.rglob("*.tar"))) >= len(shards)  # WebDataset's lanes may end a shard early


def test_loads_and_verifies(nested: Path) -> None:
    from datasets import load_dataset

    out = nested
    assert run_cli("verify", out).exit_code == 0
    for modality in ("ct", "xray"):
        for split, n in SPLITS.items():
            rows = load_dataset(str(out), modality, split=split)
            assert len(rows) == n and len(set(rows["id"])) == n
    every = load_dataset(str(out), "all")
    assert {k: len(v) for k, v in every.items()} == {s: 2 * n for s, n in SPLITS.items()}
    streamed = load_dataset(str(out), "xray", split="test", streaming=True)
    assert sum(1 for _ in streamed) == SPLITS["test"]


def test_build_json_stays_small(nested: Path) -> None:
    """Aggregates and a line per shard, nothing per row: no row id is in it."""
    out = nested
    text = (out / "build.json").read_text()
    ids = {i for p in out.rglob("*.parquet") for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}
    assert len(ids) == 2 * sum(SPLITS.values())
    assert not [i for i in ids if i in text]
    doc = json.loads(text)
    assert doc["rows"]["total"] == len(ids) and doc["options"]["limits.files_per_folder"] == PER_FOLDER


def test_sizes_json_is_where_open_clip_reads_it(nested: Path) -> None:
    """open_clip reads ``sizes.json`` beside the first shard it is given and looks every shard up by file name."""
    out = nested
    for config in ("ct", "xray"):
        tars = sorted(p for p in (out / "webdataset" / config).rglob("*.tar"))
        for first in (tars[0], tars[-1]):
            sizes = json.loads((first.parent / "sizes.json").read_text())
            assert sum(sizes[t.name] for t in tars) == sum(SPLITS.values())


def _tar_keys(path: Path) -> list[str]:
    import tarfile

    with tarfile.open(path) as tar:
        return [m.name.partition(".")[0] for m in tar.getmembers() if m.name.endswith(".json")]


def test_small_shards_of_many_work_groups_are_merged_to_the_shard_size(tmp_path: Path) -> None:
    """Work groups of 40 images each write their own small shards; publishing merges a stream's consecutive ones
    up to --shard-rows (those of at most a quarter of it): the rows, in order, of one big work group, in as few
    shards, each a valid file."""
    import webdataset as wds

    folder = tmp_path / "src" / "img"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(400):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    manifest = write_manifest(tmp_path / "src", {"name": "s", "format": "image", "images": "img/*.png",
                                                 "modality": "xray"})
    small = build(manifest, tmp_path / "small", "--shard-units", "40", "--shard-rows", "160", "--format", "both")
    whole = build(manifest, tmp_path / "whole", "--shard-units", "1000", "--shard-rows", "160", "--format", "both")
    shards = [s for s in small["shards"] if s["format"] == "parquet"]
    assert [s["rows"] for s in shards] == [160, 160, 80]  # groups of 40 merged while they fit in 160
    ids = [i for s in shards for i in pq.read_table(tmp_path / "small" / s["path"], columns=["id"])["id"].to_pylist()]
    reference = [i for s in whole["shards"] if s["format"] == "parquet"
                 for i in pq.read_table(tmp_path / "whole" / s["path"], columns=["id"])["id"].to_pylist()]
    assert ids == reference and len(ids) == 400
    assert max(pq.ParquetFile(tmp_path / "small" / shards[0]["path"]).metadata.row_group(g).num_rows
               for g in range(3)) <= 100  # the viewer's row groups stay small
    tars = [tmp_path / "small" / s["path"] for s in small["shards"] if s["format"] == "webdataset"]
    assert len(tars) == 8  # one a lane: a DataLoader's workers each still get one
    keys = [k for t in tars for k in _tar_keys(t)]
    assert sorted(keys) == sorted(reference)
    read = [sample["__key__"] for sample in wds.WebDataset([str(t) for t in tars], shardshuffle=False)]
    assert sorted(read) == sorted(reference)
    assert run_cli("verify", tmp_path / "small").exit_code == 0


def test_only_small_shards_merge_and_order_is_kept() -> None:
    """A shard over a quarter of the limits is published as it is (publishing never copies a large build again);
    small ones merge with the small ones after them, a lane's with its own lane's."""
    from builder.formats import ShardLimits
    from builder.pipeline.build.parts import parts

    limits = ShardLimits(max_rows=100, max_mb=1)

    def shard(name: str, rows: int, size: int = 1000) -> dict:
        return {"staged": f"shards/data/ct/{name}.parquet", "rows": rows, "bytes": size}

    staged = [shard("train-g0-p000", 10), shard("train-g1-p000", 60), shard("train-g2-p000", 20),
              shard("train-g3-p000", 25), shard("train-g4-p000", 25, 2**19), shard("train-g5-p000", 5)]
    found = [[s["staged"].split("/")[-1].split(".")[0] for s in part] for part in parts(staged, limits)]
    assert found == [["train-g0-p000"], ["train-g1-p000"], ["train-g2-p000", "train-g3-p000"], ["train-g4-p000"],
                     ["train-g5-p000"]]
    lanes = [shard(f"train-g{g}-l0{lane}-p000", 5) for g in range(3) for lane in range(2)]
    merged = [[s["staged"].split("/")[-1].split(".")[0] for s in part] for part in parts(lanes, limits)]
    assert merged == [["train-g0-l00-p000", "train-g1-l00-p000", "train-g2-l00-p000"],
                      ["train-g0-l01-p000", "train-g1-l01-p000", "train-g2-l01-p000"]]


def test_push_refuses_a_folder_the_hub_would_refuse() -> None:
    """A build made with a larger --files-per-folder than the Hub's limit is named before anything is sent."""
    from builder.dataset.hub import crowded_folders

    paths = [f"data/ct/train-{i:05d}-of-00030.parquet" for i in range(30)] + ["README.md", "build.json"]
    assert crowded_folders(paths, limit=20) == {"data/ct": 30}
    assert crowded_folders(paths, limit=30) == {}
    nested = [f"data/ct/train/{i // 9:02d}/train-{i:05d}-of-00030.parquet" for i in range(30)]
    assert crowded_folders(nested, limit=10) == {}
