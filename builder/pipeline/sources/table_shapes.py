"""A side-table row as what it annotates: a box in one of the published box forms, a world-millimetre sphere, or
the findings of a label table (said as the table says them: an uncertain finding is never a positive one)."""

from __future__ import annotations

import math
from typing import Any

from builder.pipeline.data import Box, Sphere
from builder.pipeline.sources.table_spec import TableSpec

__all__ = ["NO_FINDING", "box_of", "finding_text", "findings_of"]

NO_FINDING = "no finding"
POSITIVE, UNCERTAIN = 1.0, -1.0  # CheXpert's and MIMIC-CXR's label values; 0 negative, blank not mentioned


def _number(row: dict[str, Any], column: str) -> float | None:
    value = row.get(column)
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    number = float(text)  # ValueError: the caller's reason
    if not math.isfinite(number):
        raise ValueError(f"column {column!r} is not a finite number")
    return number


def _label(row: dict[str, Any], spec: TableSpec) -> str:
    if spec.label is not None:
        return spec.label
    value = row.get(spec.column("label"))
    return str(value).strip() if value not in (None, "") and str(value).strip() else "region"


def box_of(row: dict[str, Any], spec: TableSpec) -> Box | Sphere | None:
    """The row's box (pixel edges, or normalised) or sphere; None for a negative (every coordinate cell blank);
    a ValueError saying what is wrong otherwise."""
    try:
        values = [_number(row, spec.column(role)) for role in spec.roles]
    except ValueError:
        raise ValueError(f"box row needs numbers in {', '.join(spec.column(r) for r in spec.roles)}") from None
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise ValueError(f"box row lacks some of {', '.join(spec.column(r) for r in spec.roles)}")
    a, b, c, d = (float(v) for v in values if v is not None)
    label = _label(row, spec)
    if spec.units == "world_mm":
        if d <= 0:
            raise ValueError("a sphere needs a positive diameter")
        return Sphere(a, b, c, d, label)
    corners = {"xyxy": (a, b, c, d), "voc": (a - 1, b - 1, c, d), "xywh": (a, b, a + c, b + d),
               "cxcywh_norm": (a - c / 2, b - d / 2, a + c / 2, b + d / 2)}[spec.box]
    if corners[2] <= corners[0] or corners[3] <= corners[1]:
        raise ValueError("empty or invalid box (x_max must exceed x_min and y_max y_min)")
    return Box(*corners, label=label, normalised=spec.box == "cxcywh_norm")


def finding_text(positive: list[str], uncertain: list[str]) -> str:
    """Findings as a disease phrase: "Pneumothorax", "Lung Opacity, Support Devices; uncertain: Consolidation"."""
    named = [f for f in positive if f.strip().lower() != NO_FINDING]
    text = ", ".join(named) or (NO_FINDING if positive else "")
    if uncertain:
        text = f"{text}; uncertain: {', '.join(uncertain)}" if text else f"uncertain: {', '.join(uncertain)}"
    return text


def findings_of(row: dict[str, Any], spec: TableSpec) -> dict[str, str]:
    """``{"findings": text}`` for a label table (one column per finding, or one column of joined labels)."""
    if spec.findings:
        positive, uncertain = [], []
        for column in spec.findings:
            try:
                value = _number(row, column)
            except ValueError:
                value = None
            if value == POSITIVE:
                positive.append(column)
            elif value == UNCERTAIN:
                uncertain.append(column)
        return {"findings": finding_text(positive, uncertain)}
    if spec.label_sep:
        cell = str(row.get(spec.column("label")) or "")
        return {"findings": finding_text([p.strip() for p in cell.split(spec.label_sep) if p.strip()], [])}
    return {}
