"""Documents and snippets.

Inputs (files or folders of them):

- ``.txt`` / ``.md``: one document each; id = file stem, title = first line;
- ``.jsonl`` with ``text`` (and optional ``id``, ``title``): one document a line;
- MedPix case JSON lines (``U_id`` + ``Topic``): ``Topic.Disease Discussion``,
  with the case's ``U_id`` as id.

Snippets pack whole sentences up to ``max_chars`` and overlap by ``overlap``
sentences, so a fact cut at a boundary is whole in one of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from builder.imaging import MISSING

SUFFIXES = (".txt", ".md", ".jsonl")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'])|\n\s*\n|\n(?=[-*\u2022]|\d+\.)")


class CorpusError(ValueError):
    """A corpus file that cannot be read, named with the reason."""


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    title: str = ""
    snippet: bool = False  # already a retrieval chunk (MedRAG's corpora): kept whole, under its own id


@dataclass(frozen=True)
class Snippet:
    id: str  # "<doc_id>#<n>"
    doc_id: str
    offset: int  # character offset of the snippet in its document
    text: str
    title: str = ""


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
        elif path.is_file():
            yield path
        else:
            raise CorpusError(f"{path}: no such file or folder")


def _from_jsonl(path: Path) -> Iterator[Document]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if "U_id" in obj and isinstance(obj.get("Topic"), dict):  # a MedPix case
            text = str(obj["Topic"].get("Disease Discussion") or "")
            if text.strip().lower() not in MISSING:
                yield Document(str(obj["U_id"]), text, str(obj["Topic"].get("Title") or ""))
        elif isinstance(obj.get("content"), str) and "id" in obj:  # MedRAG: id, title, content, contents
            yield Document(str(obj["id"]), obj["content"], str(obj.get("title") or ""), snippet=True)
        elif isinstance(obj.get("text"), str):
            yield Document(str(obj.get("id") or f"{path.stem}:{number}"), obj["text"], str(obj.get("title") or ""))
        else:
            raise CorpusError(f"{path}:{number}: a line needs 'text', MedRAG's 'id' and 'content', or be a MedPix "
                              "case with 'Topic'")


def read_corpus(paths: Iterable[str | Path]) -> Iterator[Document]:
    """Every document of the given files and folders, in a stable order."""
    for _, documents in read_files(paths):
        yield from documents


def read_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, Iterator[Document]]]:
    """Each corpus file, in a stable order, with its documents (what precomputed embeddings are paired with)."""
    for path in _files(Path(p) for p in paths):
        if path.suffix.lower() == ".jsonl":
            yield path, _from_jsonl(path)
        else:
            text = path.read_text(encoding="utf-8")
            yield path, iter([Document(path.stem, text, text.strip().splitlines()[0][:200] if text.strip() else "")])


def sentences(text: str) -> list[tuple[int, str]]:
    """(offset, sentence) pairs; blank paragraphs and list items split too."""
    out, start = [], 0
    for match in _SENTENCE.finditer(text):
        piece = text[start:match.start()]
        if piece.strip():
            out.append((start + len(piece) - len(piece.lstrip()), piece.strip()))
        start = match.end()
    tail = text[start:]
    if tail.strip():
        out.append((start + len(tail) - len(tail.lstrip()), tail.strip()))
    return out


def chunk(doc: Document, max_chars: int = 800, overlap: int = 1) -> list[Snippet]:
    """Snippets of whole sentences up to ``max_chars``, overlapping by ``overlap`` sentences.

    A document that is already a snippet (a MedRAG chunk) is kept whole, under its own id.
    """
    if doc.snippet:
        return [Snippet(doc.id, doc.id, 0, doc.text, doc.title)]
    parts = sentences(doc.text)
    snippets: list[Snippet] = []
    i = 0
    while i < len(parts):
        j, size = i, 0
        while j < len(parts) and (j == i or size + len(parts[j][1]) + 1 <= max_chars):
            size += len(parts[j][1]) + 1
            j += 1
        text = " ".join(p[1] for p in parts[i:j])
        snippets.append(Snippet(f"{doc.id}#{len(snippets)}", doc.id, parts[i][0], text, doc.title))
        if j >= len(parts):
            break
        i = max(i + 1, j - overlap)
    return snippets
