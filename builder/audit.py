"""``medtri-build audit``: duplicates within a dataset, across its splits, and leakage.

Every image is decoded and fingerprinted twice:

- **exact**: a hash of the decoded pixels (shape, type and values), the same one
  ``build --dedup`` uses, so a re-compressed PNG of the same pixels still matches;
- **near**: a 64-bit difference hash (dHash): the image in gray, resized to 9x8,
  one bit per horizontal neighbour comparison. Two images are near-duplicates
  when their hashes differ in at most ``threshold`` bits (default
  :data:`NEAR_THRESHOLD` = 6 of 64): a resized, re-encoded or slightly
  re-windowed copy stays within 0-4 bits, unrelated scans differ by ~20-35.

``--against OTHER`` adds a second dataset folder, or any folder of images (an
evaluation benchmark), and reports only the groups that straddle both.
Candidate pairs are found through 7 blocks of the hash (pigeonhole: two hashes
within 6 bits share one block exactly), not by comparing every pair.
"""

from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from .shards import iter_rows
from .triplets import pixel_hash

NEAR_THRESHOLD = 6
BLOCKS = 7
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Item:
    id: str  # a row id, or "<folder name>:<relative path>" for an image of a folder
    split: str
    origin: str  # "dataset" or "against"
    exact: str
    near: int


def dhash(pixels: np.ndarray) -> int:
    img = Image.fromarray(pixels).convert("L").resize((9, 8), Image.Resampling.BOX)
    values = np.asarray(img, dtype=np.int16)
    bits = (values[:, 1:] > values[:, :-1]).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def _item(data: bytes, item_id: str, split: str, origin: str) -> Item:
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    return Item(item_id, split, origin, pixel_hash(pixels), dhash(pixels))


def dataset_items(folder: Path, origin: str) -> Iterator[Item]:
    for split, row in iter_rows(folder, ["id", "image"], batch_size=128):
        yield _item(row["image"]["bytes"], row["id"], split, origin)


def folder_items(folder: Path, origin: str) -> Iterator[Item]:
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            yield _item(path.read_bytes(), f"{folder.name}:{path.relative_to(folder).as_posix()}", "-", origin)
        except OSError:
            continue  # not an image after all


def items_of(folder: Path, origin: str) -> Iterator[Item]:
    return dataset_items(folder, origin) if (folder / "data").is_dir() else folder_items(folder, origin)


class _Groups:
    """Union-find over item indices."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> list[list[int]]:
        found: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            found[self.find(i)].append(i)
        return [g for g in found.values() if len(g) > 1]


def _near_pairs(items: list[Item], threshold: int) -> Iterator[tuple[int, int]]:
    width = 64 // BLOCKS + 1
    seen: set[tuple[int, int]] = set()
    for block in range(BLOCKS):
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            buckets[(item.near >> (block * width)) & ((1 << width) - 1)].append(i)
        for members in buckets.values():
            for x, a in enumerate(members):
                for b in members[x + 1:]:
                    if (a, b) not in seen and bin(items[a].near ^ items[b].near).count("1") <= threshold:
                        seen.add((a, b))
                        yield a, b


def audit(out: Path, against: Path | None = None, threshold: int = NEAR_THRESHOLD) -> dict[str, Any]:
    items = list(items_of(out, "dataset"))
    if against is not None:
        items += list(items_of(against, "against"))
    exact, near = _Groups(len(items)), _Groups(len(items))
    by_hash: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.exact in by_hash:
            exact.union(i, by_hash[item.exact])
        by_hash.setdefault(item.exact, i)
    for a, b in _near_pairs(items, threshold):
        if items[a].exact != items[b].exact:
            near.union(a, b)

    def report(groups: list[list[int]]) -> list[list[dict[str, str]]]:
        kept = [g for g in groups if against is None or len({items[i].origin for i in g}) == 2]
        return [[{"id": items[i].id, "split": items[i].split, "origin": items[i].origin} for i in g] for g in kept]

    return {"images": len(items), "threshold": threshold, "against": str(against) if against else None,
            "exact": report(exact.groups()), "near": report(near.groups())}


def ids_only(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON form: ``exact`` and ``near`` as lists of groups of ids."""
    return {**report, "exact": [[m["id"] for m in g] for g in report["exact"]],
            "near": [[m["id"] for m in g] for g in report["near"]]}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Duplicate audit\n\n{report['images']} images; near-duplicates within {report['threshold']} of 64 "
             f"dHash bits" + (f"; against {report['against']}" if report["against"] else "") + "."]
    for kind in ("exact", "near"):
        groups = report[kind]
        cross = sum(len({m["split"] for m in g}) > 1 for g in groups)
        lines += [f"\n## {kind.capitalize()} duplicates: {len(groups)} groups ({cross} across splits)\n"]
        if groups:
            lines += ["| group | id | split | from |", "|---|---|---|---|"]
            lines += [f"| {n} | `{m['id']}` | {m['split']} | {m['origin']} |"
                      for n, group in enumerate(groups, 1) for m in group]
    return "\n".join(lines)
