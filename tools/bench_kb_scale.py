"""The knowledge index at MedRAG scale: RAM, recall@8 against exact search, query time on one core, build time.

    python tools/bench_kb_scale.py [--vectors 2000000] [--queries 200] [--nprobe 128 256 512]

Synthetic 768-d unit vectors with clustered structure, generated in blocks into a
memory-mapped ``.npy`` (as MedRAG's published embeddings are read): 4,000 cluster
centres, each vector its centre plus a component in a shared 64-d subspace (half
the centre's scale: neighbours differ along a few directions, as sentence
embeddings of one topic do) plus isotropic noise (0.1), normalised. Queries are
drawn the same way and held out. The build is the one ``kb build --index ivfpq``
runs (:class:`builder.pipeline.knowledge.compressed.CompressedIndex`); exact top-8
comes from a brute-force scan of the memory-mapped vectors in blocks. Reported:
the index file (what a loaded index maps; the float16 vectors stay on disk, read
page by page by the re-ranking), build seconds, recall@8 and milliseconds a query
on one core for each ``nprobe``, and the extrapolation to MedRAG's 23.9M snippets.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM, CENTRES, RANK = 768, 4000, 64
MEDRAG = 23_900_000


def vectors(count: int, seed: int, into: np.ndarray | None = None) -> np.ndarray:
    centres = np.random.default_rng(1).standard_normal((CENTRES, DIM)).astype(np.float32)
    basis = np.random.default_rng(2).standard_normal((RANK, DIM)).astype(np.float32) / np.sqrt(RANK)
    out = into if into is not None else np.empty((count, DIM), np.float32)
    rng = np.random.default_rng(seed)
    for start in range(0, count, 100_000):
        size = min(100_000, count - start)
        block = centres[rng.integers(0, CENTRES, size)]
        block += 0.5 * (rng.standard_normal((size, RANK)).astype(np.float32) @ basis)
        block += 0.1 * rng.standard_normal((size, DIM)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + size] = block
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    best_scores = np.full((len(queries), k), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(data), 200_000):
        scores = queries @ np.asarray(data[start:start + 200_000]).T
        ids = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_ids


def main() -> None:
    import faiss

    from builder.pipeline.knowledge.compressed import CompressedIndex

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=2_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[128, 256, 512])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        folder = Path(scratch)
        data = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float32,
                                         shape=(args.vectors, DIM))
        vectors(args.vectors, 0, data)
        data.flush()
        data = np.load(folder / "embeddings.npy", mmap_mode="r")
        queries = vectors(args.queries, 9)
        truth = exact_top(data, queries, 8)
        started = time.perf_counter()
        index, params = CompressedIndex.build(data, folder / "kb")
        index.save(folder / "kb")
        built = time.perf_counter() - started
        size = (folder / "kb" / "index.faiss").stat().st_size
        loaded = CompressedIndex.load(folder / "kb", params)
        faiss.omp_set_num_threads(1)
        rows = []
        for nprobe in args.nprobe:
            loaded.ivf.nprobe = nprobe
            loaded.search(queries[:10], 8)  # pages in
            started = time.perf_counter()
            _, found = loaded.search(queries, 8)
            seconds = (time.perf_counter() - started) / len(queries)
            recall = float(np.mean([len(set(a) & set(b)) / 8 for a, b in zip(found, truth)]))
            rows.append({"nprobe": nprobe, "recall@8": round(recall, 4), "ms_per_query": round(1000 * seconds, 2)})
        per_million = size / 1e9 / (args.vectors / 1e6)
        report = {"vectors": args.vectors, "dim": DIM, "index": params, "index_file_gb": round(size / 1e9, 3),
                  "index_gb_per_million": round(per_million, 3), "build_seconds": round(built, 1),
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                  "search": rows,
                  "medrag_23.9M": {"index_gb": round(per_million * MEDRAG / 1e6, 2),
                                   "vectors_float16_on_disk_gb": round(MEDRAG * DIM * 2 / 1e9, 1),
                                   "build_hours_at_this_rate": round(built * MEDRAG / args.vectors / 3600, 2)}}
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
