"""Bad input is a reject of the stage that refused it, never an internal error; memory and time limits hold whatever
the number of workers; what a newcomer meets next (interrupts, progress, help, hints) says what to do."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from conftest import ROOT, build, dicom_file, rejects, run_cli, write_manifest
from PIL import Image


def test_a_palette_dicom_without_its_lookup_table_is_a_read_reject(tmp_path: Path) -> None:
    ds = pydicom.dcmread(dicom_file("OBXXXX1A.dcm"))
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    for keyword in [k for k in ds.dir() if "PaletteColor" in k]:
        delattr(ds, keyword)
    ds.save_as(tmp_path / "no_lut.dcm")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30), dtype=np.uint8)).save(tmp_path / "ok.png")
    manifest = write_manifest(tmp_path, {"name": "us", "format": "dicom", "images": "*.dcm"},
                              {"name": "png", "format": "image", "images": "*.png", "modality": "xray"})
    summary = build(manifest, tmp_path / "out")  # --on-error raise: an internal error would raise here
    [line] = [line for line in rejects(tmp_path / "out") if line["file"] == "no_lut.dcm"]
    assert line["stage"] == "read" and "no_lut.dcm" in line["reason"] and "Palette" in line["reason"]
    assert summary["rejects"]["by_stage"] == {"read": 1} and summary["files"]["accepted"] == 1


def test_a_bug_of_the_pipeline_is_still_internal() -> None:
    from builder.errors import raised_by_reader_library

    def ours() -> None:
        raise ValueError("a bug of ours")

    try:
        ours()
    except ValueError as exc:
        assert not raised_by_reader_library(exc)
    try:
        np.zeros(3).reshape(7, 7)  # numpy raises from C: the innermost frame is the caller's
    except ValueError as exc:
        assert not raised_by_reader_library(exc)
    try:
        pydicom.dcmread(io.BytesIO(b"not a DICOM file at all"))
    except pydicom.errors.InvalidDicomError as exc:
        assert raised_by_reader_library(exc)


PEAK = """
import resource, sys
from builder.cli import main
import builder.pipeline.build, builder.pipeline.sources.volume  # the pipeline imported: the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
try:
    main(sys.argv[1:], standalone_mode=False)
except Exception as exc:
    print("build ended:", exc, file=sys.stderr)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def test_a_scaled_volume_near_the_voxel_limit_reads_in_bounded_memory(tmp_path: Path) -> None:
    """2^29 int16 voxels (1 GiB) with a slope, in a 1 MB .nii.gz: the worker's peak stays under 1.5 GiB."""
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.int16)
    header.set_slope_inter(2.0, 1.0)
    header.set_qform(np.eye(4), 1)
    header.set_sform(np.eye(4), 1)
    header["vox_offset"] = 352
    zeros = bytes(1 << 24)
    with gzip.open(tmp_path / "big.nii.gz", "wb", compresslevel=1) as fh:
        fh.write(header.binaryblock + bytes(4))
        for _ in range(2**30 // len(zeros)):
            fh.write(zeros)
    assert (tmp_path / "big.nii.gz").stat().st_size < 8 * 2**20
    manifest = write_manifest(tmp_path, {"name": "v", "format": "nifti", "images": "*.nii.gz", "modality": "ct"})
    done = subprocess.run([sys.executable, "-c", PEAK, "build", str(manifest), "--out", str(tmp_path / "out"),
                           "--workers", "1", "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    before, peak = (int(value) for value in done.stdout.split()[-2:])
    # the volume's own GiB and little more: no second volume-sized buffer (scaled, float, or inflated bytes)
    assert peak - before < 1.25 * 2**30, f"the build grew by {(peak - before) / 2**30:.2f} GiB to {peak / 2**30:.2f}"
    [line] = rejects(tmp_path / "out")
    assert line["stage"] == "read" and "blank" in line["reason"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_unit_time_limit_holds_with_any_number_of_workers(tmp_path: Path, workers: str) -> None:
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((96, 96, 240), dtype=np.float32), np.eye(4)), tmp_path / "slow.nii.gz")
    Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(tmp_path / "quick.png")
    manifest = write_manifest(tmp_path, {"name": "v", "format": "nifti", "images": "*.nii.gz", "modality": "ct"},
                              {"name": "p", "format": "image", "images": "*.png", "modality": "xray"})
    summary = build(manifest, tmp_path / "out", "--workers", workers, "--unit-timeout", "0.05")
    [line] = rejects(tmp_path / "out")
    assert line["file"] == "slow.nii.gz" and line["stage"] == "timeout" and "0.05 s" in line["reason"]
    assert summary["files"] == {"seen": 2, "accepted": 1, "rejected": 1, "skipped": 0}


def test_ctrl_c_says_the_same_command_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builder.pipeline.build as pipeline_build

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_build, "build", interrupted)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "a.png")
    manifest = write_manifest(tmp_path, {"name": "p", "format": "image", "images": "*.png", "modality": "xray"})
    result = run_cli("build", manifest, "--out", tmp_path / "out", "--workers", "1", ok=False)
    assert result.exit_code == 130
    assert "run the same command again to resume" in result.output and "Aborted!" not in result.output


