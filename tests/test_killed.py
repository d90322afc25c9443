"""A build killed at any moment, publishing included, finishes when run again, with the shards of an uninterrupted
build: each kill point below stops the build's process as ``kill -9`` does (no clean-up of any kind)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_manifest
from PIL import Image

#: Code run before the build's command: it arms one kill point (``point``, the ``nth`` time it is reached).
ARM = """
import os, sys
from pathlib import Path
point, nth = sys.argv[1], int(sys.argv[2])
reached = [0]
def reach():
    reached[0] += 1
    if reached[0] == nth:
        os._exit(137)
import builder.pipeline.build.finish as finish
import builder.pipeline.build.journal as journal
if point == "replace":  # every rename of publishing: the plan, each shard, build.json
    real_replace = os.replace
    def replace(a, b):
        reach()
        real_replace(a, b)
        reach()
    journal.os.replace = replace
elif point == "write":  # half of a published or local text file written (rejects, provenance, the card)
    real_write = Path.write_text
    def write_text(self, text, *args, **kwargs):
        real_write(self, text[: len(text) // 2], *args, **kwargs)
        reach()
        return real_write(self, text, *args, **kwargs)
    Path.write_text = write_text
    real_jsonl = finish._jsonl
    def jsonl(path, lines):
        real_jsonl(path, lines[: len(lines) // 2])
        reach()
        real_jsonl(path, lines)
    finish._jsonl = jsonl
elif point == "remove":  # the journal half removed
    real_remove = journal.Journal.remove
    def remove(self):
        (self.root / "journal.jsonl").unlink()
        reach()
        real_remove(self)
    journal.Journal.remove = remove
from builder.cli import main
main(sys.argv[3:], standalone_mode=True)
"""


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("killed-src")
    rng = np.random.default_rng(3)
    entries = []
    for modality in ("xray", "fundus"):
        folder = root / modality
        folder.mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 255, (24, 30), dtype=np.uint8)).save(folder / f"img{i}.png")
        (folder / "broken.png").write_bytes(b"\x89PNG not really")
        entries.append({"name": modality, "format": "image", "images": f"{modality}/*.png", "modality": modality,
                        "split": {"by": "{stem}", "ratios": {"train": 0.5, "test": 0.5}}})
    return write_manifest(root, *entries)


def _command(manifest: Path, out: Path) -> list[str]:
    return ["build", str(manifest), "--out", str(out), "--workers", "1", "--quiet", "--format", "both",
            "--shard-rows", "2", "--shard-units", "4"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def _shards(out: Path) -> list[tuple[str, str]]:
    doc = json.loads((out / "build.json").read_text())
    return [(s["path"], s["sha256"]) for s in doc["shards"]]


@pytest.fixture(scope="module")
def reference(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    out = tmp_path_factory.mktemp("killed-ref") / "out"
    done = _run("-m", "builder", *_command(manifest, out))
    assert done.returncode == 0, done.stderr
    return _shards(out)


KILL_POINTS = [("replace", n) for n in (1, 2, 3, 6, 11, 20, 21, 22)] + \
              [("write", n) for n in (1, 2, 3)] + [("remove", 1)]


@pytest.mark.parametrize(("point", "nth"), KILL_POINTS)
def test_a_build_killed_while_publishing_finishes_when_run_again(manifest: Path, reference: list, tmp_path: Path,
                                                                  point: str, nth: int) -> None:
    out = tmp_path / "out"
    killed = _run("-c", ARM, point, str(nth), *_command(manifest, out))
    assert killed.returncode == 137, f"kill point {point} #{nth} was not reached: {killed.stderr[-2000:]}"
    again = _run("-m", "builder", *_command(manifest, out))
    assert again.returncode == 0, again.stderr[-3000:]
    assert _shards(out) == reference
    assert not (out / ".build").exists()
    verified = _run("-m", "builder", "verify", str(out))
    assert verified.returncode == 0, verified.stdout + verified.stderr
