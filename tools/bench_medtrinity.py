"""Re-sharding the MedTrinity-25M release, and the drawn-box detector's precision and recall.

    python tools/bench_medtrinity.py [--rows 1200] [--boxes 300]

1. Re-shard: a replica of the ``25M_full`` layout (captions in Parquet, images in
   tar.zst shards, made from MedPix 2.0 train-256 images with green outlines drawn
   in) is turned into Parquet (a) the plain way: stream each shard with ``tarfile``
   + ``zstandard``, join members to captions with a dict, write Parquet with
   pyarrow, one process; (b) by ``medtri-build build --workers 1`` with everything
   on (modality decision, box recovery, accounting, per-modality configs). Both
   are timed as whole runs in this one run; the ratio is rows/s per core.
2. Boxes: images with 1-2 green rectangles drawn (width 1-3 px, JPEG quality
   60-95), some with a filled green-ish region; a found box is right at IoU >= 0.9.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from medtrinity_replica import make_full

from builder.pipeline.drawn_boxes import find_boxes

TRAIN = ROOT.parent / "shared" / "data" / "medpix-2.0" / "train-256" / "images"


def plain(root: Path, out: Path) -> int:
    """The plain way: tarfile + zstandard streaming, a dict join, pyarrow Parquet."""
    captions = {}
    for part in sorted((root / "25M_full").glob("*.parquet")):
        for row in pq.read_table(part).to_pylist():
            captions[os.path.basename(row["file_name"])] = row
    rows = []
    for shard in sorted((root / "25M_accessible").glob("*.tar.zst")):
        with open(shard, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh) as stream:
            try:
                with tarfile.open(fileobj=stream, mode="r|") as archive:
                    for member in archive:
                        row = captions.get(os.path.basename(member.name))
                        handle = archive.extractfile(member) if member.isfile() else None
                        if row is not None and handle is not None:
                            rows.append({"image": {"bytes": handle.read(), "path": None}, **row})
            except (tarfile.ReadError, zstandard.ZstdError, EOFError):
                pass
    pq.write_table(pa.Table.from_pylist(rows), out / "plain.parquet")
    return len(rows)


def reshard(rows: int) -> dict:
    images = sorted(TRAIN.glob("*.png"))
    images = (images * (rows // len(images) + 1))[:rows]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        replica = make_full(work / "release", images)
        start = time.perf_counter()
        plain_rows = plain(work / "release", work)
        plain_s = time.perf_counter() - start
        manifest = work / "m.yaml"
        manifest.write_text(json.dumps({"sources": [{"name": "medtrinity", "format": "medtrinity",
                                                     "root": str(work / "release"), "subset": "25M_full"}]}))
        env = dict(os.environ, MEDTRI_CACHE_DIR=str(work / "cache"), MEDTRI_CONFIG_DIR=str(work / "config"))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "builder", "build", str(manifest), "--out", str(work / "out"),
                        "--workers", "1"], check=True, env=env, capture_output=True)
        build_s = time.perf_counter() - start
        built = json.loads((work / "out" / "build.json").read_text())["rows"]["total"]
    return {"rows_expected": len(replica.rows), "plain_rows": plain_rows, "build_rows": built,
            "plain_rows_per_s": round(plain_rows / plain_s, 1), "build_rows_per_s": round(built / build_s, 1),
            "ratio_per_core": round((built / build_s) / (plain_rows / plain_s), 2)}


def iou(a: tuple, b: tuple) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def boxes(count: int) -> dict:
    rng = np.random.default_rng(0)
    images = sorted(TRAIN.glob("*.png"))
    hits = truths = found_total = 0
    started = time.perf_counter()
    for n in range(count):
        gray = np.asarray(Image.open(images[n % len(images)]).convert("L"))
        image = Image.fromarray(gray).convert("RGB")
        draw = ImageDraw.Draw(image)
        if n % 4 == 0:  # green-ish tissue
            draw.ellipse((10, 10, gray.shape[1] // 2, gray.shape[0] // 3), fill=(90, 160, 80))
        truth: list[tuple] = []
        for _ in range(int(rng.integers(1, 3))):
            w, h = (int(v) for v in rng.integers(16, min(gray.shape) // 2, 2))
            x0, y0 = int(rng.integers(0, gray.shape[1] - w)), int(rng.integers(0, gray.shape[0] - h))
            box = (x0, y0, x0 + w, y0 + h)
            if any(not (box[2] + 4 < t[0] or t[2] + 4 < box[0] or box[3] + 4 < t[1] or t[3] + 4 < box[1])
                   for t in truth):
                continue
            draw.rectangle((x0, y0, x0 + w - 1, y0 + h - 1), outline=(0, 255, 0), width=int(rng.integers(1, 4)))
            truth.append(box)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=int(rng.integers(60, 96)))
        found = find_boxes(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        hits += sum(any(iou(t, f) >= 0.9 for f in found) for t in truth)
        truths += len(truth)
        found_total += len(found)
    seconds = time.perf_counter() - started
    return {"images": count, "boxes": truths, "found": found_total, "recall": round(hits / truths, 3),
            "precision": round(hits / max(1, found_total), 3), "ms_per_image": round(1000 * seconds / count, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--boxes", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps({"reshard": reshard(args.rows), "boxes": boxes(args.boxes)}, indent=2))


if __name__ == "__main__":
    main()
