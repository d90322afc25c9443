"""Streaming a built dataset into a torch DataLoader, against reading PNGs from a folder.

    python tools/bench_stream.py [--rows 4000] [--workers 2] [--runs 3]

Builds ROWS 256x256 PNG images into a dataset (16 shards), then measures samples/s,
each with a ``DataLoader`` of ``--workers`` workers and batches of 32, each sample
decoded to a numpy array:

- ``load_dataset(..., streaming=True)``, images decoded by ``datasets``;
- ``medtrinity_25m.stream()``: only the image column, decoded straight to numpy;
- the same PNG files read from a folder;
- the bound: the PNG bytes the dataset holds, already in memory, only decoded.
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


class Folder:  # a map-style dataset over PNG files
    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(Image.open(self.files[i]))


class Bytes:  # the bound: decoding only
    """All PNG bytes in one buffer: a list of bytes objects would be copied page by page into each forked
    DataLoader worker as reading them touches their reference counts, and measure that instead of decoding."""

    def __init__(self, blobs: list[bytes]) -> None:
        self.buffer = np.frombuffer(b"".join(blobs), np.uint8)
        self.ends = np.cumsum([len(b) for b in blobs])

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> np.ndarray:
        start = int(self.ends[i - 1]) if i else 0
        return _decode(self.buffer[start:int(self.ends[i])].tobytes())


def _streamed(out: Path):
    from datasets import load_dataset

    ds = load_dataset(str(out), "xray", split="train", streaming=True)
    return ds.map(lambda row: {"pixels": np.asarray(row["image"])}, remove_columns=list(ds.features))


def _fast(out: Path):
    from medtrinity_25m import stream

    return stream(str(out), "xray", columns=("image",))


def _stored(out: Path) -> list[bytes]:
    import pyarrow.parquet as pq

    return [row["bytes"] for shard in sorted((out / "data").rglob("*.parquet"))
            for row in pq.read_table(shard, columns=["image"]).column("image").to_pylist()]


def rate(dataset, workers: int) -> tuple[float, int]:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=32, num_workers=workers, collate_fn=lambda batch: batch)
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += len(batch)
    return count / (time.perf_counter() - start), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:256, :256]
        for i in range(args.rows):  # smooth, image-like content: PNG sizes as for real scans
            pixels = (120 + 60 * np.sin(xx / (9 + i % 7)) * np.cos(yy / 13) + rng.normal(0, 6, (256, 256)))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / "img" / f"{i:05d}.png")
        (root / "sources.yaml").write_text(yaml.safe_dump({"sources": [
            {"name": "bench", "format": "image", "images": "img/*.png", "modality": "xray"}]}))
        out = root / "built"
        subprocess.run([sys.executable, "-m", "builder", "build", str(root / "sources.yaml"), "--out", str(out),
                        "--quiet", "--shard-units", str(max(1, args.rows // 16))], check=True)
        files = sorted((root / "img").glob("*.png"))
        blobs = _stored(out)  # the bound decodes the very bytes the dataset streams
        cases = {"load_dataset(streaming=True)": lambda: _streamed(out),
                 "medtrinity_25m.stream()": lambda: _fast(out), "PNG files in a folder": lambda: Folder(files),
                 "decode bound (PNG bytes in memory)": lambda: Bytes(blobs)}
        results = {}
        for name, make in cases.items():
            runs = [rate(make(), args.workers) for _ in range(args.runs)]
            assert all(count == args.rows for _, count in runs), f"{name} did not yield every row once"
            results[name] = statistics.median(r for r, _ in runs)
        bound = results["decode bound (PNG bytes in memory)"]
        print(f"{args.rows} rows of 256x256 PNG, DataLoader with {args.workers} workers, batches of 32, "
              f"median of {args.runs} runs\n")
        print("| source | samples/s | share of the decode bound |\n|---|---|---|")
        for name, value in results.items():
            print(f"| {name} | {value:,.0f} | {value / bound:.0%} |")


if __name__ == "__main__":
    main()
