"""The leakage gate of ``push``: benchmark test images found in a dataset's training splits.

Before a push, every folder named in the manifest's ``benchmarks:`` (kept in
``.private/benchmarks.json``: local paths are never published) and every
``--against`` folder (VQA-RAD, SLAKE, PathVQA test images, any folder of images,
or another built dataset) is audited against the dataset (:func:`builder.dataset.audit.audit`:
exact pixel copies and near-duplicates by DCT hashes). An image of a benchmark
found in any split that is not an evaluation split (:data:`EVALUATION_SPLITS`)
is leakage: ``push`` refuses unless ``--allow-leakage``, and the card states what
was checked and what was found either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from builder.dataset.audit import NEAR_THRESHOLD, items_of, near_pairs
from builder.layout import PRIVATE

__all__ = ["BENCHMARKS", "EVALUATION_SPLITS", "Leakage", "benchmarks_of", "card_section", "check"]

BENCHMARKS = f"{PRIVATE}/benchmarks.json"  # the manifest's benchmark folders, local paths: never published
EVALUATION_SPLITS = frozenset({"test", "validation", "val", "valid", "dev", "eval", "evaluation"})
MARK = "<!-- leakage -->"


@dataclass
class Leakage:
    """One benchmark folder checked: its images, and the dataset's training rows that copy them."""

    name: str
    images: int
    exact: list[str] = field(default_factory=list)  # dataset row ids: pixel-exact copies
    near: list[str] = field(default_factory=list)  # near-duplicates (re-encoded, resized, cropped)

    @property
    def found(self) -> int:
        return len(self.exact) + len(self.near)


def benchmarks_of(out: Path, against: tuple[Path, ...] = ()) -> list[Path]:
    """The manifest's benchmark folders recorded by the build, then ``against``; each once."""
    recorded = out / BENCHMARKS
    named = [Path(p) for p in json.loads(recorded.read_text(encoding="utf-8"))] if recorded.is_file() else []
    return list(dict.fromkeys([*named, *against]))


def check(out: Path, folders: list[Path], threshold: int = NEAR_THRESHOLD) -> list[Leakage]:
    """Each benchmark folder against the dataset's training rows: the rows that are a benchmark image's pixel copy
    or its near-duplicate themselves (pairs, not groups: a training row's own near twins do not count)."""
    if not folders:
        return []
    skipped: list[dict[str, str]] = []
    training = [item for item in items_of(out, "dataset", skipped) if item.split.lower() not in EVALUATION_SPLITS]
    found = []
    for folder in folders:
        benchmark = list(items_of(folder, "against", skipped))
        hashes = {item.exact for item in benchmark}
        exact = sorted({item.id for item in training if item.exact in hashes})
        items = training + benchmark
        near = sorted({items[a].id if items[a].origin == "dataset" else items[b].id
                       for a, b in near_pairs(items, threshold) if items[a].origin != items[b].origin} - set(exact))
        found.append(Leakage(folder.name, len(benchmark), exact, near))
    return found


def card_section(found: list[Leakage], allowed: bool) -> str:
    """What the card says of the check (placed between two marks, so a later push replaces it)."""
    if not found:
        return ""
    lines = [MARK, "## Leakage checked", "",
             "Before this upload every image of these benchmark folders was compared with the dataset's training "
             "rows (pixel-exact copies, and near-duplicates by 64-bit DCT hashes within "
             f"{NEAR_THRESHOLD} bits: re-encoded, resized and cropped copies):", "",
             "| benchmark | images | exact copies in training | near copies in training |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {f.images:,} | {len(f.exact):,} | {len(f.near):,} |" for f in found]
    total = sum(f.found for f in found)
    lines += ["", (f"**{total:,} training rows copy a benchmark image; pushed with `--allow-leakage`.** Leave them "
                   "out of training before evaluating on these benchmarks." if total and allowed else
                   "No benchmark image was found in the training rows."), MARK]
    return "\n".join(lines)
