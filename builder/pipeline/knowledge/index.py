"""The knowledge base on disk, and retrieval with a cache.

A knowledge base folder holds ``index.faiss``, ``snippets.parquet`` (id,
doc_id, offset, title, text) and ``kb.json`` (encoder spec, dimension, index
type and parameters, counts). The index is exact inner product (``flat``) up to
:data:`FLAT_LIMIT` snippets, which is fast enough on two cores; above, HNSW
(``M=32``, ``efConstruction=80``, ``efSearch=128``), whose recall stays above
0.95 on sentence embeddings while searching in well under a millisecond.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from builder.errors import install_hint
from builder.pipeline.knowledge.compressed import COMPRESS_ABOVE, CompressedIndex, EmbeddingError, precomputed
from builder.pipeline.knowledge.corpus import Document, Snippet, chunk
from builder.pipeline.knowledge.encoders import Encoder, load_encoder

FLAT_LIMIT = 200_000
HNSW = {"M": 32, "efConstruction": 80, "efSearch": 128}


class KnowledgeError(ValueError):
    """A knowledge base folder that is missing or inconsistent."""


@dataclass(frozen=True)
class Hit:
    id: str
    doc_id: str
    score: float
    text: str
    title: str = ""


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise KnowledgeError(f"knowledge retrieval needs faiss: {install_hint('kb')}") from None
    return faiss


INDEXES = ("auto", "flat", "hnsw", "ivfpq")


def make_index(vectors: np.ndarray, kind: str = "auto", folder: Path | None = None) -> tuple[Any, dict[str, Any]]:
    """An inner-product index for ``vectors`` and the description saved with it: ``auto`` is flat up to
    :data:`FLAT_LIMIT` vectors, HNSW up to :data:`COMPRESS_ABOVE`, IVF-PQ with exact re-ranking above (which
    writes ``folder/vectors.npy``)."""
    faiss = _faiss()
    dim = vectors.shape[1]
    if kind == "auto":
        kind = "flat" if len(vectors) <= FLAT_LIMIT else "hnsw" if len(vectors) <= COMPRESS_ABOVE else "ivfpq"
    if kind == "ivfpq":
        if folder is None:
            raise KnowledgeError("an IVF-PQ index keeps its vectors in its folder: give one")
        try:
            return CompressedIndex.build(vectors, folder)
        except EmbeddingError as exc:
            raise KnowledgeError(str(exc)) from None
    params: dict[str, Any]
    if kind == "flat":
        index, params = faiss.IndexFlatIP(dim), {"type": "flat", "metric": "inner_product"}
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW["M"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW["efConstruction"]
        index.hnsw.efSearch = HNSW["efSearch"]
        params = {"type": "hnsw", "metric": "inner_product", **HNSW}
    for start in range(0, len(vectors), 100_000):  # memory-mapped embeddings: a block in RAM at a time
        index.add(np.ascontiguousarray(vectors[start:start + 100_000], dtype=np.float32))
    return index, params


class SnippetTable(Sequence[Snippet]):
    """The snippets of a saved knowledge base, read from the memory-mapped Parquet table when a hit needs one
    (23.9M snippets never become Python objects all at once)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return Snippet(**self.table.slice(int(index), 1).to_pylist()[0])


