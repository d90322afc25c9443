"""Knowledge at MedRAG scale: precomputed embeddings read as MedRAG publishes them (one .npy beside each JSONL chunk
file), the compressed IVF-PQ index with exact re-ranking from memory-mapped vectors, loaded memory-mapped. The chunks
are real text (MedPix 2.0's case discussions, sentence by sentence); their vectors are made here with the offline
MiniLM, as MedRAG made its own with MedCPT."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import MEDPIX, need, run_cli

pytest.importorskip("faiss", reason="knowledge retrieval needs faiss (kb extra)")


def _medrag(folder: Path) -> tuple[list[dict], Path, Path]:
    """Two MedRAG-shaped chunk files (id, title, content, contents) and their embeddings."""
    from builder.pipeline.knowledge import load_encoder

    cases = [json.loads(line) for line in (need(MEDPIX / "test") / "data_test.jsonl").read_text().splitlines()]
    chunks = []
    for case in cases:
        topic = case.get("Topic") or {}
        for n, sentence in enumerate(re.split(r"(?<=\.)\s+", str(topic.get("Disease Discussion") or ""))):
            if len(sentence) > 60:
                chunks.append({"id": f"{case['U_id']}_{n}", "title": str(topic.get("Title") or ""),
                               "content": sentence, "contents": f"{topic.get('Title')}. {sentence}"})
    chunks = chunks[:400]
    assert len(chunks) >= 300, "enough real sentences for an IVF-PQ index"
    encoder = load_encoder("minilm")
    (folder / "chunk").mkdir(parents=True)
    (folder / "embeddings").mkdir()
    half = len(chunks) // 2
    for stem, part in (("pubmed23n0001", chunks[:half]), ("pubmed23n0002", chunks[half:])):
        (folder / "chunk" / f"{stem}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in part))
        np.save(folder / "embeddings" / f"{stem}.npy", encoder.encode_documents([c["content"] for c in part]))
    return chunks, folder / "chunk", folder / "embeddings"


@pytest.fixture(scope="module")
def medrag(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path, Path]:
    return _medrag(tmp_path_factory.mktemp("medrag"))


@pytest.mark.parametrize("kind", ["ivfpq", "flat"])
def test_kb_build_from_precomputed_embeddings_finds_each_chunk(medrag: tuple[list[dict], Path, Path],
                                                               tmp_path: Path, kind: str) -> None:
    chunks, chunk, embeddings = medrag
    out = tmp_path / "kb"
    run_cli("kb", "build", chunk, "--embeddings", embeddings, "--encoder", "minilm", "--index", kind, "--out", out)
    info = json.loads((out / "kb.json").read_text())
    assert info["snippets"] == len(chunks) and info["index"]["type"] == kind and info["embeddings"] == "precomputed"
    if kind == "ivfpq":  # 96 bytes a vector in the index; the vectors themselves on disk as float16
        assert (out / "vectors.npy").stat().st_size >= len(chunks) * 384 * 2
    from builder.pipeline.knowledge import KnowledgeBase

    kb = KnowledgeBase.load(out)
    probes = chunks[::37]
    found = kb.search([c["content"] for c in probes], 8)
    top1 = [hits[0].id for hits in found]
    assert sum(hit == c["id"] for hit, c in zip(top1, probes)) >= 0.95 * len(probes)  # each sentence finds itself
    assert all(len(hits) == 8 for hits in found)


def test_embeddings_that_do_not_fit_their_chunks_are_named(medrag: tuple[list[dict], Path, Path],
                                                           tmp_path: Path) -> None:
    import shutil

    _, chunk, given = medrag
    embeddings = Path(shutil.copytree(given, tmp_path / "embeddings"))
    vectors = np.load(embeddings / "pubmed23n0002.npy")
    np.save(embeddings / "pubmed23n0002.npy", vectors[:-1])
    result = run_cli("kb", "build", chunk, "--embeddings", embeddings, "--encoder", "minilm", "--out",
                     tmp_path / "kb", ok=False)
    assert result.exit_code != 0 and "pubmed23n0002.npy" in result.output and "snippets" in result.output
