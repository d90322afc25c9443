"""Peak memory of a build on decompression bombs, against the naive read of the same file.

Each bomb is a small file (1-2 MB) that declares or inflates to gigabytes
(``tests/bombs.py`` writes them): a 1024x1024x480 int16 ``.nii.gz`` with a
``scl_slope``, and a deflated DICOM whose 900 MiB private element is zeros. For
each, in fresh processes: ``medtri-build build`` of the file with one worker,
the plain read a user would write (nibabel ``as_closest_canonical`` +
``get_fdata``-style scaling; ``pydicom.dcmread``), and a build of a small normal
file as the baseline. Peak RSS is the child's ``ru_maxrss``.

    python tools/bench_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from bombs import deflated_bomb, nifti_bomb

PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
NAIVE = {
    "nifti": "import nibabel as nib, numpy as np, sys; img = nib.as_closest_canonical(nib.load(sys.argv[1])); "
             "v = np.asanyarray(img.dataobj); print(v.dtype)",
    "dicom": "import pydicom, sys; ds = pydicom.dcmread(sys.argv[1]); print(ds.Rows)",
}


def peak_mib(*argv: str) -> float:
    done = subprocess.run([sys.executable, "-c", PEAK, *argv], capture_output=True, text=True, check=True)
    return int(done.stdout.strip()) / 1024


def build_peak(folder: Path, entry: dict, name: str) -> tuple[float, str]:
    manifest = folder / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump({"sources": [entry]}))
    out = folder / f"out-{name}"
    mib = peak_mib(sys.executable, "-m", "builder", "build", str(manifest), "--out", str(out), "--workers", "1",
                   "--quiet")
    rejected = (out / ".private" / "rejects.jsonl").read_text() if (out / ".private").exists() else ""
    return mib, "reject" if rejected.strip() else "rows"


def main() -> None:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "small").mkdir()
        import nibabel as nib
        import numpy as np

        nib.save(nib.Nifti1Image(np.zeros((64, 64, 8), np.int16), np.eye(4)), folder / "small" / "s.nii.gz")
        (folder / "nii").mkdir()
        nifti_bomb(folder / "nii" / "bomb.nii.gz")
        (folder / "dcm").mkdir()
        deflated_bomb(folder / "dcm" / "bomb.dcm")
        baseline, _ = build_peak(folder, {"name": "s", "format": "nifti", "images": "small/*.nii.gz",
                                          "modality": "mri"}, "small")
        for kind, entry, path in (
                ("nifti", {"name": "n", "format": "nifti", "images": "nii/*.nii.gz", "modality": "mri",
                           "slicing": {"step": 40}}, folder / "nii" / "bomb.nii.gz"),
                ("dicom", {"name": "d", "format": "dicom", "images": "dcm/*.dcm"}, folder / "dcm" / "bomb.dcm")):
            mib, outcome = build_peak(folder, entry, kind)
            naive = peak_mib(sys.executable, "-c", NAIVE[kind], str(path))
            results[kind] = {"file_mib": round(path.stat().st_size / 2**20, 2), "build_peak_mib": round(mib),
                             "build_outcome": outcome, "naive_read_peak_mib": round(naive),
                             "build_over_baseline": round(mib / baseline, 2),
                             "naive_over_build": round(naive / mib, 2)}
        results["baseline_build_peak_mib"] = round(baseline)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
