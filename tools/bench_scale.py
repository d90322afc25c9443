"""A long build: is the rate steady and the memory flat over 200,000 rows, and what would 25M take?

    python tools/bench_scale.py [--rows 200000] [--window 20000] [--workers 2] [--size 48]
                                [--files-per-folder 10000] [--nodes 8 16 64]

It writes ``--rows`` small synthetic images (``--size`` pixels square, each with a mask of one region: a row with
an ROI and its measured text, as most MedTrinity rows have) in three modalities, builds them with ``--format
both``, and reports, per window of ``--window`` rows: rows/s and the peak RSS of the whole build (the main process,
the forkserver and its workers, sampled from /proc every 0.2 s); then the shards (count, sizes), the most files in
one folder, build.json's size, and the build's rate extrapolated to 25M rows on N nodes of this machine's cores.

For 25M rows on a cluster (README, "Ray"):

    medtri-build build medtrinity.yaml --out mt25m --engine ray --ray-address HEAD:6379 --format both
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

MODALITIES = ("xray", "dermoscopy", "fundus")
TARGET_ROWS = 25_000_000


def make_inputs(root: Path, rows: int, size: int) -> Path:
    """``rows`` images with masks, 1,000 to a folder, the modalities in turn; the manifest."""
    rng = np.random.default_rng(0)
    base = rng.integers(20, 90, (size, size), dtype=np.uint8)
    for i in range(rows):
        folder = root / MODALITIES[i % 3] / f"{i // 3000:04d}"
        if i % 3000 < 3:
            folder.mkdir(parents=True, exist_ok=True)
        pixels = base + rng.integers(0, 30, (size, size), dtype=np.uint8)
        x, y, w = int(rng.integers(2, size // 2)), int(rng.integers(2, size // 2)), int(rng.integers(4, size // 3))
        pixels[y:y + w, x:x + w] += 120
        mask = np.zeros((size, size), np.uint8)
        mask[y:y + w, x:x + w] = 1
        Image.fromarray(pixels).save(folder / f"img{i:07d}.png", compress_level=1)
        Image.fromarray(mask).save(folder / f"img{i:07d}_mask.png", compress_level=1)
    sources = [{"name": f"synthetic-{m}", "format": "image", "images": f"{m}/*/*.png", "masks": f"{m}/*/*_mask.png",
                "modality": m, "labels": {1: "lesion"}} for m in MODALITIES]
    manifest = root / "sources.yaml"
    manifest.write_text(yaml.safe_dump({"sources": sources}, sort_keys=False))
    return manifest


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, ValueError):  # a process that ended meanwhile
            total += _rss(current)
        todo += children.get(current, [])
    return total


class Windows:
    """Rows/s and peak RSS per window of rows, from the build's progress hook and a sampling thread."""

    def __init__(self, window: int) -> None:
        self.window, self.rows, self.peak, self.main = window, 0, 0, 0
        self.began = self.start = self.first = self.last = self.ended = time.monotonic()
        self.done: list[dict[str, float]] = []
        self.stop = threading.Event()
        self.sampler = threading.Thread(target=self._sample, daemon=True)
        self.sampler.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self.main = max(self.main, _rss(os.getpid()))

    def __call__(self, state: Any) -> None:
        if self.rows == 0 and state.rows:  # the first window starts at the first row: start-up is not a window's
            self.start = self.first = time.monotonic()
        self.rows, self.last = state.rows, time.monotonic()
        if state.rows >= (len(self.done) + 1) * self.window:
            now = time.monotonic()
            self.done.append({"rows": state.rows, "seconds": round(now - self.start, 2),
                              "rows_per_s": round(self.window / (now - self.start), 1),
                              "peak_rss_mib": round(self.peak / 2**20, 1), "main_mib": round(self.main / 2**20, 1)})
            self.start, self.peak, self.main = now, 0, 0


