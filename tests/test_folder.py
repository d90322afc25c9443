"""The output folder: never delete what a build did not write; one build at a time; verify and push exactly it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build, run_cli, write_manifest
from PIL import Image

from builder.pipeline.build.outdir import folder_lock


def _images(folder: Path, n: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 32), dtype=np.uint8)).save(folder / f"img{i}.png")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project folder whose inputs sit in data/raw/, with the user's own README."""
    _images(tmp_path / "data" / "raw")
    (tmp_path / "README.md").write_text("my project notes\n")
    write_manifest(tmp_path, {"name": "raw", "format": "image", "images": "data/raw/*.png", "modality": "xray"})
    return tmp_path


def test_a_build_into_a_project_folder_deletes_nothing(project: Path) -> None:
    before = _tree(project)
    for extra in ((), ("--overwrite",)):
        result = run_cli("build", project / "sources.yaml", "--out", project, "--quiet", "--workers", "1", *extra,
                         ok=False)
        assert result.exit_code != 0
        assert "no build wrote" in result.output and "--overwrite" not in result.output
    assert _tree(project) == before


def test_demo_touches_only_a_new_folder_or_an_earlier_demo(project: Path, tmp_path: Path) -> None:
    before = _tree(project)
    refused = run_cli("demo", "--out", project, "--quiet", "--workers", "1", ok=False)
    assert refused.exit_code != 0 and _tree(project) == before
    other = tmp_path / "built"
    build(project / "sources.yaml", other)
    refused = run_cli("demo", "--out", other, "--quiet", "--workers", "1", ok=False)
    assert refused.exit_code != 0 and "not a demo" in refused.output


def test_overwrite_removes_exactly_what_the_build_wrote(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = build(project / "sources.yaml", out)
    listed = set(first["published"]) | set(first["local"]) | {"build.json"}
    assert set(_tree(out)) == listed
    again = run_cli("build", project / "sources.yaml", "--out", out, "--quiet", ok=False)
    assert again.exit_code != 0 and "--overwrite" in again.output  # only build files here: replacing is safe
    build(project / "sources.yaml", out, "--overwrite")
    (out / "data" / "patients.csv").write_text("name,mrn\nDoe^John,55555\n")
    refused = run_cli("build", project / "sources.yaml", "--out", out, "--quiet", "--overwrite", ok=False)
    assert refused.exit_code != 0 and "data/patients.csv" in refused.output
    assert (out / "data" / "patients.csv").is_file() and (out / "build.json").is_file()


def test_a_hostile_build_json_cannot_make_overwrite_delete_outside(tmp_path: Path, project: Path) -> None:
    out = tmp_path / "out"
    build(project / "sources.yaml", out)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    doc = json.loads((out / "build.json").read_text())
    doc["published"] += ["../victim.txt", str(victim)]
    (out / "build.json").write_text(json.dumps(doc))
    build(project / "sources.yaml", out, "--overwrite")
    assert victim.read_text() == "keep me"


def test_a_second_build_into_a_locked_folder_is_refused(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with folder_lock(out):
        result = run_cli("build", project / "sources.yaml", "--out", out, "--quiet", ok=False)
    assert result.exit_code != 0 and "in use by another build" in result.output
    assert not (out / "build.json").exists()
    build(project / "sources.yaml", out)  # free again
    assert run_cli("verify", out).exit_code == 0


def test_verify_fails_on_any_file_the_build_did_not_list(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(project / "sources.yaml", out)
    (out / "data" / "patients.csv").write_text("secret")
    nested = out / "data" / "xray" / "old"
    nested.mkdir()
    (nested / "train-00000-of-00001.parquet").write_bytes((out / "data" / "xray" /
                                                           "train-00000-of-00001.parquet").read_bytes())
    result = run_cli("verify", out, ok=False)
    assert result.exit_code != 0
    assert "data/patients.csv" in result.output and "data/xray/old/train-00000-of-00001.parquet" in result.output
    plan = run_cli("push", out, "org/x", "--dry-run", ok=False)
    assert plan.exit_code != 0  # push refuses what verify refuses
    (out / "data" / "patients.csv").unlink()
    (nested / "train-00000-of-00001.parquet").unlink()
    nested.rmdir()
    plan = run_cli("push", out, "org/x", "--dry-run")
    paths = {line.strip() for line in plan.output.splitlines() if line.startswith("  ")}
    assert paths == {"README.md", "build.json", "rejects.jsonl", "data/xray/train-00000-of-00001.parquet",
                     "croissant.json", "card/rows.png", "card/rois.png"}  # the card's metadata and charts


def test_malformed_build_json_and_entries_are_problems_not_tracebacks(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(project / "sources.yaml", out)
    doc = json.loads((out / "build.json").read_text())
    broken = dict(doc, shards=[{k: v for k, v in s.items() if k != "sha256"} for s in doc["shards"]])
    (out / "build.json").write_text(json.dumps(broken))
    result = run_cli("verify", out, ok=False)
    assert result.exit_code == 1 and "lacks sha256" in result.output
    (out / "build.json").write_text("{not json")
    result = run_cli("verify", out, ok=False)
    assert result.exit_code == 1 and "build.json: unreadable" in result.output


def test_a_split_named_dot_dot_cannot_make_export_write_outside(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(project / "sources.yaml", out)
    shard = out / "data" / "xray" / "train-00000-of-00001.parquet"
    shard.rename(shard.with_name("..-00000-of-00001.parquet"))
    dest = tmp_path / "exports" / "folder"
    result = run_cli("export", "folder", out, "--out", dest, ok=False)
    assert result.exit_code != 0 and "plain" in result.output
    assert not any((tmp_path / "exports").rglob("*.png"))


def test_a_source_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path, {"name": "empty", "format": "image", "images": "nothing/*.png",
                                         "modality": "xray"})
    result = run_cli("build", manifest, "--out", tmp_path / "out", "--quiet", ok=False)
    assert result.exit_code != 0 and "'empty'" in result.output and "nothing/*.png" in result.output
