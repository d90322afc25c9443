"""Side tables of a source: label names, per-image metadata rows, box rows.

Metadata and boxes are CSV (with a header) or JSON (a list of objects, or JSON
lines), joined to images on the image's file stem (``scan01.nii.gz`` -> ``scan01``).
A row that cannot be used is returned as a problem, never dropped silently.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from builder.errors import Problem
from builder.imaging import STEM_SUFFIXES
from builder.pipeline.roi import Box

STEM_COLUMNS = ("image", "file", "filename", "stem", "id")
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


def file_stem(path: str | Path) -> str:
    """The stem an image is joined on: its name without any image suffix."""
    name = Path(path).name
    for suffix in STEM_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


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
    """A CSV table read one physical line per row.

    Metadata tables hold one row per line: a quoted field never spans lines. A
    line with an unterminated quote is an error of that line alone (csv would
    otherwise merge every following row into one field, silently).
    """
    with path.open(newline="", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    header: list[str] | None = None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            cells = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            loose = next(csv.reader([text]), [])
            hint = dict(zip(header, loose)) if header else None
            yield Line(number, hint, f"line {number} is malformed CSV ({exc})")
            continue
        if header is None:
            header = cells
            continue
        if len(cells) != len(header):
            yield Line(number, dict(zip(header, cells)), f"line {number} has {len(cells)} fields, the header "
                                                         f"{len(header)}")
            continue
        yield Line(number, dict(zip(header, cells)))


def _lines(path: Path) -> Iterator[Line]:
    """The rows of a CSV or JSON table (a list, or JSON lines), each with its line number."""
    try:
        if path.suffix.lower() == ".csv":
            yield from _csv_lines(path)
            return
        text = path.read_text(encoding="utf-8")
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
    return Problem(f"{path}:{line.number}", reason, f"{role}:{line.number}", stem=_stem_of(line.value))


def read_metadata(path: Path) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Metadata rows keyed by image stem, and the rows that could not be used."""
    by_stem: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for line in _lines(path):
        stem = _stem_of(line.value)
        if line.error:
            problems.append(_problem(path, "metadata", line, line.error))
        elif stem is None:
            problems.append(_problem(path, "metadata", line, "row is not readable or has none of the columns "
                                                             f"{', '.join(STEM_COLUMNS)}"))
        elif stem in by_stem:
            problems.append(_problem(path, "metadata", line, f"second row for image {stem!r}"))
        else:
            by_stem[stem] = line.value
    for problem in problems:  # an image whose row is broken gets no row at all, not the first one
        by_stem.pop(problem.stem or "", None)
    return by_stem, problems


def read_boxes(path: Path) -> tuple[dict[str, list[Box]], list[Problem]]:
    """Box rows grouped by image stem, and the rows that could not be used."""
    by_stem: dict[str, list[Box]] = {}
    problems: list[Problem] = []
    for line in _lines(path):
        row, stem = line.value, _stem_of(line.value)
        if line.error or stem is None:
            problems.append(_problem(path, "boxes", line, line.error or "box row names no image"))
            continue
        try:
            coords = [float(row[key]) for key in BOX_COLUMNS]
        except (KeyError, TypeError, ValueError):
            problems.append(_problem(path, "boxes", line, f"box row needs numeric {', '.join(BOX_COLUMNS)}"))
            continue
        if not all(math.isfinite(c) for c in coords) or coords[2] <= coords[0] or coords[3] <= coords[1]:
            problems.append(_problem(path, "boxes", line, f"empty or invalid box {coords}"))
            continue
        label = str(row.get("label") or "region")
        x_min, y_min, x_max, y_max = coords
        by_stem.setdefault(stem, []).append(Box(x_min, y_min, x_max, y_max, label))
    return by_stem, problems


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