class KnowledgeBase:
    """Snippets, their faiss index, and the encoder that made it."""

    def __init__(self, snippets: Sequence[Snippet], index: Any, encoder: Encoder, info: dict[str, Any]) -> None:
        self.snippets, self.index, self.encoder, self.info = snippets, index, encoder, info

    @classmethod
    def build(cls, documents: Iterable[Document], encoder: Encoder, max_chars: int = 800, overlap: int = 1,
              kind: str = "auto", folder: Path | None = None) -> KnowledgeBase:
        docs = list(documents)
        snippets = [s for doc in docs for s in chunk(doc, max_chars, overlap)]
        if not snippets:
            raise KnowledgeError("the corpus holds no text")
        vectors = encoder.encode_documents([s.text for s in snippets])
        index, params = make_index(vectors, kind, folder)
        info = {"encoder": encoder.spec, "dim": int(vectors.shape[1]), "index": params,
                "documents": len(docs), "snippets": len(snippets),
                "chunking": {"max_chars": max_chars, "overlap_sentences": overlap}}
        return cls(snippets, index, encoder, info)

    @classmethod
    def from_embeddings(cls, files: Iterable[tuple[Path, Iterable[Document]]], embeddings: Path, encoder: Encoder,
                        folder: Path, kind: str = "auto") -> KnowledgeBase:
        """A knowledge base of precomputed embeddings (MedRAG's ``.npy`` beside its JSONL chunks), indexed in
        ``folder``: each chunk is one snippet, its vector the file's row of the same number."""
        stems, counts, snippets = [], [], []
        for path, documents in files:
            found = [s for doc in documents for s in chunk(doc)]
            stems.append(path.stem)
            counts.append(len(found))
            snippets += found
        if not snippets:
            raise KnowledgeError("the corpus holds no text")
        try:
            vectors = precomputed(embeddings, stems, counts)
        except EmbeddingError as exc:
            raise KnowledgeError(str(exc)) from None
        index, params = make_index(vectors, kind, folder)
        info = {"encoder": encoder.spec, "dim": int(vectors.shape[1]), "index": params, "documents": len(snippets),
                "snippets": len(snippets), "embeddings": "precomputed"}
        return cls(snippets, index, encoder, info)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(self.index, CompressedIndex):
            self.index.save(folder)
        else:
            _faiss().write_index(self.index, str(folder / "index.faiss"))
        table = pa.Table.from_pylist([asdict(s) for s in self.snippets])
        pq.write_table(table, folder / "snippets.parquet", compression="zstd")
        (folder / "kb.json").write_text(json.dumps(self.info, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, encoder: Encoder | None = None) -> KnowledgeBase:
        if not (folder / "kb.json").is_file():
            raise KnowledgeError(f"{folder} is not a knowledge base (no kb.json; make one with 'kb build')")
        info = json.loads((folder / "kb.json").read_text(encoding="utf-8"))
        if info["index"]["type"] == "ivfpq":
            index: Any = CompressedIndex.load(folder, info["index"])
        else:
            index = _faiss().read_index(str(folder / "index.faiss"))
        if info["index"]["type"] == "hnsw":
            index.hnsw.efSearch = info["index"]["efSearch"]
        snippets = SnippetTable(pq.read_table(folder / "snippets.parquet", memory_map=True))
        if index.ntotal != len(snippets):
            raise KnowledgeError(f"{folder}: index holds {index.ntotal} vectors for {len(snippets)} snippets")
        return cls(snippets, index, encoder or load_encoder(info["encoder"]), info)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """The top ``k`` snippets of each query, best first, in one batch."""
        if not queries:
            return []
        vectors = self.encoder.encode_queries(list(queries))
        scores, ids = self.index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self.snippets)))
        return [
            [Hit(s.id, s.doc_id, float(score), s.text, s.title)
             for score, i in zip(row_scores, row_ids) if i >= 0 for s in (self.snippets[i],)]
            for row_scores, row_ids in zip(scores, ids)
        ]


class Retriever:
    """Top-k snippets per coarse caption, batched, cached by caption text.

    Millions of images share few coarse captions: each distinct caption is
    embedded and searched once (the cache keeps the ``cache_size`` latest).
    """

    def __init__(self, kb: KnowledgeBase, k: int, cache_size: int = 100_000) -> None:
        self.kb, self.k, self.cache_size = kb, k, cache_size
        self.cache: OrderedDict[str, list[Hit]] = OrderedDict()
        self.searched = 0

    def lookup(self, captions: Sequence[str]) -> list[list[Hit]]:
        missing = list(dict.fromkeys(c for c in captions if c not in self.cache))
        for caption, hits in zip(missing, self.kb.search(missing, self.k)):
            self.cache[caption] = hits
        self.searched += len(missing)
        found = []
        for caption in captions:
            self.cache.move_to_end(caption)
            found.append(self.cache[caption])
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return found
