"""Side tables of a source: label names, per-image metadata rows, box rows.

Metadata and boxes are CSV (with a header) or JSON (a list of objects, or JSON
lines), joined to images on the image's file stem (``scan01.nii.gz`` -> ``scan01``).
A row that cannot be used is returned as a problem, never dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from builder.errors import Problem
from builder.pipeline.data import Box, file_stem

STEM_COLUMNS = ("image", "file", "filename", "stem", "id")
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")





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


def _csv_lines(path: Path) -> Iterator[Line]:
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
    at = 0  # lines already read
    while at < len(lines):
        reader = csv.reader(iter(lines[at:]), strict=True)
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
            elif len(cells) == len(header):
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


def _lines(path: Path) -> Iterator[Line]:
    """The rows of a CSV or JSON table (a list, or JSON lines), each with its line number."""
    try:
        if path.suffix.lower() == ".csv":
            yield from _csv_lines(path)
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


def columns(path: Path) -> set[str]:
    """The column names of a metadata table (its first row's keys)."""
    for line in _lines(path):
        if not isinstance(line.value, dict):
            raise TableError(f"{path}: the first row is not an object with column names")
        return {str(k) for k in line.value}
    return set()


def _stem_of(row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    for key in STEM_COLUMNS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return file_stem(value.strip())
    return None


def _problem(path: Path, role: str, line: Line, reason: str) -> Problem:
    stem = _stem_of(line.value)
    local = f"{path}:{line.number}" + (f" ({stem})" if stem else "")  # the key only in the local log
    return Problem(local, reason, f"{role}:{line.number}", stem=stem)


@dataclass
class Table:
    """A side table's usable rows by image stem, the line each stem was first given on, and the unusable rows."""

    rows: dict[str, Any] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def read_metadata(path: Path) -> Table:
    """Metadata rows keyed by image stem, and the rows that could not be used.

    A reason never holds a value of the table (a key is often a record number): the
    published reject line names the table and the line; the local one adds the key.
    """
    table = Table()
    for line in _lines(path):
        stem = _stem_of(line.value)
        if line.error:
            table.problems.append(_problem(path, "metadata", line, line.error))
        elif stem is None:
            table.problems.append(_problem(path, "metadata", line, "row is not readable or has none of the "
                                                                   f"columns {', '.join(STEM_COLUMNS)}"))
        elif stem in table.rows:
            table.problems.append(_problem(path, "metadata", line, f"second row for the image of line "
                                                                   f"{table.lines[stem]}"))
        else:
            table.rows[stem] = line.value
            table.lines[stem] = line.number
    for problem in table.problems:  # an image whose row is broken gets no row at all, not the first one
        table.rows.pop(problem.stem or "", None)
    return table


def read_boxes(path: Path) -> Table:
    """Box rows grouped by image stem, and the rows that could not be used."""
    table = Table()
    for line in _lines(path):
        row, stem = line.value, _stem_of(line.value)
        if line.error or stem is None:
            table.problems.append(_problem(path, "boxes", line, line.error or "box row names no image"))
            continue
        try:
            coords = [float(row[key]) for key in BOX_COLUMNS]
        except (KeyError, TypeError, ValueError):
            table.problems.append(_problem(path, "boxes", line, f"box row needs numeric {', '.join(BOX_COLUMNS)}"))
            continue
        if not all(math.isfinite(c) for c in coords) or coords[2] <= coords[0] or coords[3] <= coords[1]:
            table.problems.append(_problem(path, "boxes", line, "empty or invalid box (x_max must exceed x_min "
                                                                "and y_max y_min, all finite)"))
            continue
        label = str(row.get("label") or "region")
        x_min, y_min, x_max, y_max = coords
        table.rows.setdefault(stem, []).append(Box(x_min, y_min, x_max, y_max, label))
        table.lines.setdefault(stem, line.number)
    return table


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
