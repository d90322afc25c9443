"""MedPix 2.0 as its authors publish it: MedPix-2-0/ with images/ and splitted_dataset/ (splits and train halves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MEDPIX, build, need, run_cli, shard_rows, write_manifest


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, set[str]], dict[str, str]]:
    """A MedPix-2-0 folder: the test split as published, 40 train cases cut into train, dev and two halves."""
    need(MEDPIX / "train-256")
    root = tmp_path_factory.mktemp("medpix") / "MedPix-2-0"
    (root / "images").mkdir(parents=True)
    split_dir = root / "splitted_dataset"
    split_dir.mkdir()
    cases = _lines(MEDPIX / "train-256" / "data_train.jsonl")[:40]
    uids = {c["U_id"] for c in cases}
    descriptions = [d for d in _lines(MEDPIX / "train-256" / "descriptions_train.jsonl") if d["U_id"] in uids]
    parts = {"train": cases[:30], "dev": cases[30:]}
    expected: dict[str, set[str]] = {}
    for name, members in parts.items():
        ids = {c["U_id"] for c in members}
        _write(split_dir / f"data_{name}.jsonl", members)
        _write(split_dir / f"descriptions_{name}.jsonl", [d for d in descriptions if d["U_id"] in ids])
        expected["validation" if name == "dev" else name] = {d["image"] for d in descriptions if d["U_id"] in ids}
    halves: dict[str, str] = {}
    for number, members in ((1, parts["train"][:15]), (2, parts["train"][15:])):
        ids = {c["U_id"] for c in members}
        _write(split_dir / f"data_train_{number}.jsonl", members)
        half = [d for d in descriptions if d["U_id"] in ids]
        _write(split_dir / f"descriptions_train_{number}.jsonl", half)
        halves.update({d["image"]: f"train_{number}" for d in half})
    for name in ("data_test.jsonl", "descriptions_test.jsonl"):
        shutil.copy(MEDPIX / "test" / name, split_dir / name)
    expected["test"] = {d["image"] for d in _lines(MEDPIX / "test" / "descriptions_test.jsonl")}
    for folder in (MEDPIX / "test" / "images", MEDPIX / "train-256" / "images"):
        for stem in expected["test"] | expected["train"] | expected["validation"]:
            if (folder / f"{stem}.png").is_file():
                shutil.copy(folder / f"{stem}.png", root / "images" / f"{stem}.png")
    (split_dir / "uid_list.json").write_text(json.dumps({k: sorted({c["U_id"] for c in v}) for k, v in parts.items()}))
    return root, expected, halves


def _splits(out: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    import pyarrow.parquet as pq

    for path in sorted((out / "data").glob("*/*.parquet")):
        split = path.name.split("-")[0]
        for row in pq.read_table(path, columns=["source_file"]).to_pylist():
            found.setdefault(split, set()).add(Path(row["source_file"]).stem)
    return found


@pytest.mark.parametrize("entry", ["root", "split folder"])
def test_the_published_folder_keeps_the_authors_splits_and_marks_the_halves(
        published: tuple[Path, dict[str, set[str]], dict[str, str]], tmp_path: Path, entry: str) -> None:
    root, expected, halves = published
    given = root if entry == "root" else root / "splitted_dataset"
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "medpix", "format": "medpix", "root": str(given)}), out)
    found = _splits(out)
    assert set(found) == {"train", "validation", "test"}  # the halves are no splits of their own
    curated = summary["files"]["rejected"]
    assert sum(len(v) for v in found.values()) + curated == sum(len(v) for v in expected.values())
    for split, stems in found.items():
        assert stems <= expected[split], split
    rows = shard_rows(out)
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        stem = Path(row["source_file"]).stem
        assert row["subset"] == halves.get(stem)
    assert {r["subset"] for r in rows} == {None, "train_1", "train_2"}
    assert run_cli("verify", out, "--no-decode").exit_code == 0


def test_a_build_never_publishes_two_rows_with_one_id(
        published: tuple[Path, dict[str, set[str]], dict[str, str]], tmp_path: Path) -> None:
    root, _, _ = published
    copy = tmp_path / "MedPix-2-0"
    shutil.copytree(root, copy)
    split_dir = copy / "splitted_dataset"
    leaked = _lines(split_dir / "descriptions_test.jsonl")[:2]
    with open(split_dir / "descriptions_train.jsonl", "a") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in leaked)
    out = tmp_path / "out"
    result = run_cli("build", write_manifest(tmp_path, {"name": "medpix", "format": "medpix", "root": str(copy)}),
                     "--out", out, "--quiet", "--workers", "1", ok=False)
    assert result.exit_code != 0 and "would be published twice" in result.output
    assert not (out / "data").exists()
