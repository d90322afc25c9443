"""Many-ROI atlases: build throughput on Colin27 + AAL (116 labels), against the plain way, in one run.

    python tools/bench_atlas.py [--copies 6] [--runs 3] [--profile]

The workload is ``--copies`` copies of ``../shared/data/colin27-aal`` (the T1 volume
and its AAL label volume on the same grid), every axial slice that holds a label.
Each of ``--runs`` runs times, as whole processes, one after the other:

- the plain way, 1 process: nibabel, for each slice a bounding box and area per
  label with numpy (one pass over the slice per label), Pillow PNG with its
  defaults for the image and the mask, rows written with pyarrow;
- ``medtri-build build --workers 1`` and ``--workers 2``;
- ``--workers 1`` on the same slices with their labels merged into 2 (the per-row
  cost must not grow with the ROIs).

Then the codec bound (``tools/codec_bound.py``): the same slices decoded as the build
decodes them and PNG-encoded (image and stored mask), nothing else, in 1 and 2 warm
processes, against the builds' own clocks (``build.json``). Every ratio is reported
per run (this machine's speed drifts by a fifth within minutes) and as the median.
With ``--profile``: where one worker's time goes (cProfile of the worker's own
function on one volume).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COLIN = ROOT.parent / "shared" / "data" / "colin27-aal"
sys.path.insert(0, str(ROOT))


def workload(folder: Path, copies: int, labels: Path | None = None) -> Path:
    (folder / "vol").mkdir(parents=True)
    for i in range(copies):
        shutil.copy(COLIN / "ch2.nii.gz", folder / "vol" / f"colin{i:02d}.nii.gz")
        shutil.copy(labels or COLIN / "aal.nii.gz", folder / "vol" / f"colin{i:02d}_seg.nii.gz")
    manifest = folder / "atlas.yaml"
    manifest.write_text(json.dumps({"sources": [{
        "name": "colin", "format": "nifti", "modality": "mri", "images": "vol/colin*[0-9].nii.gz",
        "masks": "vol/*_seg.nii.gz", "slicing": {"plane": "axial", "only_with_roi": True}}]}))
    return manifest


def plain(folder: Path, out: Path) -> int:
    import nibabel as nib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    def png(array: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array).save(buf, format="PNG")
        return buf.getvalue()

    rows = []
    for image in sorted((folder / "vol").glob("colin*[0-9].nii.gz")):
        data = np.asanyarray(nib.load(image).dataobj)  # type: ignore[attr-defined]
        labels = np.asanyarray(nib.load(str(image).replace(".nii.gz", "_seg.nii.gz")).dataobj).astype(np.int32)  # type: ignore[attr-defined]
        low, high = np.percentile(data, (0.5, 99.5))
        for z in range(data.shape[2]):
            label = labels[:, :, z]
            if not label.any():
                continue
            pixels = np.clip((data[:, :, z] - low) / (high - low) * 255, 0, 255).astype(np.uint8)
            rois = []
            for value in np.unique(label[label > 0]):
                ys, xs = np.nonzero(label == value)
                rois.append({"label": str(value), "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1),
                                                           float(ys.max() + 1)], "area": float(xs.size)})
            rows.append({"image": png(pixels), "mask": png(label.astype(np.uint16)), "rois": json.dumps(rois)})
    pq.write_table(pa.Table.from_pylist(rows), out / "plain.parquet")
    return len(rows)


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - start


STEADY: dict[str, float] = {}  # rows/s by the build's own clock (build.json): without interpreter start-up


def build(manifest: Path, out: Path, workers: int, env: dict[str, str]) -> tuple[int, float]:
    seconds = timed([sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out), "--workers",
                     str(workers), "--quiet"], env)
    summary = json.loads((out / "build.json").read_text())
    STEADY[out.name] = summary["rows_per_second"]
    return summary["rows"]["total"], seconds


def merged_labels(folder: Path) -> Path:
    """The AAL volume with its labels merged into 2 (left and right halves of the labelled brain)."""
    import nibabel as nib

    atlas = nib.load(COLIN / "aal.nii.gz")
    data = np.asanyarray(atlas.dataobj)  # type: ignore[attr-defined]
    two = np.where(data > 0, np.where(np.arange(data.shape[0])[:, None, None] < data.shape[0] // 2, 1, 2), 0)
    path = folder / "aal2.nii.gz"
    nib.save(nib.Nifti1Image(two.astype(np.uint8), atlas.affine), path)  # type: ignore[attr-defined]
    return path


def profile(manifest: Path) -> None:
    from builder import pngcodec
    from builder.pipeline.build.collect import collect
    from builder.pipeline.process import TripletOptions, process_unit
    from builder.pipeline.sources.manifest import load_manifest
    from builder.privacy import load_id_key

    units, _ = collect(load_manifest(manifest), load_id_key(None))
    options = TripletOptions(png_encoder=pngcodec.choose("auto"))  # the encoder a build uses
    process_unit(units[0], options)  # imports and caches warm, as in a worker after its first volume
    profiler = cProfile.Profile()
    profiler.runcall(process_unit, units[0], options)
    pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "14")))


def one_run(work: Path, manifests: dict[str, Path], env: dict[str, str], run: int) -> dict[str, float]:
    """Rows/s of each pipeline in this run: whole processes, and the builds' own clocks."""
    start = time.perf_counter()
    rows = plain(work / "atlas", work)
    rates = {"plain": rows / (time.perf_counter() - start)}
    for name, manifest, workers in (("w1", manifests["atlas"], 1), ("w2", manifests["atlas"], 2),
                                    ("w1-2labels", manifests["two"], 1)):
        built, seconds = build(manifest, work / f"{name}-{run}", workers, env)
        if built != rows:
            raise SystemExit(f"{name} built {built} rows, the plain way {rows}")
        rates[name] = built / seconds
        rates[f"{name} clock"] = STEADY[f"{name}-{run}"]
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3, help="runs of every pipeline, interleaved; medians reported")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bytecode import compile_project
    from codec_bound import codec_bound

    compile_project()  # timed processes start as an installed build does (tools/bytecode.py)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = dict(os.environ, MEDTRI_CONFIG_DIR=str(work / "config"))
        manifests = {"atlas": workload(work / "atlas", args.copies)}
        if args.profile:
            return profile(manifests["atlas"])
        manifests["two"] = workload(work / "two", args.copies, merged_labels(work))
        runs = [one_run(work, manifests, env, run) for run in range(args.runs)]
        bound = {n: statistics.median(codec_bound(manifests["atlas"], n) for _ in range(args.runs)) for n in (1, 2)}

        def ratios(top: str, bottom: str, scale: float = 1.0) -> list[float]:
            return [round(r[top] / r[bottom] * scale, 2) for r in runs]

        figures = {
            "workers 1 vs plain, per core": ratios("w1", "plain"),
            "workers 2 vs workers 1, whole processes": ratios("w2", "w1"),
            "workers 2 vs workers 1, build clock": ratios("w2 clock", "w1 clock"),
            "116 labels vs 2 labels, per-row cost": ratios("w1-2labels", "w1"),
            "workers 1 vs codec bound, build clock": [round(r["w1 clock"] / bound[1], 2) for r in runs],
            "workers 2 vs codec bound, build clock": [round(r["w2 clock"] / bound[2], 2) for r in runs],
        }
        report = {
            "copies": args.copies, "runs": args.runs,
            "rows_per_s (medians)": {name: round(statistics.median(r[name] for r in runs), 1) for name in runs[0]},
            "codec_bound_rows_per_s (medians)": {f"{n} process(es)": round(v, 1) for n, v in bound.items()},
            "codec bound, 2 processes vs 1": round(bound[2] / bound[1], 2),
            "ratios (median, then each run)": {name: [statistics.median(values), values]
                                               for name, values in figures.items()},
        }
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
