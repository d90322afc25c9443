"""Side tables of a source: label names, per-image metadata rows, box rows.

Metadata and boxes are CSV (with a header) or JSON (a list of objects, or JSON
lines), joined to images on the image's file stem (``scan01.nii.gz`` -> ``scan01``).
A row that cannot be used is returned as a problem, never dropped silently.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from builder.errors import Problem
from builder.pipeline.data import file_stem
from builder.pipeline.sources.table_shapes import box_of, findings_of
from builder.pipeline.sources.table_spec import TableSpec, expanded_header, path_keys, relative_key
from builder.pipeline.template import Template, TemplateError

STEM_COLUMNS = ("image", "file", "filename", "stem", "id")





@dataclass(frozen=True)
class Curation:
    """A person's decision on one row id: keep (despite the rules) or drop."""

    action: str  # "keep" | "drop"
    note: str = ""


def read_labels_file(path: Path) -> dict[int, str]:
    """Lines ``<value> <name> [more columns ignored]``; blank and ``#`` lines skipped."""
    labels: dict[int, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable text file ({exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) < 2 or not parts[0].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected '<value> <name>', got {line!r}")
        labels[int(parts[0])] = parts[1]
    if not labels:
        raise ValueError(f"{path}: no labels")
    return labels


class TableError(ValueError):
    """A side table that cannot be read at all."""


@dataclass(frozen=True)
class Line:
    """One row of a table: its line number, its value, or why it cannot be read."""

    number: int
    value: Any = None
    error: str | None = None


def _csv_lines(path: Path, delimiter: str = ",") -> Iterator[Line]:
    """A CSV table read as CSV (RFC 4180): a quoted field may hold line breaks.

    Each row carries the number of the physical line it starts on. A row that
    the csv module cannot parse, or whose quote swallowed the lines after it
    (a multi-line row with the wrong number of fields), is an error of its first
    line alone: reading starts again on the next line, so one stray quote never
    merges the rest of the table into one field. A UTF-8 byte-order mark is read
    as such, not as part of the first column's name.
    """
    with path.open(newline="", encoding="utf-8-sig") as fh:
        lines = fh.read().splitlines(keepends=True)
    header: list[str] | None = None
    named = False  # the header's spanning names ("Bbox [x,y,w,h]") spread, once the first row's width is known
    at = 0  # lines already read
    while at < len(lines):
        reader = csv.reader(iter(lines[at:]), strict=True, delimiter=delimiter)
        used = 0
        while True:
            number = at + used + 1
            try:
                cells = next(reader)
            except StopIteration:
                at = len(lines)
                break
            except csv.Error as exc:
                yield _malformed(lines, number, header, f"line {number} is malformed CSV ({exc})")
                at = number
                break
            span, used = reader.line_num - used, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = cells
                continue
            if not named:
                header, named = expanded_header(header, len(cells)), True
            if len(cells) == len(header):
                yield Line(number, dict(zip(header, cells)))
            elif span > 1:  # an unclosed quote took the following lines into this row
                yield _malformed(lines, number, header, f"line {number} is malformed CSV (a quote opened on it "
                                                        "is not closed before the row should end)")
                at = number
                break
            else:
                yield Line(number, dict(zip(header, cells)), f"line {number} has {len(cells)} fields, the header "
                                                             f"{len(header)}")


def _malformed(lines: list[str], number: int, header: list[str] | None, reason: str) -> Line:
    """An unreadable CSV line, with its loosely read cells (to name the image it belongs to)."""
    loose = next(csv.reader([lines[number - 1]]), [])
    return Line(number, dict(zip(header, loose)) if header else None, reason)


def _lines(path: Path, delimiter: str = ",") -> Iterator[Line]:
    """The rows of a CSV or JSON table (a list, or JSON lines), each with its line number."""
    try:
        if path.suffix.lower() in (".csv", ".tsv", ".txt"):
            yield from _csv_lines(path, "\t" if path.suffix.lower() == ".tsv" and delimiter == "," else delimiter)
            return
        text = path.read_text(encoding="utf-8-sig")
        if text.lstrip().startswith("["):
            for number, value in enumerate(json.loads(text), 1):
                yield Line(number, value)
            return
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError, RecursionError) as exc:
        raise TableError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield Line(number, json.loads(line))
            except (json.JSONDecodeError, RecursionError) as exc:
                yield Line(number, None, f"line {number} is not JSON ({exc})")


def _rows(path: Path) -> Iterator[Any]:
    """The readable rows of a table (what a curation file holds)."""
    for line in _lines(path):
        if line.error:
            raise TableError(f"{path}: {line.error}")
        yield line.value


def columns(path: Path, delimiter: str = ",") -> set[str]:
    """The column names of a metadata table (its first row's keys)."""
    for line in _lines(path, delimiter):
        if not isinstance(line.value, dict):
            raise TableError(f"{path}: the first row is not an object with column names")
        return {str(k) for k in line.value}
    return set()


def key_stem(text: str) -> str:
    """A table's image key as a file stem: ``scan01.png`` -> ``scan01``; a key whose last dot starts a number
    (a DICOM UID, ``1.2.840.113619.2.55``) is kept whole."""
    suffix = Path(text).suffix
    return text if suffix[1:].isdigit() else file_stem(text)


def _key_of(row: Any, spec: TableSpec) -> str | None:
    """The join key of a row: its key column's file stem, or its relative path (``match: path``)."""
    if not isinstance(row, dict):
        return None
    if spec.key and "{" in spec.key:  # a key made of columns: MIMIC-CXR's study folders, "s{study_id}"
        try:
            text = Template(spec.key).render({k: "" if v is None else v for k, v in row.items()})
        except TemplateError:
            return None
        return text.strip() or None
    for key in (spec.key,) if spec.key else STEM_COLUMNS:
        value = row.get(key)
        if isinstance(value, (str, int)) and str(value).strip():
            text = str(value).strip()
            if spec.match == "path":
                return relative_key(text)
            return text if spec.match == "folder" else key_stem(text)
    return None


def _problem(spec: TableSpec, role: str, line: Line, reason: str) -> Problem:
    stem = _key_of(line.value, spec)
    local = f"{spec.file}:{line.number}" + (f" ({stem})" if stem else "")  # the key only in the local log
    return Problem(local, reason, f"{role}:{line.number}", stem=stem)


@dataclass
class Table:
    """A side table's usable rows by join key, the line each key was first given on, and the unusable rows."""

    rows: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    match: str = "stem"

    def key(self, image: Path) -> str | None:
        """The key of ``image``'s rows: its stem, or (``match: path``) the longest tail of its path given."""
        if self.match == "stem":
            return file_stem(image)
        if self.match == "folder":
            return image.parent.name
        return next((tail for tail in path_keys(image) if tail in self.rows), None)


def _spec(table: TableSpec | Path) -> TableSpec:
    return table if isinstance(table, TableSpec) else TableSpec(Path(table))


def read_metadata(table: TableSpec | Path) -> Table:
    """Metadata rows keyed by image, and the rows that could not be used; ``findings`` (a template field) from
    the spec's finding columns or joined labels.

    A reason never holds a value of the table (a key is often a record number): the
    published reject line names the table and the line; the local one adds the key.
    """
    spec = _spec(table)
    out = Table(match=spec.match)
    for line in _lines(spec.file, spec.delimiter):
        stem = _key_of(line.value, spec)
        if line.error:
            out.problems.append(_problem(spec, "metadata", line, line.error))
        elif stem is None:
            out.problems.append(_problem(spec, "metadata", line, "row is not readable or has none of the "
                                         f"columns {spec.key or ', '.join(STEM_COLUMNS)}"))
        elif stem in out.rows:
            out.problems.append(_problem(spec, "metadata", line, f"second row for the image of line "
                                         f"{out.lines[stem]}"))
        else:
            out.rows[stem] = {**line.value, **findings_of(line.value, spec)}
            out.lines[stem] = line.number
    for problem in out.problems:  # an image whose row is broken gets no row at all, not the first one
        out.rows.pop(problem.stem or "", None)
    return out


def read_boxes(table: TableSpec | Path) -> Table:
    """Boxes (or world-millimetre spheres) grouped by image, and the rows that could not be used. A row whose
    coordinate cells are all blank is a negative: its image is known, without a box."""
    spec = _spec(table)
    out = Table(match=spec.match)
    for line in _lines(spec.file, spec.delimiter):
        row, stem = line.value, _key_of(line.value, spec)
        if line.error or stem is None:
            out.problems.append(_problem(spec, "boxes", line, line.error or "box row names no image"))
            continue
        out.lines.setdefault(stem, line.number)
        found = out.rows.setdefault(stem, [])
        try:
            shape = box_of(row, spec)
        except ValueError as exc:
            out.problems.append(_problem(spec, "boxes", line, str(exc)))
            continue
        if shape is not None:
            found.append(shape)
    return out


def read_curation(path: Path) -> dict[str, Curation]:
    """A curation file: CSV (``id,action,note``) or YAML (a list of such mappings)."""
    from builder.yamlsafe import load_yaml

    if path.suffix.lower() == ".csv":
        rows = list(_rows(path))
    else:
        rows = load_yaml(path.read_text(encoding="utf-8"), str(path)) or []
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of {{id, action, note}}")
    decisions: dict[str, Curation] = {}
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("id") or row.get("action") not in ("keep", "drop"):
            raise ValueError(f"{path}: entry {number} needs an id and action keep or drop, got {row!r}")
        decisions[str(row["id"])] = Curation(str(row["action"]), str(row.get("note") or ""))
    return decisions
