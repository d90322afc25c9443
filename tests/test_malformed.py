"""Malformed side files and pipeline bugs: a clear error or reject naming the file, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build, rejects, run_cli, shard_rows, write_manifest
from PIL import Image

from builder.errors import ManifestError
from builder.pipeline.sources.manifest import load_manifest


def _pngs(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(folder / f"{name}.png")


def test_yaml_aliases_are_refused_before_they_expand(tmp_path: Path) -> None:
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
                                                       for p, c in zip("abcdefgh", "bcdefghi")]
    path = tmp_path / "sources.yaml"
    path.write_text("\n".join(laughs) + "\nsources:\n  - name: s\n    format: image\n    images: '*.png'\n"
                    "    modality: ct\n    license: *i\n")
    with pytest.raises(ManifestError, match="not accepted"):
        load_manifest(path)
    result = run_cli("build", path, "--out", tmp_path / "out", ok=False)
    assert result.exit_code != 0 and "sources.yaml" in result.output and "Traceback" not in result.output


def test_a_mistyped_key_says_what_was_meant_and_modalities_take_any_case(tmp_path: Path) -> None:
    _pngs(tmp_path / "img", ["a"])
    path = write_manifest(tmp_path, {"name": "s", "format": "image", "images": "img/*.png", "modality": "MRI",
                                     "mask": "img/*_mask.png"})
    with pytest.raises(ManifestError, match="did you mean 'masks'"):
        load_manifest(path)
    path = write_manifest(tmp_path, {"name": "s", "format": "image", "images": "img/*.png", "modality": "MRI"})
    assert load_manifest(path).sources[0].modality == "mri"


def test_an_unterminated_quote_rejects_only_its_own_row(tmp_path: Path) -> None:
    _pngs(tmp_path / "img", ["p1", "p2", "p3", "p4"])
    (tmp_path / "meta.csv").write_text('image,finding\np1,nodule\np2,"mass, left\np3,cyst\np4,effusion\n')
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "s", "format": "image", "images": "img/*.png", "modality": "xray",
                                    "metadata": "meta.csv", "disease": "{finding}"}), out)
    lines = rejects(out)
    assert any("meta.csv:3" in line["file"] and "malformed CSV" in line["reason"] for line in lines)
    assert [line["file"] for line in lines if line["stage"] == "listing"] == ["img/p2.png"]
    assert sorted(r["disease"] for r in shard_rows(out, "xray")) == ["cyst", "effusion", "nodule"]


def test_a_blank_group_key_is_a_reject_unless_the_manifest_names_a_policy(tmp_path: Path) -> None:
    _pngs(tmp_path / "img", ["a", "b", "c"])
    (tmp_path / "meta.csv").write_text("image,patient\na,P1\nb,\nc,P2\n")
    entry = {"name": "s", "format": "image", "images": "img/*.png", "modality": "xray", "metadata": "meta.csv",
             "split": {"by": "{patient}", "ratios": {"train": 0.5, "test": 0.5}}}
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, entry), out)
    (line,) = rejects(out)
    assert line["file"] == "img/b.png" and "blank" in line["reason"]
    assert summary["files"] == {"seen": 3, "accepted": 2, "rejected": 1, "skipped": 0}
    entry["split"]["blank"] = "file"
    assert build(write_manifest(tmp_path, entry), tmp_path / "kept")["files"]["accepted"] == 3


def _medpix(root: Path) -> None:
    _pngs(root / "images", ["MPX1_synpic1", "MPX1_synpic2", "MPX1_synpic3"])
    good = {"Type": "CT", "U_id": "MPX1", "Location": "Abdomen", "Location Category": "Abdomen",
            "Description": {"Caption": "a scan", "Modality": "CT w/contrast", "Plane": "Axial"}}
    lines = [json.dumps(dict(good, image="MPX1_synpic1")), "{not json", json.dumps(["a", "list"]),
             json.dumps(dict(good, image="MPX1_synpic3")), json.dumps(dict(good, image="../../etc/passwd"))]
    (root / "descriptions_test.jsonl").write_text("\n".join(lines) + "\n")
    (root / "data_test.jsonl").write_text(json.dumps({"U_id": "MPX1", "Case": "not an object"}) + "\n[1]\n")


def test_malformed_medpix_lines_are_rejects_and_the_rest_builds(tmp_path: Path) -> None:
    _medpix(tmp_path / "mp")
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "medpix", "format": "medpix", "root": "mp"}), out)
    reasons = {line["reason"] for line in rejects(out)}
    assert any("line 2 is not JSON" in r for r in reasons) and any("entry 3 is not a JSON object" in r
                                                                  for r in reasons)
    assert any("not a plain file name" in r for r in reasons) and any("entry 2" in r for r in reasons)
    assert summary["rows"]["total"] == 2


def test_audit_against_a_folder_with_a_decompression_bomb_skips_it(tmp_path: Path) -> None:
    _pngs(tmp_path / "img", ["a", "b"])
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "s", "format": "image", "images": "img/*.png", "modality": "xray"}),
          out)
    bench = tmp_path / "bench"
    bench.mkdir()
    Image.new("1", (20_000, 20_000)).save(bench / "bomb.png")
    (bench / "a.png").write_bytes((tmp_path / "img" / "a.png").read_bytes())
    report = json.loads(run_cli("audit", out, "--against", bench, "--json").stdout)
    assert [s["id"] for s in report["skipped"]] == ["bench:bomb.png"]
    assert report["exact"] and "bench:a.png" in report["exact"][0]


def test_a_pipeline_bug_is_a_reject_and_a_failed_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.pipeline.sources.image import ImageSource

    original = ImageSource.records

    def buggy(self: ImageSource, unit):  # type: ignore[no-untyped-def]
        if unit.image.stem == "bug":
            raise ZeroDivisionError("division by zero")
        return original(self, unit)

    monkeypatch.setattr(ImageSource, "records", buggy)
    _pngs(tmp_path / "img", ["bug", "fine"])
    out = tmp_path / "out"
    result = run_cli("build", write_manifest(tmp_path, {"name": "s", "format": "image", "images": "img/*.png",
                                                        "modality": "xray"}),
                     "--out", out, "--quiet", "--workers", "1", ok=False)
    assert result.exit_code != 0 and "internal error" in result.output
    assert len(shard_rows(out, "xray")) == 1  # the rest was built and published
    (line,) = rejects(out)
    assert line["stage"] == "internal" and "ZeroDivisionError" in line["reason"]
