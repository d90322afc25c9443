"""Knowledge at MedRAG scale: precomputed embeddings read as published, a compressed index, exact re-ranking.

MedRAG's PubMed corpus is 23.9M snippets; its flat index is about 70 GB and its
users run out of memory at 64 GB. Here, above :data:`COMPRESS_ABOVE` vectors:

- the vectors are stored once, as float16, in ``vectors.npy`` and memory-mapped
  (on disk, read page by page; every worker shares the page cache);
- the index is IVF-PQ (faiss ``IndexIVFPQ``: ``nlist`` = 4 sqrt(n) inverted lists,
  96 sub-quantisers of 8 bits: 96 bytes a vector), read with ``faiss.IO_FLAG_MMAP``
  so its inverted lists are mapped, not loaded;
- a query takes :data:`CANDIDATES` candidates from ``nprobe`` lists and re-ranks
  them by their exact inner product with the memory-mapped vectors.

``precomputed`` reads MedRAG's published embeddings: one ``.npy`` per chunk file
(``pubmed23n0001.npy`` beside ``pubmed23n0001.jsonl``), rows in the file's order.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["COMPRESS_ABOVE", "CompressedIndex", "EmbeddingError", "precomputed"]

COMPRESS_ABOVE = 1_000_000  # vectors: HNSW up to here (vectors in RAM), IVF-PQ with re-ranking above
SUBQUANTIZERS = 96  # bytes a vector in the index
CANDIDATES = 128  # taken from the compressed index per query, re-ranked exactly
NPROBE = 64  # inverted lists visited per query
TRAIN = 200_000  # vectors the coarse quantiser and the product quantiser learn from
MIN_VECTORS = 256  # the product quantiser's 8-bit codebooks need as many training vectors


class EmbeddingError(ValueError):
    """Precomputed embeddings that do not fit their snippets, named with the reason."""


def precomputed(embeddings: Path, stems: Sequence[str], counts: Sequence[int]) -> np.ndarray:
    """The vectors of the corpus files ``stems`` (with ``counts`` snippets each), in order, memory-mapped where
    one file holds them all: ``embeddings`` is one ``.npy`` (one corpus file) or a folder of ``<stem>.npy``."""
    if embeddings.is_file():
        files = [embeddings]
        if len(stems) != 1:
            raise EmbeddingError(f"{embeddings.name} is one file of embeddings for {len(stems)} corpus files: give "
                                 "a folder holding one <stem>.npy per corpus file")
    else:
        files = [embeddings / f"{stem}.npy" for stem in stems]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise EmbeddingError(f"{embeddings}: no embeddings for {', '.join(missing[:3])}")
    parts = []
    for path, count in zip(files, counts):
        array = np.load(path, mmap_mode="r")
        if array.ndim != 2 or array.shape[0] != count:
            raise EmbeddingError(f"{path.name}: {array.shape[0] if array.ndim else 0} vectors of shape "
                                 f"{array.shape} for {count} snippets")
        parts.append(array)
    if len({p.shape[1] for p in parts}) > 1:
        raise EmbeddingError(f"{embeddings}: the files hold vectors of different dimensions")
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class CompressedIndex:
    """IVF-PQ candidates re-ranked by exact inner products with memory-mapped float16 vectors (see module)."""

    def __init__(self, index: Any, vectors: np.ndarray, nprobe: int = NPROBE, candidates: int = CANDIDATES) -> None:
        self.index, self.vectors, self.candidates = index, vectors, candidates
        self.ivf = _faiss().extract_index_ivf(index)
        self.ivf.nprobe = nprobe

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @classmethod
    def build(cls, vectors: np.ndarray, folder: Path) -> tuple[CompressedIndex, dict[str, Any]]:
        """Train and fill the index from ``vectors`` (read in blocks, never all in RAM as float32); write the
        float16 copy to ``folder/vectors.npy``."""
        faiss = _faiss()
        count, dim = vectors.shape
        if count < MIN_VECTORS:
            raise EmbeddingError(f"an IVF-PQ index learns its codes from at least {MIN_VECTORS} vectors; this corpus "
                                 f"has {count}: use --index flat")
        nlist = max(1, min(int(4 * math.sqrt(count)), count // 39))  # faiss wants 39 training points a list
        sample = np.sort(np.random.default_rng(0).choice(count, min(count, max(TRAIN, 40 * nlist)), replace=False))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, SUBQUANTIZERS, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
        folder.mkdir(parents=True, exist_ok=True)
        stored = np.lib.format.open_memmap(folder / "vectors.npy", mode="w+", dtype=np.float16, shape=(count, dim))
        for start in range(0, count, 100_000):
            block = np.ascontiguousarray(vectors[start:start + 100_000], dtype=np.float32)
            index.add(block)
            stored[start:start + len(block)] = block
        stored.flush()
        params = {"type": "ivfpq", "metric": "inner_product", "nlist": nlist, "m": SUBQUANTIZERS, "bits": 8,
                  "nprobe": NPROBE, "candidates": CANDIDATES, "rerank": "exact, vectors.npy (float16)"}
        return cls(index, np.load(folder / "vectors.npy", mmap_mode="r")), params

    def save(self, folder: Path) -> None:
        _faiss().write_index(self.index, str(folder / "index.faiss"))

    @classmethod
    def load(cls, folder: Path, params: dict[str, Any]) -> CompressedIndex:
        faiss = _faiss()
        index = faiss.read_index(str(folder / "index.faiss"), faiss.IO_FLAG_MMAP)  # inverted lists mapped
        return cls(index, np.load(folder / "vectors.npy", mmap_mode="r"), params.get("nprobe", NPROBE),
                   params.get("candidates", CANDIDATES))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids of the top ``k`` of each query, as faiss's ``search`` returns them."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _, found = self.index.search(queries, max(k, self.candidates))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (query, candidates) in enumerate(zip(queries, found)):
            candidates = np.sort(candidates[candidates >= 0])  # sorted: the memory map is read in file order
            exact = self.vectors[candidates].astype(np.float32) @ query
            best = np.argsort(-exact)[:k]
            scores[row, :len(best)], ids[row, :len(best)] = exact[best], candidates[best]
        return scores, ids


def _faiss() -> Any:
    from builder.pipeline.knowledge.index import _faiss as load

    return load()
