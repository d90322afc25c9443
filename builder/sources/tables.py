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

from ..roi import Box

STEM_COLUMNS = ("image", "file", "filename", "stem", "id")
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


def file_stem(path: str | Path) -> str:
    """The stem an image is joined on: its name without any image suffix."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


@dataclass(frozen=True)
class Curation:
    """A person's decision on one row id: keep (despite the rules) or drop."""

    action: str  # "keep" | "drop"
    note: str = ""


@dataclass(frozen=True)
class Problem:
    file: str
    reason: str


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


def _rows(path: Path) -> Iterator[Any]:
    """The rows of a CSV or JSON table; a JSON line that does not parse yields None."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                yield from csv.DictReader(fh)
            return
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            yield from json.loads(text)
            return
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError) as exc:
        raise TableError(f"{path}: not a readable table ({type(exc).__name__}: {exc})") from None
    for line in text.splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield None


def columns(path: Path) -> set[str]:
    """The column names of a metadata table (its first row's keys)."""
    for row in _rows(path):
        if not isinstance(row, dict):
            raise TableError(f"{path}: the first row is not an object with column names")
        return {str(k) for k in row}
    return set()


def _stem_of(row: dict[str, Any]) -> str | None:
    for key in STEM_COLUMNS:
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return file_stem(value.strip())
    return None


def read_metadata(path: Path) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Metadata rows keyed by image stem, and the rows that could not be used."""
    by_stem: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    for number, row in enumerate(_rows(path), 1):
        stem = _stem_of(row) if isinstance(row, dict) else None
        if stem is None:
            problems.append(Problem(f"{path}:{number}", "row is not readable or has none of the columns "
                                                        f"{', '.join(STEM_COLUMNS)}"))
        elif stem in by_stem:
            problems.append(Problem(f"{path}:{number}", f"second row for image {stem!r}"))
        else:
            by_stem[stem] = row
    return by_stem, problems


def read_boxes(path: Path) -> tuple[dict[str, list[Box]], list[Problem]]:
    """Box rows grouped by image stem, and the rows that could not be used."""
    by_stem: dict[str, list[Box]] = {}
    problems: list[Problem] = []
    for number, row in enumerate(_rows(path), 1):
        where = f"{path}:{number}"
        stem = _stem_of(row) if isinstance(row, dict) else None
        if stem is None:
            problems.append(Problem(where, "box row names no image"))
            continue
        try:
            coords = [float(row[key]) for key in BOX_COLUMNS]
        except (KeyError, TypeError, ValueError):
            problems.append(Problem(where, f"box row needs numeric {', '.join(BOX_COLUMNS)}"))
            continue
        if not all(math.isfinite(c) for c in coords) or coords[2] <= coords[0] or coords[3] <= coords[1]:
            problems.append(Problem(where, f"empty or invalid box {coords}"))
            continue
        label = str(row.get("label") or "region")
        x_min, y_min, x_max, y_max = coords
        by_stem.setdefault(stem, []).append(Box(x_min, y_min, x_max, y_max, label))
    return by_stem, problems


def read_curation(path: Path) -> dict[str, Curation]:
    """A curation file: CSV (``id,action,note``) or YAML (a list of such mappings)."""
    import yaml

    if path.suffix.lower() == ".csv":
        rows = list(_rows(path))
    else:
        rows = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a list of {{id, action, note}}")
    decisions: dict[str, Curation] = {}
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not row.get("id") or row.get("action") not in ("keep", "drop"):
            raise ValueError(f"{path}: entry {number} needs an id and action keep or drop, got {row!r}")
        decisions[str(row["id"])] = Curation(str(row["action"]), str(row.get("note") or ""))
    return decisions