def run_build(manifest: Path, out: Path, workers: int, per_folder: int, window: int) -> tuple[dict, Windows]:
    from builder.formats import ShardLimits
    from builder.pipeline.build import BuildOptions, build
    from builder.pipeline.engines.local import LocalOptions
    from builder.pipeline.sources.manifest import load_manifest

    options = BuildOptions(out=out, formats=("parquet", "webdataset"), engine_options=LocalOptions(workers=workers),
                           limits=ShardLimits(files_per_folder=per_folder))
    windows = Windows(window)
    try:
        summary = build(load_manifest(manifest), options, progress=windows)
    finally:
        windows.stop.set()
    windows.ended = time.monotonic()
    return summary, windows


def layout(out: Path) -> dict[str, Any]:
    """Shard counts and sizes per format, the most entries in one folder, build.json's size."""
    doc = json.loads((out / "build.json").read_text())
    found: dict[str, Any] = {}
    for fmt in ("parquet", "webdataset"):
        sizes = [(out / s["path"]).stat().st_size for s in doc["shards"] if s["format"] == fmt]
        rows = [s["rows"] for s in doc["shards"] if s["format"] == fmt]
        found[fmt] = {"shards": len(sizes), "median_mib": round(statistics.median(sizes) / 2**20, 2),
                      "max_mib": round(max(sizes) / 2**20, 2), "median_rows": statistics.median(rows)}
    found["most_entries_in_a_folder"] = max(len(d) + len(f) for r, d, f in os.walk(out) if ".build" not in r)
    found["build_json_kib"] = round((out / "build.json").stat().st_size / 1024, 1)
    return found


def report(args: argparse.Namespace, summary: dict, windows: Windows, shape: dict[str, Any]) -> None:
    done = windows.done
    print("| rows | window s | rows/s | peak RSS MiB (build tree) | of which the main process |\n|---|---|---|---|---|")
    for w in done:
        print(f"| {w['rows']:,} | {w['seconds']} | {w['rows_per_s']} | {w['peak_rss_mib']} | {w['main_mib']} |")
    rate, rss = done[-1]["rows_per_s"] / done[0]["rows_per_s"], done[-1]["peak_rss_mib"] / done[0]["peak_rss_mib"]
    middle = statistics.median(w["rows_per_s"] for w in done)
    print(f"\nlast window / first: rows/s {rate:.2f} (target >= 0.9; / the median window: "
          f"{done[-1]['rows_per_s'] / middle:.2f}), peak RSS {rss:.2f} (target within 1.1)")
    print(f"build: {summary['rows']['total']:,} rows in {summary['seconds']:.0f} s ({summary['rows_per_second']} "
          f"rows/s overall, {middle:.0f} rows/s median window) on {args.workers} workers, {os.cpu_count()} cores")
    before, after = windows.first - windows.began, windows.ended - windows.last
    print(f"before the first row (listing the inputs, starting the workers): {before:.0f} s; after the last "
          f"(publishing, merging small shards, the card and charts): {after:.0f} s")
    print(f"layout: {json.dumps(shape)}")
    per_node = middle * (os.cpu_count() or 1) / args.workers
    for nodes in args.nodes:
        hours = TARGET_ROWS / (per_node * nodes) / 3600
        print(f"25M rows on {nodes} nodes of {os.cpu_count()} such cores: {hours:.1f} h "
              f"(at {per_node:.0f} rows/s a node, units of this size)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--window", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--files-per-folder", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[8, 16, 64])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        started = time.monotonic()
        manifest = make_inputs(Path(tmp) / "src", args.rows, args.size)
        print(f"inputs: {args.rows:,} images {args.size}x{args.size} with masks in {time.monotonic() - started:.0f} s")
        summary, windows = run_build(manifest, Path(tmp) / "out", args.workers, args.files_per_folder, args.window)
        report(args, summary, windows, layout(Path(tmp) / "out"))


if __name__ == "__main__":
    main()
