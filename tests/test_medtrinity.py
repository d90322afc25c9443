"""format: medtrinity: the official MedTrinity-25M release read as published, re-sharded by modality."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MEDPIX, build, need, published_rejects, run_cli, shard_rows, write_manifest
from medtrinity_replica import Replica, make_demo, make_full


def _images(count: int) -> list[Path]:
    return sorted((need(MEDPIX / "test") / "images").glob("*.png"))[:count]


def _iou(a: list[float], b: tuple[int, int, int, int]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _recovered(rows: list[dict], replica: Replica, key: str) -> tuple[int, int, int]:
    """(drawn boxes found at IoU >= 0.9, drawn boxes, boxes found that match none), computed here."""
    found = total = false = 0
    for row in rows:
        truth = replica.rows[row[key]]["boxes"]
        boxes = [r["bbox"] for r in row["rois"] if r["origin"] == "recovered"]
        total += len(truth)
        hits = sum(any(_iou(b, t) >= 0.9 for b in boxes) for t in truth)
        found += hits
        false += sum(not any(_iou(b, t) >= 0.5 for t in truth) for b in boxes)
    return found, total, false


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Replica, Path, dict]:
    root = tmp_path_factory.mktemp("release") / "MedTrinity-25M"
    replica = make_demo(root, _images(15))
    out = root.parent / "out"
    summary = build(write_manifest(root.parent, {"name": "medtrinity", "format": "medtrinity", "root": str(root),
                                                 "subset": "25M_demo"}), out, "--workers", "2")
    return replica, out, summary


def test_demo_rows_keep_bytes_captions_and_ids_in_their_modality_config(demo: tuple[Replica, Path, dict]) -> None:
    replica, out, summary = demo
    rows = shard_rows(out, columns=["id", "image", "caption", "modality", "source_file", "rois", "record"])
    assert {r["id"] for r in rows} == set(replica.rows)  # the official ids
    for row in rows:
        expected = replica.rows[row["id"]]
        assert row["image"]["bytes"] == expected["bytes"]  # the JPEG as published, not re-encoded
        assert row["caption"] == expected["caption"]  # verbatim
        assert row["modality"] == expected["modality"]
        assert json.loads(row["record"])["caption"] == expected["caption"]
    for modality in {r["modality"] for r in replica.rows.values()}:
        ids = {r["id"] for r in shard_rows(out, modality, columns=["id"])}
        assert ids == {i for i, r in replica.rows.items() if r["modality"] == modality}
    rejected = published_rejects(out)
    assert {line["id"] for line in rejected} == set(replica.undecided)
    assert all(line["stage"] == "modality" for line in rejected)
    notes = summary["notes"]
    decided = notes["modality decided by the caption"]  # the demo has no source column
    assert decided == len(replica.rows)
    found, total, false = _recovered(rows, replica, "id")
    assert found >= 0.9 * total and false <= 0.05 * total
    card = (out / "README.md").read_text()
    assert "cc-by-nc-sa-4.0" in card and "research only" in card  # the release's licence and gating terms
    assert "modality decided by the caption" in card
    run_cli("verify", str(out))


def test_restore_pixels_paints_the_outlines_out_and_keeps_the_original(tmp_path: Path) -> None:
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    root = tmp_path / "MedTrinity-25M"
    replica = make_demo(root, _images(8), seed=3)
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "medtrinity", "format": "medtrinity", "root": str(root),
                                              "subset": "25M_demo"}), out, "--restore-pixels", "--format", "both")
    assert summary["options"]["triplets.restore_pixels"] is True
    rows = shard_rows(out, columns=["id", "image", "restored", "rois"])
    restored = [r for r in rows if r["restored"]]
    assert restored and all(r["restored"] is None for r in rows if not any(
        roi["origin"] == "recovered" for roi in r["rois"]))
    before = after = 0.0
    for row in restored:
        expected = replica.rows[row["id"]]
        assert row["image"]["bytes"] == expected["bytes"]  # the original is kept, as published
        drawn = np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB")).astype(int)
        clean = np.asarray(Image.open(io.BytesIO(row["restored"]["bytes"]))).astype(int)
        truth = np.stack([expected["gray"]] * 3, -1).astype(int)  # the pixels before the outlines were drawn
        assert clean.shape == drawn.shape
        band = np.zeros(drawn.shape[:2], bool)
        for x0, y0, x1, y1 in expected["boxes"]:
            band[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = True
        inner = band.copy()
        for x0, y0, x1, y1 in expected["boxes"]:
            inner[y0 + 4:y1 - 4, x0 + 4:x1 - 4] = False
        far = np.ones_like(band)
        for x0, y0, x1, y1 in expected["boxes"]:
            far[max(0, y0 - 12):y1 + 12, max(0, x0 - 12):x1 + 12] = False
        assert np.array_equal(clean[far], drawn[far])  # away from the outlines nothing changes
        green = (clean[..., 1] - np.maximum(clean[..., 0], clean[..., 2]) >= 50) & inner
        assert not green.any()
        before += np.abs(drawn - truth)[inner].mean()
        after += np.abs(clean - truth)[inner].mean()
    assert after < 0.5 * before  # the sides come back close to the pixels under them
    members = []
    for tar in (out / "webdataset").rglob("*.tar"):
        with tarfile.open(tar) as handle:
            members += handle.getnames()
    assert sum(name.endswith(".restored.png") for name in members) == len(restored)
    run_cli("verify", str(out))


def test_full_layout_joins_shards_and_accounts_for_every_input(tmp_path: Path) -> None:
    root = tmp_path / "MedTrinity-25M"
    replica = make_full(root, _images(36))
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "medtrinity", "format": "medtrinity", "root": str(root),
                                              "subset": "25M_full"}), out, "--workers", "2")
    rows = shard_rows(out, columns=["id", "image", "caption", "modality", "source", "source_file", "rois"])
    assert sorted(r["source_file"] for r in rows) == sorted(replica.rows)  # every row whose image exists
    for row in rows:
        expected = replica.rows[row["source_file"]]
        assert row["image"]["bytes"] == expected["bytes"] and row["caption"] == expected["caption"]
        assert row["modality"] == expected["modality"]
        if expected["id"]:
            assert row["id"] == expected["id"]
    assert {r["source"] for r in rows} >= {"deeplesion", "brats24", "pmc_oa"}  # the official source, filterable
    lines = published_rejects(out)
    reasons = " ".join(line["reason"] for line in lines)
    for name in replica.missing:
        assert f"{name}: its image is in no shard" in reasons, name
    for name in replica.orphans:
        assert f"member {name} has no caption row" in reasons, name
    for shard, whole in replica.truncated.items():
        assert f"{shard}: shard truncated after {whole} member(s)" in reasons
    assert len(rows) + len(replica.missing) + len(replica.orphans) + len(replica.truncated) == len(lines) + len(rows)
    notes = summary["notes"]
    assert notes["modality decided by the source table"] > 0 and notes["modality decided by the caption"] > 0
    assert notes["modality: source table says ct, caption says mri"] > 0
    found, total, false = _recovered(rows, replica, "source_file")
    assert found >= 0.9 * total and false <= 0.05 * total
    run_cli("verify", str(out))
    if importlib.util.find_spec("duckdb"):  # the catalog filters on the official source
        found = json.loads(run_cli("query", str(out), "SELECT source, count(*) AS n FROM samples GROUP BY source",
                                   "--output", "json").stdout)
        assert {r["source"]: r["n"] for r in found} == {
            s: sum(r["source"] == s for r in rows) for s in {r["source"] for r in rows}}
    export = tmp_path / "llava"
    run_cli("export", "llava", str(out), "--out", str(export))
    assert len(json.loads(next(export.glob("*.json")).read_text())) == len(rows)


def test_a_full_release_build_killed_with_9_resumes_to_the_same_rows(tmp_path: Path) -> None:
    import signal
    import time

    root = tmp_path / "MedTrinity-25M"
    make_full(root, _images(60), count=8)
    manifest = write_manifest(tmp_path, {"name": "medtrinity", "format": "medtrinity", "root": str(root),
                                         "subset": "25M_full"})
    reference = tmp_path / "reference"
    build(manifest, reference, "--shard-units", "1")
    command = [sys.executable, "-m", "builder", "build", str(manifest), "--out", str(tmp_path / "killed"),
               "--workers", "2", "--shard-units", "1", "--quiet"]
    journal = tmp_path / "killed" / ".build" / "journal.jsonl"
    process = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline and (
            not journal.exists() or len(journal.read_text().splitlines()) < 2):
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the build and its workers, between shards
    process.wait()
    assert process.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "build.json").exists()
    assert journal.read_text().splitlines()  # some shards were done before the kill: the resume skips them
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    columns = ["id", "image", "caption", "modality", "source_file", "rois"]
    key = lambda row: row["id"]  # noqa: E731
    assert sorted(shard_rows(tmp_path / "killed", columns=columns), key=key) == \
        sorted(shard_rows(reference, columns=columns), key=key)
    lines = sorted(json.dumps(line, sort_keys=True) for line in published_rejects(tmp_path / "killed"))
    assert lines == sorted(json.dumps(line, sort_keys=True) for line in published_rejects(reference))
    assert len(lines) == len(set(lines))  # no reject line twice


def test_streams_the_release_from_the_hub(tmp_path: Path) -> None:
    from hub_server import HubServer, Repo

    source = tmp_path / "snapshot"
    replica = make_demo(source, _images(6))
    with HubServer(tmp_path / "hub", "hf_test") as hub:
        repo = Repo(tmp_path / "hub" / "release", "UCSC-VLAA/MedTrinity-25M", private=False)
        hub.repos["datasets/UCSC-VLAA/MedTrinity-25M"] = repo
        shutil.copytree(source, repo.files, dirs_exist_ok=True)
        manifest = write_manifest(tmp_path, {"name": "medtrinity", "format": "medtrinity",
                                             "root": "hf://datasets/UCSC-VLAA/MedTrinity-25M", "subset": "25M_demo"})
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_TOKEN="hf_test", HF_HOME=str(tmp_path / "home"),
                   HF_HUB_DISABLE_TELEMETRY="1")
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert any("/resolve/" in path for _, path in hub.requests)  # the bytes came from the Hub server
    rows = shard_rows(out, columns=["id", "image", "caption"])
    assert {r["id"] for r in rows} == set(replica.rows)
    assert all(r["image"]["bytes"] == replica.rows[r["id"]]["bytes"] for r in rows)


@pytest.mark.parametrize(("caption", "modality"), [
    ("The image is a non-contrasted computed tomography (CT) scan of the brain, showing ...", "ct"),
    ("This chest X-Ray image, taken from the PA position, shows ...", "xray"),
    ("The image is a magnetic resonance imaging (MRI) scan of the brain, axial view.", "mri"),
    ("An axial T2-weighted image of the knee. A tear is seen.", "mri"),
    ("A PET/CT fusion image of the thorax shows uptake.", "pet"),
    ("A microscopic image of H&E-stained breast tissue shows ducts.", "pathology"),
    ("A transabdominal sonogram of the gallbladder shows stones.", "ultrasound"),
    ("A dermoscopic image of a pigmented lesion.", "dermoscopy"),
    ("A colonoscopy image showing a polyp.", "endoscopy"),
    ("A color fundus photograph of the left eye.", "fundus"),
    ("A bar chart comparing the groups. The CT values are listed.", None),  # the first sentence names none
    ("An optical coherence tomography scan of the macula.", None),  # no config of its own: not a guess
    ("An axial HRCT image of the lungs shows honeycombing.", "ct"),
    ("A frontal CXR shows a right lower lobe opacity.", "xray"),
    ("Axial DWI of the brain shows restricted diffusion.", "mri"),
    ("A photomicrograph of a blood smear shows parasites.", "microscopy"),
    ("A fundoscopic image shows papilledema.", "fundus"),
    ("A bronchoscopy view of the carina.", "endoscopy"),
    ("An OCT B-scan of the retina.", None),  # OCT is not CT
])
def test_the_caption_decides_by_its_first_sentence(caption: str, modality: str | None) -> None:
    from builder.pipeline.sources.medtrinity import caption_modality

    assert caption_modality(caption) == modality


def test_the_full_layout_builds_the_same_on_ray(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="--engine ray needs the ray extra")
    root = tmp_path / "MedTrinity-25M"
    make_full(root, _images(12))
    manifest = write_manifest(tmp_path, {"name": "medtrinity", "format": "medtrinity", "root": str(root),
                                         "subset": "25M_full"})
    build(manifest, tmp_path / "local", "--workers", "1")
    done = subprocess.run([sys.executable, "-m", "builder", "build", str(manifest), "--out", str(tmp_path / "ray"),
                           "--engine", "ray", "--workers", "2", "--quiet"], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    key = ["id", "source_file", "caption", "modality"]
    assert shard_rows(tmp_path / "ray", columns=key) == shard_rows(tmp_path / "local", columns=key)
    assert published_rejects(tmp_path / "ray") == published_rejects(tmp_path / "local")
