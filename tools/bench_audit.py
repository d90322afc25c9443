"""Leakage audit: precision and recall of near-duplicate detection on planted copies.

Originals are real scans (MedPix 2.0 train-256 from ../shared/data, else the
pydicom-data images). For each of N originals a copy is planted, one kind each
in turn: resized (60-90%) and saved as JPEG, re-encoded as JPEG (quality 60-85),
cropped (4-10% off each side), contrast-shifted (gamma 0.7-1.4 or a linear
change). Look-alikes are the other originals: one image per clinical case, so other
patients' scans of the same modalities (CT, MR) and body regions. Every pair the
audit reports that is not an (original, its copy) pair is a false positive.

    python tools/bench_audit.py [--n 200] [--threshold 10]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from builder.dataset.audit import NEAR_THRESHOLD, Item, near_pairs, phash
from builder.imaging import pixel_hash

MEDPIX = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "medpix-2.0" / "train-256"
KINDS = ("resized+jpeg", "jpeg", "cropped", "contrast")


def originals(n: int) -> list[tuple[str, np.ndarray]]:
    """One image per clinical case (another patient each): unrelated scans of the same modalities and regions."""
    files = sorted((MEDPIX / "images").glob("*.png"))
    if not files:
        raise SystemExit(f"needs {MEDPIX} (reference data beside the repository)")
    cases: dict[str, Path] = {}
    for path in files:
        cases.setdefault(path.stem.split("_")[0], path)
    return [(p.stem, np.asarray(Image.open(p).convert("L"))) for p in list(cases.values())[:n]]


def _jpeg(img: Image.Image, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def copy_of(pixels: np.ndarray, kind: str, rng: random.Random) -> np.ndarray:
    img = Image.fromarray(pixels)
    if kind == "resized+jpeg":
        scale = rng.uniform(0.6, 0.9)
        return _jpeg(img.resize((max(8, int(img.width * scale)), max(8, int(img.height * scale)))),
                     rng.randint(70, 90))
    if kind == "jpeg":
        return _jpeg(img, rng.randint(60, 85))
    if kind == "cropped":
        h, w = pixels.shape[:2]
        dx, dy = int(w * rng.uniform(0.04, 0.10)), int(h * rng.uniform(0.04, 0.10))
        return pixels[dy:h - dy, dx:w - dx].copy()
    values = pixels.astype(np.float32) / 255.0
    if rng.random() < 0.5:
        values = values ** rng.uniform(0.7, 1.4)
    else:
        values = values * rng.uniform(0.75, 0.95) + rng.uniform(0.02, 0.1)
    return np.clip(values * 255, 0, 255).astype(np.uint8)


def evaluate(items: list[Item], truth: set[tuple[str, str]], threshold: int) -> dict[str, float]:
    """Recall of the planted pairs; precision over every pair the audit reports directly (exact or near)."""
    found: set[tuple[str, str]] = set()
    by_hash: dict[str, list[str]] = defaultdict(list)
    for item in items:
        by_hash[item.exact].append(item.id)
    for ids in by_hash.values():
        found |= {(x, y) for x in ids for y in ids if x < y}
    for a, b in near_pairs(items, threshold):
        found.add(tuple(sorted((items[a].id, items[b].id))))  # type: ignore[arg-type]
    hits = len(found & truth)
    return {"threshold": threshold, "pairs_reported": len(found), "recall": hits / len(truth),
            "precision": hits / len(found) if found else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=535)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    items: list[Item] = []
    truth: set[tuple[str, str]] = set()
    per_kind: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for number, (stem, pixels) in enumerate(originals(args.n)):
        items.append(Item(stem, "-", "dataset", pixel_hash(pixels), phash(pixels)))
        if number % 2:  # half the originals get a copy; the rest are look-alikes only
            continue
        kind = KINDS[(number // 2) % len(KINDS)]
        copy = copy_of(pixels, kind, rng)
        items.append(Item(f"copy:{stem}", "-", "against", pixel_hash(copy), phash(copy)))
        first, second = sorted((stem, f"copy:{stem}"))
        pair = (first, second)
        truth.add(pair)
        per_kind[kind].add(pair)
    results = [evaluate(items, truth, t) for t in (4, 6, 8, 10, 12, 14)]
    chosen = evaluate(items, truth, NEAR_THRESHOLD)
    kinds = {}
    for kind, pairs in per_kind.items():
        kinds[kind] = evaluate(items, pairs, NEAR_THRESHOLD)["recall"]
    print(json.dumps({"images": len(items), "copies": len(truth), "default": chosen, "recall_by_kind": kinds,
                      "sweep": results}, indent=1))


if __name__ == "__main__":
    main()
