"""Retrieval quality and speed.

    python tools/bench_retrieval.py recall --kb KB --cases ../shared/data/medpix-2.0/test/data_test.jsonl
    python tools/bench_retrieval.py cache --kb KB --rows 100000 --captions 500

``recall``: each case's diagnosis as the query; recall@k of that case's own
disease discussion (any snippet of its document among the top k).
``cache``: retrieval for ROWS coarse captions drawn from CAPTIONS distinct ones, in
batches of 64 as a build sends them, with the caption cache and without it.
"""

from __future__ import annotations

import argparse
import json
import random
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
        retriever = Retriever(kb, cache_size=size)
        start = time.perf_counter()
        for i in range(0, len(stream), batch):
            retriever.lookup(stream[i:i + batch])
        result[name] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["recall", "cache"])
    parser.add_argument("--kb", type=Path, required=True)
    parser.add_argument("--cases", type=Path)
    parser.add_argument("-k", type=int, default=8)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--captions", type=int, default=500)
    args = parser.parse_args()
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
