"""``medtri-build export medpix``: a MedPix 2.0 build back in its authors' shape, and its ``cases`` table.

A ``format: medpix`` build keeps each image's published documents verbatim in
the ``record`` column (``{"description": {...}, "case": {...}, "order": n}``):
the image description of ``Descriptions.json`` and the clinical case of
``Case_topic.json``, with every key and value as published ("N/A" and nulls
included). The export writes ``Descriptions.json`` (every kept image, in the
authors' order), ``Case_topic.json`` (every case of a kept image, once) and
``images/``: the way into the authors' MongoDB tool (``mongoimport --jsonArray``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from builder.dataset.shards import iter_rows

__all__ = ["case_rows", "export_medpix", "records"]


class MedpixExportError(ValueError):
    """A folder whose rows carry no MedPix documents."""


def snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def records(out: Path, config: str | None = None) -> Iterator[tuple[dict[str, Any], bytes]]:
    """(record, image bytes) of every row whose source published its documents."""
    for _, row in iter_rows(out, ["record", "image"], config=config, batch_size=128):
        if row.get("record"):
            yield json.loads(row["record"]), row["image"]["bytes"]


def export_medpix(out: Path, dest: Path, config: str | None = None, **_: Any) -> int:
    """``Descriptions.json``, ``Case_topic.json`` and ``images/`` of every kept image; returns the image count."""
    descriptions: list[tuple[int, dict[str, Any]]] = []
    cases: dict[str, tuple[int, dict[str, Any]]] = {}
    (dest / "images").mkdir(parents=True, exist_ok=True)
    for record, image in records(out, config):
        description = record["description"]
        stem = str(description.get("image"))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", stem):
            continue  # never a path outside images/
        (dest / "images" / f"{stem}.png").write_bytes(image)
        descriptions.append((int(record.get("order", 0)), description))
        case = record.get("case")
        if isinstance(case, dict) and str(case.get("U_id")) not in cases:
            cases[str(case.get("U_id"))] = (int(record.get("case_order", 0)), case)
    if not descriptions:
        raise MedpixExportError(f"{out} holds no MedPix documents (build it with format: medpix)")
    documents = [d for _, d in sorted(descriptions, key=lambda item: item[0])]
    topics = [c for _, c in sorted(cases.values(), key=lambda item: item[0])]
    (dest / "Descriptions.json").write_text(json.dumps(documents, ensure_ascii=False, indent=1), encoding="utf-8")
    (dest / "Case_topic.json").write_text(json.dumps(topics, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(documents)


def case_rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per clinical case: ``case_id`` and every ``Case.*`` and ``Topic.*`` field, snake_case.

    Topic fields whose name a Case field already has are prefixed ``topic_`` (``Topic.Title`` ->
    ``topic_title``); the rest keep their names (``Topic.ACR Code`` -> ``acr_code``, ``Topic.Category``
    -> ``category``, ``Topic.Disease Discussion`` -> ``disease_discussion``).
    """
    rows = []
    for case in cases:
        row: dict[str, Any] = {"case_id": case.get("U_id")}
        report: dict[str, Any] = case["Case"] if isinstance(case.get("Case"), dict) else {}
        topic: dict[str, Any] = case["Topic"] if isinstance(case.get("Topic"), dict) else {}
        for key, value in report.items():
            row[snake(key)] = value
        for key, value in topic.items():
            name = snake(key)
            row[f"topic_{name}" if name in row or name == "title" else name] = value
        row["ct_images"] = case.get("TAC")
        row["mr_images"] = case.get("MRI")
        rows.append(row)
    return rows
