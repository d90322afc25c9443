"""``medtri-build kb``: knowledge bases (corpus, encoder, faiss index)."""

from __future__ import annotations

from pathlib import Path

import click

from builder.cli.common import main


@main.group("kb")
def kb_group() -> None:
    """Knowledge bases: build one from a corpus, search it."""


@kb_group.command("build")
@click.argument("corpus", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@click.option("--encoder", default="minilm", show_default=True,
              help="minilm, medcpt:QUERY_DIR,ARTICLE_DIR, or a local transformers model folder.")
@click.option("--max-chars", type=int, default=800, show_default=True, help="Snippet size, whole sentences.")
@click.option("--overlap", type=int, default=1, show_default=True, help="Sentences shared by neighbours.")
@click.option("--embeddings", type=click.Path(exists=True, path_type=Path),
              help="Precomputed embeddings of the corpus's chunks, as MedRAG publishes them: a folder of <stem>.npy "
                   "beside each <stem>.jsonl (or one .npy for one file); rows in the file's order. --encoder names "
                   "the encoder that made them (it embeds the queries).")
@click.option("--index", "kind", type=click.Choice(["auto", "flat", "hnsw", "ivfpq"]), default="auto",
              show_default=True, help="auto: exact up to 200,000 snippets, HNSW up to 1,000,000, IVF-PQ with exact "
                                      "re-ranking from memory-mapped vectors above.")
def kb_build_cmd(corpus: tuple[Path, ...], out: Path, encoder: str, max_chars: int, overlap: int,
                 embeddings: Path | None, kind: str) -> None:
    """Chunk, embed and index CORPUS files or folders (.txt, .md, .jsonl, MedPix cases, MedRAG chunks)."""
    from builder.pipeline.knowledge import KnowledgeBase, load_encoder, read_corpus
    from builder.pipeline.knowledge.corpus import CorpusError, read_files
    from builder.pipeline.knowledge.encoders import EncoderError
    from builder.pipeline.knowledge.index import KnowledgeError

    try:
        if embeddings is not None:
            kb = KnowledgeBase.from_embeddings(read_files(corpus), embeddings, load_encoder(encoder), out, kind)
        else:
            kb = KnowledgeBase.build(read_corpus(corpus), load_encoder(encoder), max_chars, overlap, kind, out)
    except (CorpusError, EncoderError, KnowledgeError) as exc:
        raise click.ClickException(str(exc)) from None
    kb.save(out)
    info = kb.info
    click.echo(f"{info['documents']} documents, {info['snippets']} snippets, {info['index']['type']} index "
               f"of dimension {info['dim']} in {out}")


@kb_group.command("search")
@click.argument("kb", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("query")
@click.option("-k", type=int, default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON (doc_id, score, text, id).")
def kb_search_cmd(kb: Path, query: str, k: int, as_json: bool) -> None:
    """The top K snippets of KB for QUERY."""
    import json

    from builder.pipeline.knowledge import KnowledgeBase
    from builder.pipeline.knowledge.index import KnowledgeError

    try:
        hits = KnowledgeBase.load(kb).search([query], k)[0]
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([{"doc_id": h.doc_id, "score": round(h.score, 4), "text": h.text, "id": h.id}
                               for h in hits], indent=2, ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank}. [{hit.doc_id}] {hit.score:.3f}  {hit.text[:160]}")


