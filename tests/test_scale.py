"""Parallel, resumable, distributed builds: same rows whatever runs them or stops them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import build, write_manifest
from PIL import Image

N_IMAGES = 240


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 images with masks in three modalities, and two broken files."""
    root = tmp_path_factory.mktemp("scale-src")
    rng = np.random.default_rng(7)
    entries = []
    for modality in ("xray", "dermoscopy", "fundus"):
        folder = root / modality
        folder.mkdir()
        for i in range(N_IMAGES // 3):
            size = int(rng.integers(48, 96))
            pixels = rng.integers(0, 255, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
            mask = np.zeros((size, size), np.uint8)
            mask[5:5 + i % 20 + 3, 8:20] = 1
            Image.fromarray(mask).save(folder / f"img{i:03d}_mask.png")
        (folder / "broken.png").write_bytes(b"\x89PNG broken")
        entries.append({"name": f"synthetic-{modality}", "format": "image", "images": f"{modality}/img???.png",
                        "masks": f"{modality}/*_mask.png", "modality": modality, "labels": {1: "region"}})
        entries[-1]["images"] = f"{modality}/*[0-9n].png"  # img000.png ... and broken.png, not masks
    return write_manifest(root, *entries)


def _rows(out: Path) -> dict[str, list[tuple]]:
    """Per config: (id, caption, image bytes, mask bytes) sorted by id."""
    rows: dict[str, list[tuple]] = {}
    for path in sorted((out / "data").glob("*/*.parquet")):
        for row in pq.read_table(path).to_pylist():
            mask = row["mask"]["bytes"] if row["mask"] else None
            rows.setdefault(row["modality"], []).append((row["id"], row["caption"], row["image"]["bytes"], mask))
    return {k: sorted(v) for k, v in rows.items()}


@pytest.fixture(scope="module")
def reference(sources: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("scale") / "one-worker"
    build(sources, out, "--workers", "1", "--shard-units", "16")
    return out, _rows(out)


def test_one_and_two_workers_give_identical_rows(sources: Path, reference: tuple[Path, dict],
                                                 tmp_path: Path) -> None:
    out = tmp_path / "two-workers"
    summary = build(sources, out, "--workers", "2", "--shard-units", "16")
    assert _rows(out) == reference[1]
    assert summary["files"] == {"seen": N_IMAGES + 3, "accepted": N_IMAGES, "rejected": 3, "skipped": 0}
    first = json.loads((reference[0] / "build.json").read_text())
    assert [(s["path"], s["sha256"]) for s in summary["shards"]] == [(s["path"], s["sha256"]) for s in first["shards"]]
    assert not (out / ".build").exists()


def _build_cmd(manifest: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out), "--workers", "2",
            "--shard-units", "16", "--quiet"]


def _journal_groups(out: Path) -> int:
    path = out / ".build" / "journal.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("kill_after_groups", [0, 3, 9])
def test_kill_9_then_resume_gives_the_rows_of_an_uninterrupted_build(
        sources: Path, reference: tuple[Path, dict], tmp_path: Path, kill_after_groups: int) -> None:
    out = tmp_path / "killed"
    process = subprocess.Popen(_build_cmd(sources, out), start_new_session=True)
    deadline = time.monotonic() + 120
    while _journal_groups(out) < kill_after_groups + 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the build and its workers, mid-flight
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (out / "build.json").exists(), "killed too late"
    assert _journal_groups(out) >= kill_after_groups
    # nothing partial is visible: data/ is written only when every group is done
    for path in out.rglob("*.parquet"):
        assert ".build" in path.parts or pq.read_metadata(path).num_rows > 0
    assert not list((out / "data").glob("*/*.parquet")) or (out / "build.json").exists()
    resumed = subprocess.run(_build_cmd(sources, out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert _rows(out) == reference[1]
    summary = json.loads((out / "build.json").read_text())
    assert summary["files"] == {"seen": N_IMAGES + 3, "accepted": N_IMAGES, "rejected": 3, "skipped": 0}
    lines = (out / "rejects.jsonl").read_text().splitlines()
    assert len(lines) == 3 and len(set(lines)) == 3


def test_a_finished_build_is_not_redone_and_settings_must_match(sources: Path, reference: tuple[Path, dict],
                                                                tmp_path: Path) -> None:
    from conftest import run_cli

    again = run_cli("build", sources, "--out", reference[0], "--workers", "1", "--shard-units", "16", ok=False)
    assert again.exit_code != 0 and "--overwrite" in again.output
    out = tmp_path / "changed"
    (out / ".build").mkdir(parents=True)
    (out / ".build" / "state.json").write_text(json.dumps({"manifest": "another"}))
    changed = run_cli("build", sources, "--out", out, "--workers", "1", ok=False)
    assert changed.exit_code != 0 and "other settings" in changed.output


def test_ray_engine_gives_the_same_rows(sources: Path, reference: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="--engine ray needs the ray extra")
    out = tmp_path / "ray"
    done = subprocess.run([sys.executable, "-m", "builder", "build", str(sources), "--out", str(out),
                           "--engine", "ray", "--workers", "2", "--shard-units", "16", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _rows(out) == reference[1]
    assert json.loads((out / "build.json").read_text())["options"]["engine"] == "ray"


def test_a_two_node_ray_cluster_builds_the_rows_of_a_local_build(sources: Path, reference: tuple[Path, dict],
                                                                tmp_path: Path) -> None:
    """``ray start --head`` and a second ``ray start --address`` on this machine; the build joins with
    ``--ray-address``, its units land on both nodes, its driver writes every shard: byte for byte a local build's."""
    pytest.importorskip("ray", reason="--engine ray needs the ray extra")
    from ray_cluster import RESOURCE, LocalCluster

    out = tmp_path / "cluster"
    with contextlib.ExitStack() as stack:
        try:  # a cluster that cannot start has ended its own processes
            cluster = stack.enter_context(LocalCluster(tmp_path / "ray-logs"))
        except RuntimeError as exc:
            pytest.skip(f"Ray cannot start a cluster here: {str(exc)[:500]}")
        ray = ["--engine", "ray", "--ray-address", cluster.address, "--ray-resource", RESOURCE]
        done = subprocess.run(_build_cmd(sources, out) + ray, env=cluster.env, capture_output=True, text=True,
                              timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "build.json").read_text())
    per_node = summary["engine"]["units_per_node"]
    assert len(per_node) == 2 and min(per_node) > 0 and sum(per_node) >= N_IMAGES  # both nodes ran units
    assert _rows(out) == reference[1]
    first = json.loads((reference[0] / "build.json").read_text())
    assert [(s["path"], s["sha256"]) for s in summary["shards"]] == [(s["path"], s["sha256"]) for s in first["shards"]]


def test_ray_serves_a_model_describer_from_actors(sources: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="--engine ray needs the ray extra")
    from llm_server import ChatServer

    keys = ("modality", "organ_detection", "roi_analysis", "texture", "region_relationship")
    def answer(request: dict) -> str:
        time.sleep(0.1)  # long enough for the calls to overlap
        return json.dumps({k: f"{k} text" for k in keys})

    with ChatServer(answer) as server:
        out = tmp_path / "ray-llm"
        done = subprocess.run([sys.executable, "-m", "builder", "build", str(sources), "--out", str(out),
                               "--engine", "ray", "--workers", "2", "--describer", "openai",
                               "--describer-actors", "2", "--llm-base-url", server.url, "--llm-model", "m",
                               "--quiet"], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "build.json").read_text())
    assert summary["describer"]["ray_actors"] == 2 and summary["rows"]["total"] == N_IMAGES
    assert len(server.requests) == N_IMAGES
    assert server.peak == 2 and summary["model_stage"]["peak_in_flight"] == 2  # both actors kept busy, never more


def test_task_size_follows_a_warm_worker_at_once_and_a_slower_pace_gradually() -> None:
    from builder.pipeline.engines.local import MAX_TASK_UNITS, TASK_SECONDS, _TaskSize

    size = _TaskSize()
    assert size.next() == 1  # nothing known yet: one unit
    size.seen(1, 0.065)  # a fresh worker's first unit pays its imports
    size.seen(1, 0.001)  # then the units' real pace, taken at once
    assert size.next() == int(TASK_SECONDS / 0.001)
    size.seen(10, 0.02)  # twice as slow: the estimate moves a third of the way
    assert size.next() == int(TASK_SECONDS / (0.7 * 0.001 + 0.3 * 0.002))
    size.seen(1, 0.5)  # a slow unit (a volume) among small ones: one unit a task
    assert size.next() == 1
    size.seen(100, 0.0001)
    assert size.next() == MAX_TASK_UNITS


CLUSTER_RESOURCES = """
import json, ray
from builder.pipeline.engines.ray import RayPool
from builder.pipeline.process import TripletOptions
RayPool(TripletOptions(), 1)
print(json.dumps(sorted(ray.cluster_resources())))
"""


def test_a_ray_build_without_an_address_never_joins_another_cluster(tmp_path: Path) -> None:
    """``ray.init()`` with no address joins the cluster started last on the machine (``ray start``): another build's
    workers, running another checkout's code with other settings. A build without --ray-address has a Ray of its own."""
    pytest.importorskip("ray", reason="--engine ray needs the ray extra")
    ray_cli = Path(sys.executable).parent / "ray"
    if not ray_cli.exists():
        pytest.skip("the ray command is not installed beside this Python")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--num-cpus", "1", "--port", "6391",
                             "--resources", json.dumps({"someone_elses": 1}), "--include-dashboard", "false"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Path("/tmp/ray/ray_current_cluster").exists():
            time.sleep(0.5)
        time.sleep(3)  # the head writes its address, then serves it
        done = subprocess.run([sys.executable, "-c", CLUSTER_RESOURCES], capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).resolve().parent.parent)
        assert done.returncode == 0, done.stderr[-2000:]
        resources = json.loads(done.stdout.splitlines()[-1])
        assert "CPU" in resources and "someone_elses" not in resources
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        current = Path("/tmp/ray/ray_current_cluster")  # the stopped head's address, if still the latest
        if current.exists() and ":6391" in current.read_text():
            current.unlink()
