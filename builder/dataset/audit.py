"""``medtri-build audit``: duplicates within a dataset, across its splits, and leakage.

Every image is decoded and fingerprinted twice:

- **exact**: a hash of the decoded pixels (shape, type and values), the same one
  ``build --dedup`` uses, so a re-compressed PNG of the same pixels still matches;
- **near**: 64-bit DCT hashes (pHash) of the image's content: gray, cropped to the
  box of its non-background pixels, area-resized to 32x32, contrast-normalised,
  the signs of its 8x8 lowest DCT frequencies against their median. The whole
  content and two central crops (90%, 80%) are hashed, so a cropped copy still
  matches one of them. Two images are near-duplicates when some pair of their
  hashes differs in at most ``threshold`` bits (default :data:`NEAR_THRESHOLD` = 8).
  On the benchmark of ``tools/bench_audit.py`` (BENCHMARKS.md) resized + JPEG,
  re-encoded and contrast-shifted copies are all found; crops of 4-10% a side
  two times in three.

``--against OTHER`` adds a second dataset folder, or any folder of images (an
evaluation benchmark), and reports only the groups that straddle both. Images
that do not decode (a decompression bomb, a broken file) are listed as skipped.
Candidate pairs come from blocks of the hashes (pigeonhole), not from comparing
every pair.
"""

from __future__ import annotations

import io
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

from builder.dataset.shards import iter_rows
from builder.imaging import RASTER_SUFFIXES, gray, pixel_hash

NEAR_THRESHOLD = 8
HASH = 32  # side of the image the DCT runs on
SCALES = (1.0, 0.9, 0.8)  # central parts hashed: the whole content, and two crops


@dataclass(frozen=True)
class Item:
    id: str  # a row id, or "<folder name>:<relative path>" for an image of a folder
    split: str
    origin: str  # "dataset" or "against"
    exact: str
    near: tuple[int, ...]  # DCT hashes of the content at several central scales (crops match one of them)


def content_box(values: np.ndarray) -> tuple[int, int, int, int]:
    """The box of the image's content: pixels brighter than a tenth of its range (a scan without its border)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return 0, 0, values.shape[1], values.shape[0]
    bright = values > low + 0.1 * (high - low)
    rows = np.flatnonzero(bright.any(axis=1))
    cols = np.flatnonzero(bright.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _dct_hash(gray: np.ndarray) -> int:
    from scipy.fft import dctn

    img = Image.fromarray(gray).resize((HASH, HASH), Image.Resampling.BOX)
    values = np.asarray(img, dtype=np.float32)
    values = (values - values.mean()) / (values.std() + 1e-6)
    coefficients = dctn(values, norm="ortho")[:8, :8].ravel()
    bits = coefficients > np.median(coefficients[1:])
    bits[0] = False
    return int("".join("1" if b else "0" for b in bits), 2)


def phash(pixels: np.ndarray, scales: tuple[float, ...] = SCALES) -> tuple[int, ...]:
    """64-bit DCT hashes of the content: robust to resizing, re-encoding, borders and contrast.

    The image in gray, cropped to its content box; then for each scale its
    central part (1.0: all of it), resized to 32x32 by area averaging,
    contrast-normalised; the 8x8 lowest frequencies of its 2D DCT (DC aside)
    compared with their median. A cropped copy matches the original at one of
    the smaller scales.
    """
    values = gray(pixels)
    x0, y0, x1, y1 = content_box(values)
    content = values[y0:y1, x0:x1]
    hashes = []
    for scale in scales:
        height, width = content.shape
        dy, dx = int(height * (1 - scale) / 2), int(width * (1 - scale) / 2)
        part = content[dy:height - dy, dx:width - dx]
        hashes.append(_dct_hash(part if part.size else content))
    return tuple(hashes)


def decode(data: bytes) -> np.ndarray:
    """Pixels of an image file's bytes; a decompression bomb is an error, not a memory spike."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img)


def _item(data: bytes, item_id: str, split: str, origin: str) -> Item:
    pixels = decode(data)
    return Item(item_id, split, origin, pixel_hash(pixels), phash(pixels))