def test_the_eta_waits_for_the_pace_and_follows_the_recent_one() -> None:
    from builder.cli.build import ProgressPrinter

    printer = ProgressPrinter(quiet=True)
    printer.times = [100.0]  # one slow volume first (100 s), then quick files, one a second
    assert printer.eta(400) == "--"
    printer.times += [100.0 + i for i in range(1, 20)]
    assert printer.eta(400) == "400s"  # the pace of the later files, not 400 x 119 s / 20
    assert printer.eta(0) == "0s"


def test_export_help_lists_its_formats_and_hints_match_the_readme() -> None:
    from builder.dataset.export import EXPORTERS
    from builder.errors import install_hint

    usage = run_cli("export", "--help").output
    assert all(name in usage for name in EXPORTERS)
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[catalog]'" in readme and "pip install -e '.[catalog]'" in install_hint("catalog")


def test_export_folder_loads_back_when_a_split_has_a_column_the_others_lack(tmp_path: Path) -> None:
    from datasets import load_dataset

    rng = np.random.default_rng(2)
    for split in ("train", "test"):
        folder = tmp_path / split
        folder.mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 30), dtype=np.uint8)).save(folder / f"{split}{i}.png")
    manifest = write_manifest(
        tmp_path,
        {"name": "tr", "format": "image", "images": "train/*.png", "modality": "xray", "disease": "pneumonia"},
        {"name": "te", "format": "image", "images": "test/*.png", "modality": "xray", "split": "test"})
    build(manifest, tmp_path / "out")
    dest = tmp_path / "folder"
    run_cli("export", "folder", tmp_path / "out", "--out", dest)
    loaded = load_dataset("imagefolder", data_dir=str(dest))
    assert {name: len(split) for name, split in loaded.items()} == {"train": 3, "test": 3}
    assert set(loaded["train"]["disease"]) == {"pneumonia"} and set(loaded["test"]["disease"]) == {None}
    assert json.loads(loaded["test"][0]["rois"]) == []


def test_a_test_run_leaves_nothing_in_the_temporary_folder(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    keys = ("MEDTRI_CONFIG_DIR", "MEDTRI_CACHE_DIR", "HF_DATASETS_CACHE")
    env = {k: v for k, v in os.environ.items() if k not in keys} | {"TMPDIR": str(temporary)}
    use = (f"import conftest, os\nfor k in {keys!r}:\n    os.makedirs(os.environ[k])\n"
           "    open(os.path.join(os.environ[k], 'x'), 'w').close()")
    done = subprocess.run([sys.executable, "-c", use], cwd=ROOT / "tests", env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(temporary.iterdir()) == []
