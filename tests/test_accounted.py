"""Every input accounted: annotations are never dropped while their image is published as unannotated, tables are
read as what they are, and published reject lines hold nothing of the user's tables."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import build, published_rejects, real_files, rejects, run_cli, write_manifest
from PIL import Image


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _image(seed: int, shape: tuple[int, int] = (32, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _mask(shape: tuple[int, int] = (32, 40)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[4:12, 6:20] = 1
    return mask


def _rows(out: Path) -> dict[str, dict]:
    """Input file -> its row (one row per 2D input here), read straight from the shards."""
    files = real_files(out)
    found = {}
    for path in sorted((out / "data").glob("*/*.parquet")):
        for row in pq.read_table(path, columns=["id", "rois", "mask"]).to_pylist():
            found[files[row["id"]]] = row
    return found


def _source(**keys: object) -> dict:
    return {"name": "s", "format": "image", "modality": "xray", "labels": {1: "lesion"}, **keys}


def test_a_missing_single_mask_file_stops_the_build_before_any_work(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "a.png", _image(0))
    for key in ("masks", "boxes"):
        manifest = write_manifest(tmp_path, _source(images="img/*.png", **{key: "img/typo.png"}))
        result = run_cli("build", manifest, "--out", tmp_path / "out", "--quiet", ok=False)
        assert result.exit_code != 0 and f"sources[0].{key}" in result.output and "not found" in result.output
        assert not (tmp_path / "out").exists()
    manifest = write_manifest(tmp_path, _source(images="img/*.png", masks="seg/*_mask.png"))
    result = run_cli("build", manifest, "--out", tmp_path / "out", "--quiet", ok=False)
    assert result.exit_code != 0 and "matches no file" in result.output
    assert not (tmp_path / "out").exists()


def test_a_refused_mask_rejects_its_image_with_the_masks_reason(tmp_path: Path) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    for name in "abcde":
        _png(src / "img" / f"{name}.png", _image(ord(name)))
    _png(outside / "secret_mask.png", _mask())
    os.symlink(outside / "secret_mask.png", src / "img" / "a_mask.png")  # out of the source's folder
    _png(src / "img" / "b_mask.png", np.zeros((20, 20), np.uint8))  # not the image's size
    (src / "img" / "c_mask.png").write_bytes(b"not a png")  # unreadable
    os.symlink(src / "nowhere.png", src / "img" / "d_mask.png")  # a broken link
    _png(src / "img" / "e_mask.png", _mask())  # the one good mask
    manifest = write_manifest(src, _source(images="img/*.png", masks="img/*_mask.png"))
    out = tmp_path / "out"
    summary = build(manifest, out, "--workers", "1")
    rows = _rows(out)
    # masks are never dataset images, even though the images glob matches them
    assert set(rows) == {"img/e.png"} and rows["img/e.png"]["rois"] and rows["img/e.png"]["mask"]
    lines = {line["file"]: line for line in rejects(out)}
    assert {name: lines[f"img/{name}.png"]["stage"] for name in "abcd"} == {
        "a": "path", "b": "mask", "c": "mask", "d": "mask"}
    assert "its mask" in lines["img/a.png"]["reason"] and "b_mask.png is 20x20" in lines["img/b.png"]["reason"]
    assert summary["files"] == {"seen": 5, "accepted": 1, "rejected": 4, "skipped": 0}


def test_two_images_sharing_a_stem_and_a_mask_are_an_ambiguous_pairing(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "b.png", _image(1))
    _png(tmp_path / "img" / "b.jpg", _image(2))
    _png(tmp_path / "img" / "b_mask.png", _mask())
    _png(tmp_path / "img" / "c.png", _image(3))
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, _source(images="img/*.*", masks="img/*_mask.png", unmasked="keep")), out)
    assert set(_rows(out)) == {"img/c.png"}
    ambiguous = [line for line in rejects(out) if "ambiguous" in line["reason"]]
    assert sorted(line["file"] for line in ambiguous) == ["img/b.jpg", "img/b.png"]
    for line in ambiguous:  # each line names both images and the mask
        assert all(name in line["reason"] for name in ("img/b.png", "img/b.jpg", "img/b_mask.png"))
    assert summary["files"] == {"seen": 3, "accepted": 1, "rejected": 2, "skipped": 0}
    for line in published_rejects(out):  # published: no input name
        assert "b_mask" not in line["reason"] and "b.jpg" not in line["reason"]


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def test_csv_is_read_as_csv_quoted_line_breaks_and_a_byte_order_mark(tmp_path: Path) -> None:
    for name in "abc":
        _png(tmp_path / "img" / f"{name}.png", _image(ord(name)))
    table = [["image", "finding", "note"], ["a.png", "multi\nline finding", "x"], ["b.png", 'a "quoted", word', "y"]]
    text = "\ufeff" + _csv_text(table) + 'c.png,"never closed,z\r\n'
    (tmp_path / "meta.csv").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    manifest = write_manifest(tmp_path, _source(images="img/*.png", metadata="meta.csv", disease="{finding}",
                                                labels=None))
    summary = build(manifest, out)
    expected = {row[0]: row[1] for row in csv.reader(io.StringIO(text.lstrip("\ufeff").split("c.png")[0]))}
    files = real_files(out)
    diseases = {files[r["id"]]: r["disease"] for p in (out / "data").glob("*/*.parquet")
                for r in pq.read_table(p, columns=["id", "disease"]).to_pylist()}
    assert diseases == {"img/a.png": expected["a.png"], "img/b.png": expected["b.png"]}
    # the unclosed quote is its own line's fault (line 5: the quoted line break moved it down): c is rejected alone
    assert [line["file"] for line in rejects(out) if line["stage"] == "listing"] == ["img/c.png"]
    assert any("line 5" in line["reason"] and "malformed" in line["reason"] for line in rejects(out))
    assert summary["files"] == {"seen": 3, "accepted": 2, "rejected": 1, "skipped": 0}


def test_side_tables_that_link_out_of_the_manifests_folder_are_refused(tmp_path: Path) -> None:
    src, outside = tmp_path / "src", tmp_path / "outside"
    _png(src / "img" / "a.png", _image(0))
    outside.mkdir()
    (outside / "patients.csv").write_text("image,finding\na.png,secret diagnosis\n")
    (outside / "labels.txt").write_text("1 lesion\n")
    os.symlink(outside / "patients.csv", src / "meta.csv")
    os.symlink(outside / "labels.txt", src / "labels.txt")
    for key, value in (("metadata", "meta.csv"), ("labels_file", "labels.txt")):
        manifest = write_manifest(src, {**_source(images="img/*.png", labels=None), key: value})
        result = run_cli("build", manifest, "--out", tmp_path / "out", "--quiet", ok=False)
        assert result.exit_code != 0 and "resolves outside the manifest's folder" in result.output, result.output
        assert result.output.count("manifest key") == 1  # the key is named once, not twice
        assert not (tmp_path / "out").exists()
    # given as what it is, an absolute path, the table is read
    manifest = write_manifest(src, _source(images="img/*.png", metadata=str(outside / "patients.csv"), labels=None))
    assert build(manifest, tmp_path / "out")["files"]["accepted"] == 1


def test_metadata_rows_naming_no_image_leave_their_keys_in_the_local_log_only(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "a.png", _image(0))
    (tmp_path / "meta.csv").write_text("image,finding\na.png,x\nMRN0012345,y\nMRN0012345,z\n")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, _source(images="img/*.png", metadata="meta.csv", labels=None)), out)
    local = rejects(out)
    assert any("MRN0012345" in line["file"] for line in local)  # the person who ran the build can find the row
    published = (out / "rejects.jsonl").read_text()
    assert "MRN0012345" not in published and published.strip()  # lines remain, naming the table and the line
    assert {json.loads(line)["file"] for line in published.splitlines()} <= {"s:metadata:3", "s:metadata:4"}


def test_a_top_level_typo_gets_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("source:\n  - name: a\n")
    result = run_cli("build", path, "--out", tmp_path / "out", "--quiet", ok=False)
    assert result.exit_code != 0 and "did you mean 'sources'?" in result.output


@pytest.mark.parametrize("extra", [(), ("--workers", "2")])
def test_a_source_matching_nothing_leaves_no_folder_behind(tmp_path: Path, extra: tuple[str, ...]) -> None:
    manifest = write_manifest(tmp_path, _source(images="nothing/*.png", labels=None))
    result = run_cli("build", manifest, "--out", tmp_path / "out", "--quiet", *extra, ok=False)
    assert result.exit_code != 0 and "matches no input file" in result.output
    assert not (tmp_path / "out").exists()
