"""MedPix 2.0 as its authors publish it: MedPix-2-0/ with images/ and splitted_dataset/ (splits and train halves)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import MEDPIX, build, need, run_cli, shard_rows, write_manifest
from medpix_folder import lines, medpix_folder


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, set[str]], dict[str, str]]:
    return medpix_folder(tmp_path_factory.mktemp("medpix"))


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
    leaked = lines(split_dir / "descriptions_test.jsonl")[:2]
    with open(split_dir / "descriptions_train.jsonl", "a") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in leaked)
    out = tmp_path / "out"
    result = run_cli("build", write_manifest(tmp_path, {"name": "medpix", "format": "medpix", "root": str(copy)}),
                     "--out", out, "--quiet", "--workers", "1", ok=False)
    assert result.exit_code != 0 and "would be published twice" in result.output
    assert not (out / "data").exists()


def test_export_medpix_gives_back_the_authors_documents(tmp_path: Path) -> None:
    test = need(MEDPIX / "test")
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "medpix", "format": "medpix", "root": str(test)}), out)
    dest = tmp_path / "export"
    run_cli("export", "medpix", out, "--out", dest)
    kept = {Path(r["source_file"]).stem for r in shard_rows(out)}
    assert len(kept) == summary["rows"]["total"]
    published = [d for d in lines(test / "descriptions_test.jsonl") if d["image"] in kept]
    assert json.loads((dest / "Descriptions.json").read_text()) == published  # same keys, values, order, "N/A"s
    uids = {d["U_id"] for d in published}
    cases = [c for c in lines(test / "data_test.jsonl") if c["U_id"] in uids]
    assert json.loads((dest / "Case_topic.json").read_text()) == cases
    assert {p.stem for p in (dest / "images").glob("*.png")} == kept
    import numpy as np
    from PIL import Image

    for stem in sorted(kept)[:5]:  # the stored pixels, as published
        ours = np.asarray(Image.open(dest / "images" / f"{stem}.png"))
        theirs = np.asarray(Image.open(test / "images" / f"{stem}.png").convert("RGB"))  # stored as RGB
        assert np.array_equal(ours, theirs)


def test_every_case_is_queryable_and_joins_its_images(tmp_path: Path) -> None:
    pytest.importorskip("duckdb", reason="the catalog needs duckdb")
    test = need(MEDPIX / "test")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "medpix", "format": "medpix", "root": str(test)}), out)
    result = run_cli("query", out, "SELECT case_id, title, history, findings, differential_diagnosis, case_diagnosis, "
                     "diagnosis_by, topic_title, disease_discussion, acr_code, category FROM cases ORDER BY case_id",
                     "--output", "json")
    cases = json.loads(result.stdout)
    source = {c["U_id"]: c for c in lines(test / "data_test.jsonl")}
    kept = {r["case_id"] for r in shard_rows(out)}
    assert {c["case_id"] for c in cases} == kept
    for case in cases:
        original = source[case["case_id"]]
        assert case["title"] == original["Case"]["Title"] and case["findings"] == original["Case"]["Findings"]
        assert case["topic_title"] == original["Topic"]["Title"]
        assert case["category"] == original["Topic"]["Category"]
    joined = json.loads(run_cli("query", out, "SELECT s.id, s.acr_codes, s.figure_part, c.title FROM samples s "
                                "JOIN cases c USING (case_id) LIMIT 5", "--output", "json").stdout)
    assert len(joined) == 5 and all(r["title"] for r in joined)
    descriptions = {d["image"]: d for d in lines(test / "descriptions_test.jsonl")}
    rows = json.loads(run_cli("query", out, "SELECT source_file, acr_codes, figure_part FROM samples",
                              "--output", "json").stdout)
    for row in rows:
        original = descriptions[Path(row["source_file"]).stem]["Description"]
        assert row["acr_codes"] == original.get("ACR Codes") and row["figure_part"] == original.get("Figure Part")
