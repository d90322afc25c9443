"""Retrieval quality and speed.

    python tools/bench_retrieval.py recall --kb KB --cases ../shared/data/medpix-2.0/test/data_test.jsonl
    python tools/bench_retrieval.py cache --kb KB --rows 100000 --captions 500
    python tools/bench_retrieval.py build --kb KB --images ../shared/data/medpix-2.0/test/images

``recall``: each case's diagnosis as the query; recall@k of that case's own
disease discussion (any snippet of its document among the top k).
``cache``: retrieval for ROWS coarse captions drawn from CAPTIONS distinct ones, in
batches of 64 as a build sends them, with the caption cache and without it.
``build``: retrieval inside a build: ``medtri-build build --workers 2`` of the images
with ``--kb`` and without, by the build's clock, and the encoder's load (done before
the first row) and a warm lookup of 64 captions on one torch thread, timed alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from builder.pipeline.knowledge import KnowledgeBase, Retriever


def recall(kb: KnowledgeBase, cases: Path, k: int) -> tuple[float, int]:
    pairs = []
    for line in cases.read_text().splitlines():
        case = json.loads(line)
        diagnosis = (case.get("Case") or {}).get("Case Diagnosis")
        discussion = (case.get("Topic") or {}).get("Disease Discussion")
        if diagnosis and discussion and discussion.strip().upper() != "N/A":
            pairs.append((diagnosis, case["U_id"]))
    hits = kb.search([q for q, _ in pairs], k)
    found = sum(any(h.doc_id == doc for h in row) for (_, doc), row in zip(pairs, hits))
    return found / len(pairs), len(pairs)


def cache_bench(kb: KnowledgeBase, rows: int, distinct: int, batch: int = 64) -> dict[str, float]:
    rng = random.Random(0)
    captions = [f"CT of the {organ}, axial slice {i % 40}; regions: lesion {i}" for i, organ in
                zip(range(distinct), ["liver", "brain", "lung", "kidney", "spine"] * distinct)]
    stream = [rng.choice(captions) for _ in range(rows)]
    result = {}
    for name, size in (("with cache", 100_000), ("without cache", 0)):
        retriever = Retriever(kb, k=8, cache_size=size)
        start = time.perf_counter()
        for i in range(0, len(stream), batch):
            retriever.lookup(stream[i:i + batch])
        result[name] = time.perf_counter() - start
    return result


def build_bench(kb_path: Path, images: Path) -> dict[str, float]:
    """Rows/s of a 2-worker build with and without retrieval; the encoder's load and a warm 64-caption lookup."""
    import torch

    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(images, Path(tmp) / "images")  # inputs beside the manifest, as a build wants them
        manifest = Path(tmp) / "m.yaml"
        manifest.write_text(json.dumps({"sources": [{"name": "mp", "format": "image", "modality": "ct",
                                                     "images": "images/*.png"}]}))
        env = dict(os.environ, MEDTRI_CONFIG_DIR=str(Path(tmp) / "config"))
        for name, extra in (("without --kb", []), ("with --kb", ["--kb", str(kb_path)])):
            out = Path(tmp) / name.replace(" ", "")
            subprocess.run([sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out),
                            "--workers", "2", "--quiet", *extra], check=True, env=env, capture_output=True)
            result[name] = json.loads((out / "build.json").read_text())["rows_per_second"]
    torch.set_num_threads(1)  # as the build runs it beside the workers
    start = time.perf_counter()
    kb = KnowledgeBase.load(kb_path)
    kb.search(["warm up"], 1)
    result["encoder load s"] = time.perf_counter() - start
    captions = [f"CT of the brain, axial slice {i}; regions: lesion {i}" for i in range(64)]
    start = time.perf_counter()
    kb.search(captions, 8)
    result["64 captions, warm, ms"] = 1000 * (time.perf_counter() - start)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["recall", "cache", "build"])
    parser.add_argument("--images", type=Path)
    parser.add_argument("--kb", type=Path, required=True)
    parser.add_argument("--cases", type=Path)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--captions", type=int, default=500)
    args = parser.parse_args()
    if args.mode == "build":
        print(json.dumps({k: round(v, 3) for k, v in build_bench(args.kb, args.images).items()}, indent=2))
        return
    kb = KnowledgeBase.load(args.kb)
    if args.mode == "recall":
        value, n = recall(kb, args.cases, args.k)
        print(f"recall@{args.k} = {value:.3f} over {n} cases ({kb.info['encoder']}, {kb.info['snippets']} snippets)")
    else:
        times = cache_bench(kb, args.rows, args.captions)
        print(f"| retrieval of {args.rows:,} rows, {args.captions} distinct captions | seconds | rows/s |")
        print("|---|---|---|")
        for name, seconds in times.items():
            print(f"| {name} | {seconds:.2f} | {args.rows / seconds:,.0f} |")
        print(f"\nspeed-up: {times['without cache'] / times['with cache']:.0f}x")


if __name__ == "__main__":
    main()
