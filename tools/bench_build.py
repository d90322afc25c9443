"""End-to-end build throughput against a plain baseline, and memory as rows grow.

    python tools/bench_build.py throughput [--volumes 20 --dicoms 2000 --pngs 2000] [--runs 3]
    python tools/bench_build.py memory [--sizes 1000 10000 100000]

``throughput`` generates a realistic workload (NIfTI volumes 256x256x150 with
label maps, CT DICOM files 512x512, PNG images with masks), then times, in the
same run: the plain way (nibabel slicing through the image proxy, pydicom, Pillow
``save`` with default settings, rows gathered and written with pyarrow at the end),
``medtri-build build --workers 1`` and ``--workers 2``. It reports rows/s, rows/s
per core, the ratio to the baseline and peak RSS (medians of --runs runs); then the
build's own clock (``build.json``) against the codec bound (``tools/codec_bound.py``:
the same inputs decoded as the build decodes them and PNG-encoded, nothing else) in 1
and 2 processes.

``memory`` builds N small PNG images for each N and reports the build's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image


def make_workload(root: Path, volumes: int, dicoms: int, pngs: int) -> Path:
    import nibabel as nib
    import pydicom
    from pydicom.data import get_testdata_file

    rng = np.random.default_rng(0)
    (root / "nifti").mkdir(parents=True)
    grid = np.ogrid[:256, :256, :150]
    for i in range(volumes):
        body = ((grid[0] - 128) ** 2 / 110**2 + (grid[1] - 128) ** 2 / 90**2) <= 1
        volume = np.where(body, 40, -1000) + rng.normal(0, 10, (256, 256, 150))
        labels = np.zeros((256, 256, 150), np.uint8)
        labels[(grid[0] - 100) ** 2 + (grid[1] - 120) ** 2 + (grid[2] - 75) ** 2 < 30**2] = 1
        labels[(grid[0] - 160) ** 2 + (grid[1] - 130) ** 2 + (grid[2] - 60) ** 2 < 12**2] = 2
        affine = np.diag([0.8, 0.8, 2.0, 1])
        nib.save(nib.Nifti1Image(volume.astype(np.int16), affine), root / "nifti" / f"vol{i:03d}.nii.gz")
        nib.save(nib.Nifti1Image(labels, affine), root / "nifti" / f"vol{i:03d}_seg.nii.gz")
    (root / "dicom").mkdir()
    template = pydicom.dcmread(str(get_testdata_file("693_UNCR.dcm", download=False)))
    # a known-clean CT whose header vouches for its pixels: the workload measures the pipeline, not OCR (about
    # 0.5 s of a core an image a header does not vouch for: BENCHMARKS.md, "Burned-in text found by OCR")
    template.BurnedInAnnotation = "NO"
    for i in range(dicoms):
        template.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{i + 1}"
        template.InstanceNumber = i + 1
        template.save_as(root / "dicom" / f"ct{i:05d}.dcm")
    (root / "png").mkdir()
    for i in range(pngs):
        pixels = np.clip(rng.normal(120, 40, (256, 256)), 0, 255).astype(np.uint8)
        mask = np.zeros((256, 256), np.uint8)
        mask[60 + i % 50:120 + i % 50, 80:150] = 1
        Image.fromarray(pixels).save(root / "png" / f"img{i:05d}.png")
        Image.fromarray(mask).save(root / "png" / f"img{i:05d}_mask.png")
    manifest = {"sources": [
        {"name": "volumes", "format": "nifti", "images": "nifti/vol???.nii.gz", "masks": "nifti/*_seg.nii.gz",
         "labels": {1: "organ", 2: "lesion"}, "modality": "ct", "organ": "abdomen"},
        {"name": "dicoms", "format": "dicom", "images": "dicom/*.dcm"},
        {"name": "pngs", "format": "image", "images": "png/img?????.png", "masks": "png/*_mask.png",
         "labels": {1: "lesion"}, "modality": "xray"},
    ]}
    path = root / "sources.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def baseline(root: Path, out: Path) -> int:
    """The plain way: read, window, PNG with Pillow's defaults, one Parquet at the end."""
    import nibabel as nib
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pydicom

    def png(array: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    def window(values: np.ndarray) -> np.ndarray:
        return np.clip((values - (40 - 200)) / 400 * 255, 0, 255).astype(np.uint8)

    rows: list[dict[str, Any]] = []
    for path in sorted((root / "nifti").glob("vol???.nii.gz")):
        img: Any = nib.load(path)
        seg: Any = nib.load(str(path).replace(".nii.gz", "_seg.nii.gz"))
        for k in range(img.shape[2]):
            rows.append({"image": png(window(np.asarray(img.dataobj[:, :, k]))),
                         "mask": png(np.asarray(seg.dataobj[:, :, k]).astype(np.uint8)), "file": path.name})
    for path in sorted((root / "dicom").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        rows.append({"image": png(window(hu)), "mask": None, "file": path.name})
    for path in sorted((root / "png").glob("img?????.png")):
        rows.append({"image": png(np.asarray(Image.open(path))),
                     "mask": png(np.asarray(Image.open(str(path).replace(".png", "_mask.png")))), "file": path.name})
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "baseline.parquet")
    return len(rows)


def peak_rss(args: list[str]) -> float:
    """Peak RSS (MiB) of the largest process of a command (itself or a worker it waited for)."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    _, _, usage = os.wait4(process.pid, 0)
    return usage.ru_maxrss / 1024


def build_cmd(manifest: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out), "--workers", str(workers),
            "--overwrite", "--quiet", "--shard-units", "500"]


def throughput(args: argparse.Namespace) -> None:
    from codec_bound import codec_bound

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_workload(root / "src", args.volumes, args.dicoms, args.pngs)
        results: dict[str, list[tuple[float, float, int]]] = {}
        clock: dict[int, list[float]] = {}
        for _ in range(args.runs):
            start = time.perf_counter()
            rows = baseline(root / "src", root / "baseline")
            results.setdefault("plain baseline (1 process)", []).append((time.perf_counter() - start, 0.0, rows))
            for workers in (1, 2):
                out = root / f"built-{workers}"
                start = time.perf_counter()
                rss = peak_rss(build_cmd(manifest, out, workers))
                seconds = time.perf_counter() - start
                summary = json.loads((out / "build.json").read_text())
                total = summary["rows"]["total"]
                clock.setdefault(workers, []).append(summary["rows_per_second"])
                results.setdefault(f"medtri-build --workers {workers}", []).append((seconds, rss, total))
        base = statistics.median(r[2] / r[0] for r in results["plain baseline (1 process)"])
        print(f"workload: {args.volumes} NIfTI 256x256x150 + label maps, {args.dicoms} DICOM 512x512, "
              f"{args.pngs} PNG 256x256 + masks; {args.runs} runs, medians\n")
        print("| pipeline | rows | seconds | rows/s | rows/s per core | vs baseline per core | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|")
        for name, runs in results.items():
            seconds = statistics.median(r[0] for r in runs)
            rows = runs[0][2]
            cores = 2 if "--workers 2" in name else 1
            rate = rows / seconds
            rss = statistics.median(r[1] for r in runs)
            print(f"| {name} | {rows} | {seconds:.1f} | {rate:.0f} | {rate / cores:.0f} | "
                  f"{rate / cores / base:.2f}x | {rss:.0f} |" if rss else
                  f"| {name} | {rows} | {seconds:.1f} | {rate:.0f} | {rate:.0f} | 1.00x | - |")
        print("\n| workers | build clock rows/s | codec bound rows/s | build against the bound |\n|---|---|---|---|")
        for workers, rates in clock.items():
            bound = codec_bound(manifest, workers)
            rate = statistics.median(rates)
            print(f"| {workers} | {rate:.0f} | {bound:.0f} | {rate / bound:.2f} |")


def memory(args: argparse.Namespace) -> None:
    print("| rows | seconds | peak RSS MiB |\n|---|---|---|")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "img").mkdir()
            rng = np.random.default_rng(size)
            for i in range(size):
                Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(root / "img" / f"{i:06d}.png")
            manifest = root / "sources.yaml"
            manifest.write_text(yaml.safe_dump({"sources": [
                {"name": "small", "format": "image", "images": "img/*.png", "modality": "xray"}]}))
            start = time.perf_counter()
            rss = peak_rss(build_cmd(manifest, root / "out", 2))
            print(f"| {size:,} | {time.perf_counter() - start:.1f} | {rss:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    one = sub.add_parser("throughput")
    one.add_argument("--volumes", type=int, default=20)
    one.add_argument("--dicoms", type=int, default=2000)
    one.add_argument("--pngs", type=int, default=2000)
    one.add_argument("--runs", type=int, default=3)
    two = sub.add_parser("memory")
    two.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bytecode import compile_project

    compile_project()  # timed processes start as an installed build does (tools/bytecode.py)
    throughput(args) if args.mode == "throughput" else memory(args)


if __name__ == "__main__":
    main()