def dataset_items(folder: Path, origin: str, skipped: list[dict[str, str]]) -> Iterator[Item]:
    for split, row in iter_rows(folder, ["id", "image"], batch_size=128):
        if not row["image"]:  # pixels withheld by the source's terms: nothing to compare
            continue
        try:
            yield _item(row["image"]["bytes"], row["id"], split, origin)
        except Exception as exc:  # an undecodable row: reported, not a crash
            skipped.append({"id": row["id"], "reason": f"{type(exc).__name__}: {exc}"})


def folder_items(folder: Path, origin: str, skipped: list[dict[str, str]]) -> Iterator[Item]:
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES):
        name = f"{folder.name}:{path.relative_to(folder).as_posix()}"
        try:
            yield _item(path.read_bytes(), name, "-", origin)
        except Exception as exc:  # not an image after all, or a decompression bomb
            skipped.append({"id": name, "reason": f"{type(exc).__name__}: {exc}"})


def items_of(folder: Path, origin: str, skipped: list[dict[str, str]]) -> Iterator[Item]:
    if (folder / "data").is_dir():
        return dataset_items(folder, origin, skipped)
    return folder_items(folder, origin, skipped)


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


def near_pairs(items: list[Item], threshold: int) -> Iterator[tuple[int, int]]:
    """Pairs of items with some hash of one within ``threshold`` bits of some hash of the other.

    Candidates come from blocks of the hashes (pigeonhole: two hashes within
    ``threshold`` bits agree exactly on one of ``threshold + 1`` blocks), never
    from comparing every pair.
    """
    blocks = threshold + 1
    width = -(-64 // blocks)
    seen: set[tuple[int, int]] = set()
    entries = [(i, h) for i, item in enumerate(items) for h in item.near]
    for block in range(blocks):
        buckets: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for i, value in entries:
            buckets[(value >> (block * width)) & ((1 << width) - 1)].append((i, value))
        for members in buckets.values():
            for x, (a, ha) in enumerate(members):
                for b, hb in members[x + 1:]:
                    pair = (min(a, b), max(a, b))
                    if a != b and pair not in seen and bin(ha ^ hb).count("1") <= threshold:
                        seen.add(pair)
                        yield pair


def audit(out: Path, against: Path | None = None, threshold: int = NEAR_THRESHOLD) -> dict[str, Any]:
    skipped: list[dict[str, str]] = []
    items = list(items_of(out, "dataset", skipped))
    if against is not None:
        items += list(items_of(against, "against", skipped))
    exact, near = _Groups(len(items)), _Groups(len(items))
    by_hash: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.exact in by_hash:
            exact.union(i, by_hash[item.exact])
        by_hash.setdefault(item.exact, i)
    for a, b in near_pairs(items, threshold):
        if items[a].exact != items[b].exact:
            near.union(a, b)

    def report(groups: list[list[int]]) -> list[list[dict[str, str]]]:
        kept = [g for g in groups if against is None or len({items[i].origin for i in g}) == 2]
        return [[{"id": items[i].id, "split": items[i].split, "origin": items[i].origin} for i in g] for g in kept]

    return {"images": len(items), "against_images": sum(item.origin == "against" for item in items),
            "threshold": threshold, "against": str(against) if against else None,
            "exact": report(exact.groups()), "near": report(near.groups()), "skipped": skipped}


def ids_only(report: dict[str, Any]) -> dict[str, Any]:
    """The JSON form: ``exact`` and ``near`` as lists of groups of ids."""
    return {**report, "exact": [[m["id"] for m in g] for g in report["exact"]],
            "near": [[m["id"] for m in g] for g in report["near"]]}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Duplicate audit\n\n{report['images']} images; near-duplicates within {report['threshold']} of 64 "
             f"DCT-hash bits" + (f"; against {report['against']}" if report["against"] else "") + "."]
    if report.get("skipped"):
        lines += [f"\n{len(report['skipped'])} image(s) could not be decoded and were skipped:"]
        lines += [f"- `{s['id']}`: {s['reason']}" for s in report["skipped"][:50]]
    for kind in ("exact", "near"):
        groups = report[kind]
        cross = sum(len({m["split"] for m in g}) > 1 for g in groups)
        lines += [f"\n## {kind.capitalize()} duplicates: {len(groups)} groups ({cross} across splits)\n"]
        if groups:
            lines += ["| group | id | split | from |", "|---|---|---|---|"]
            lines += [f"| {n} | `{m['id']}` | {m['split']} | {m['origin']} |"
                      for n, group in enumerate(groups, 1) for m in group]
    return "\n".join(lines)
