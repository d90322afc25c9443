"""Many-ROI atlases: build throughput on Colin27 + AAL (116 labels), against the plain way, in one run.

    python tools/bench_atlas.py [--copies 6] [--profile]

The workload is ``--copies`` copies of ``../shared/data/colin27-aal`` (the T1 volume
and its AAL label volume on the same grid), every axial slice that holds a label.
Timed as whole processes in this one run:

- the plain way, 1 process: nibabel, for each slice a bounding box and area per
  label with numpy (one pass over the slice per label), Pillow PNG with its
  defaults for the image and the mask, rows written with pyarrow;
- ``medtri-build build --workers 1`` and ``--workers 2``.

Then the codec bound (``tools/codec_bound.py``): the same slices decoded as the build
decodes them and PNG-encoded (image and stored mask), nothing else, in 1 and 2 warm
processes, against the build's own clock with 1 and 2 workers. Then the per-row cost of a 116-label slice
against the same slice with its labels merged into 2 (the cost must not grow with the
ROIs), and with ``--profile`` where one worker's time goes (cProfile of the worker's own function on one volume).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bytecode import compile_project
    from codec_bound import codec_bound

    compile_project()  # timed processes start as an installed build does (tools/bytecode.py)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = dict(os.environ, MEDTRI_CONFIG_DIR=str(work / "config"))
        manifest = workload(work / "atlas", args.copies)
        if args.profile:
            return profile(manifest)
        start = time.perf_counter()
        rows = plain(work / "atlas", work)
        plain_s = time.perf_counter() - start
        one_rows, one_s = build(manifest, work / "w1", 1, env)
        two_rows, two_s = build(manifest, work / "w2", 2, env)
        bound = {n: codec_bound(manifest, n) for n in (1, 2)}
        two_label = workload(work / "two", args.copies, merged_labels(work))
        flat_rows, flat_s = build(two_label, work / "w1-2labels", 1, env)
        report = {
            "rows": rows, "build_rows": [one_rows, two_rows],
            "plain_rows_per_s": round(rows / plain_s, 1),
            "workers_1_rows_per_s": round(one_rows / one_s, 1), "workers_2_rows_per_s": round(two_rows / two_s, 1),
            "workers_1_vs_plain_per_core": round((one_rows / one_s) / (rows / plain_s), 2),
            "workers_2_vs_workers_1": round((two_rows / two_s) / (one_rows / one_s), 2),
            "two_label_rows_per_s": round(flat_rows / flat_s, 1),
            "cost_116_labels_vs_2_labels": round((flat_rows / flat_s) / (one_rows / one_s), 2),
            "build_json_rows_per_s": STEADY,
            "codec_bound_rows_per_s": {f"{n} process(es)": round(v, 1) for n, v in bound.items()},
            "workers_1_vs_codec_bound": round(STEADY["w1"] / bound[1], 2),
            "workers_2_vs_codec_bound": round(STEADY["w2"] / bound[2], 2),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
