"""Caption templates: ``str.format`` fields with optional ``[...]`` clauses.

A clause in square brackets is dropped when any field inside it renders empty,
so one rule reads well whether or not a slice, a disease or a region is known::

    "{modality_name} of the {organ}[, {view}][, {disease}][; regions: {regions}]"

renders "MRI of the brain, axial slice 90; regions: Precentral_L" or just
"CT of the chest". Literal brackets are written ``[[`` and ``]]``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Mapping

_CLAUSE = re.compile(r"(?<!\[)\[(?!\[)([^\[\]]*)(?<!\])\](?!\])")
_FORMATTER = string.Formatter()
_MARKUP = frozenset("{}[]")


#: The coarse caption of a source without a caption rule of its own.
DEFAULT_CAPTION = "{modality_name}[ of the {organ}][, {view}][, {disease}][; regions: {regions}]"


class TemplateError(ValueError):
    """A template that does not parse or names an unknown field."""


@lru_cache(maxsize=1024)  # a build renders the same few templates and clauses on every row
def _fields(text: str) -> frozenset[str]:
    try:
        return frozenset(name.split(".")[0].split("[")[0] for _, name, _, _ in _FORMATTER.parse(text) if name)
    except ValueError as exc:
        raise TemplateError(f"cannot parse template {text!r}: {exc}") from exc


@dataclass(frozen=True)
class Template:
    """A parsed caption template."""

    text: str

    @property
    def fields(self) -> frozenset[str]:
        return _fields(self.text.replace("[[", "").replace("]]", ""))

    def check(self, known: set[str]) -> None:
        """Raise :class:`TemplateError` naming the fields not in ``known``."""
        unknown = sorted(self.fields - known)
        if unknown:
            raise TemplateError(f"unknown field(s) {', '.join(unknown)} in {self.text!r}")

    def render(self, values: Mapping[str, object]) -> str:
        if not _MARKUP.intersection(self.text):  # plain text (a fixed organ, an empty rule): nothing to fill in
            return self.text.strip()

        def clause(match: re.Match[str]) -> str:
            body = match.group(1)
            names = _fields(body)
            if any(_blank(values.get(name)) for name in names):
                return ""
            return body

        with_clauses = _CLAUSE.sub(clause, self.text)
        text = with_clauses.replace("[[", "\0L").replace("]]", "\0R")
        rendered = _FORMATTER.vformat(text, (), _Values(values))
        return rendered.replace("\0L", "[").replace("\0R", "]").strip()


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Values(Mapping[str, object]):
    """The values as ``str.format`` reads them, without copying them: None is "", a missing field an error."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self._given = values

    def __getitem__(self, key: str) -> object:
        try:
            value = self._given[key]
        except KeyError:
            raise TemplateError(f"template field {{{key}}} has no value") from None
        return "" if value is None else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)


_DOUBLED_STOP = re.compile(r"(?<!\.)\.\s*\.(?!\.)")  # ".." and ". ." (an ellipsis "..." stays)
_DOUBLED_MARK = re.compile(r"([,;:])(\s*[,;:.])+")  # ", ," ";," ",." -> the first mark
_STOP_MARK = re.compile(r"\.(\s*[,;:])")  # "Abdomen.," -> "Abdomen,"
_MARK_PAIR = re.compile(r"[,;:] ?[,;:.]")  # the common cases of _DOUBLED_MARK, found fast
_REPEATED_ITEM = re.compile(r"\b([A-Za-z][\w' -]*?)(, \1)+\b", re.I)  # "Abdomen, Abdomen" -> "Abdomen"
_REPEATED_WORD = re.compile(r"\b(\w+)(\s+\1)+\b", re.I)  # "the the" -> "the"


_SEGMENT = re.compile(r"([,;:.)(] ?)")


def _item_repeated(text: str) -> bool:
    """Whether an item may follow itself after ", " (one split: a cheap test before the costly pattern)."""
    if ", " not in text:
        return False
    parts = [part.strip() for part in _SEGMENT.split(text.lower())]  # segments and the delimiters between them
    return any(parts[k] == "," and parts[k - 1] and parts[k - 1] == parts[k + 1] for k in range(1, len(parts) - 1))


def _word_repeated(text: str) -> bool:
    words = text.lower().split()
    return any(map(str.__eq__, words, words[1:]))  # pairs compared in C: this runs on every text of every row


def tidy(text: str) -> str:
    """Text as a person would write it: no doubled full stops or marks, no item or word said twice in a row (a
    diagnosis ending in "." inside a sentence, a category equal to its organ). Run on every text of every row:
    each costly pattern runs only where a cheap test says it may match."""
    if ".," in text or ".;" in text or ".:" in text or ". ," in text or ". ;" in text:
        text = _STOP_MARK.sub(r"\1", text)
    if ".." in text or ". ." in text:
        text = _DOUBLED_STOP.sub(".", text)
    if _MARK_PAIR.search(text):
        text = _DOUBLED_MARK.sub(lambda m: m.group(1), text)
    if _item_repeated(text):
        text = _REPEATED_ITEM.sub(r"\1", text)
    return _REPEATED_WORD.sub(r"\1", text) if _word_repeated(text) else text
