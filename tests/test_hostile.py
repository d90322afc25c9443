"""Hostile input: every broken file is one reject, the valid ones beside it all land."""

from __future__ import annotations

import gzip
import io
import os
import random
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import yaml
from conftest import build, dicom_file, rejects, write_manifest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from builder.errors import ManifestError
from builder.pipeline.sources.manifest import load_manifest


def _dicoms(folder: Path, rng: random.Random) -> tuple[int, int]:
    """Broken DICOM files, and valid ones beside them: (broken, valid)."""
    folder.mkdir()
    good = dicom_file("CT_small.dcm").read_bytes()
    broken = 0
    for i, cut in enumerate(rng.sample(range(200, len(good) - 10), 45)):
        (folder / f"truncated_{i:02d}.dcm").write_bytes(good[:cut])
        broken += 1
    for i in range(30):
        (folder / f"random_{i:02d}.dcm").write_bytes(rng.randbytes(rng.randint(0, 5000)))
        broken += 1
    for i, (rows, cols, frames) in enumerate([(65535, 65535, 1), (4096, 4096, 5000), (0, 128, 1), (128, 0, 1)]):
        ds = pydicom.dcmread(io.BytesIO(good))
        ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
        ds.save_as(folder / f"declared_{i}.dcm")
        broken += 1
    ds = pydicom.dcmread(io.BytesIO(good))
    del ds.PixelData
    ds.save_as(folder / "no_pixels.dcm")
    ds = pydicom.dcmread(io.BytesIO(good))
    ds.BurnedInAnnotation = "YES"
    ds.save_as(folder / "burned_in.dcm")
    broken += 2
    for i in range(3):
        (folder / f"valid_{i}.dcm").write_bytes(good)
    return broken, 3


def _volumes(folder: Path, rng: np.random.Generator) -> tuple[int, int]:
    folder.mkdir()
    broken = 0
    ok = rng.normal(size=(16, 16, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(ok, np.eye(4)), folder / "valid.nii.gz")
    whole = (folder / "valid.nii.gz").read_bytes()
    for i in range(15):
        (folder / f"truncated_{i:02d}.nii.gz").write_bytes(whole[: int(len(whole) * (i + 1) / 17)])
        broken += 1
    for i in range(10):
        (folder / f"random_{i:02d}.nii.gz").write_bytes(gzip.compress(rng.bytes(int(rng.integers(0, 4000)))))
        (folder / f"random_{i:02d}.nii").write_bytes(rng.bytes(int(rng.integers(0, 4000))))
        broken += 2
    for i, value in enumerate([np.nan, np.inf, -np.inf]):
        data = ok.copy()
        data[3, 3, 3] = value
        nib.save(nib.Nifti1Image(data, np.eye(4)), folder / f"nonfinite_{i}.nii.gz")
        broken += 1
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), folder / "flat_2d.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.float32), np.eye(4)), folder / "four_d.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.complex64), np.eye(4)), folder / "complex.nii.gz")
    header = bytearray(whole and gzip.decompress(whole))
    struct.pack_into("<8h", header, 40, 3, 30000, 30000, 30000, 1, 1, 1, 1)  # dim[]: huge declared volume
    (folder / "huge.nii").write_bytes(bytes(header))
    broken += 4
    return broken, 1


def _pngs(folder: Path, rng: np.random.Generator) -> tuple[int, int]:
    folder.mkdir()
    broken = 0
    Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8)).save(folder / "valid_0.png")
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / "valid_1.png")
    Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16)).save(folder / "valid_2.png")
    whole = (folder / "valid_0.png").read_bytes()
    for i in range(40):
        (folder / f"truncated_{i:02d}.png").write_bytes(whole[: int(len(whole) * (i + 1) / 42)])
        broken += 1
    for i in range(30):
        (folder / f"random_{i:02d}.png").write_bytes(bytes(rng.integers(0, 255, int(rng.integers(0, 3000)),
                                                                        dtype=np.uint8)))
        broken += 1
    for i, size in enumerate([(1, 1), (1, 30), (3, 3)]):
        Image.fromarray(np.zeros(size[::-1], np.uint8)).save(folder / f"tiny_{i}.png")
        broken += 1
    Image.new("1", (10_000, 10_000)).save(folder / "bomb.png")  # over Pillow's decompression-bomb limit
    Image.fromarray(rng.normal(size=(20, 20)).astype(np.float32)).save(folder / "float.tiff")
    (folder / "empty.png").write_bytes(b"")
    broken += 3
    # masks that do not fit their image
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "badmask_0.png")
    Image.fromarray(np.ones((31, 30), np.uint8)).save(folder / "badmask_0_mask.png")
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(folder / "badmask_1.png")
    Image.fromarray(np.full((30, 30), 7, np.uint8)).save(folder / "badmask_1_mask.png")  # label 7 not declared
    broken += 2
    return broken, 3


def test_a_fuzz_corpus_gives_one_reject_per_broken_file(tmp_path: Path) -> None:
    dicom_broken, dicom_valid = _dicoms(tmp_path / "dicom", random.Random(0))
    nifti_broken, nifti_valid = _volumes(tmp_path / "nifti", np.random.default_rng(0))
    png_broken, png_valid = _pngs(tmp_path / "png", np.random.default_rng(0))
    broken = dicom_broken + nifti_broken + png_broken
    assert broken >= 200
    manifest = write_manifest(
        tmp_path,
        {"name": "dicom", "format": "dicom", "images": "dicom/*.dcm"},
        {"name": "nifti", "format": "nifti", "images": "nifti/*.nii*", "modality": "mri", "slicing": {"step": 3}},
        {"name": "png", "format": "image", "images": "png/*[!k].*", "masks": "png/*_mask.png", "labels": {1: "x"},
         "modality": "xray", "unmasked": "keep"},
    )
    out = tmp_path / "out"
    summary = build(manifest, out, "--workers", "2", "--unit-timeout", "60")
    lines = rejects(out)
    rejected = [line["file"] for line in lines]
    twice = sorted(f for f in rejected if rejected.count(f) > 1)
    assert len(rejected) == len(set(rejected)) == broken, ("one reject per broken file", twice, len(rejected))
    assert all(Path(f).name.split("_")[0].split(".")[0] != "valid" for f in rejected)
    assert all(line["reason"] and line["stage"] for line in lines)
    assert summary["files"] == {"seen": broken + dicom_valid + nifti_valid + png_valid,
                                "accepted": dicom_valid + nifti_valid + png_valid, "rejected": broken,
                                "skipped": 0}
    assert summary["rows"]["total"] == dicom_valid + 2 + png_valid  # the valid volume: slices 0 and 3
    by_name = {Path(line["file"]).name: line["reason"] for line in lines}
    assert "BurnedInAnnotation" in by_name["burned_in.dcm"]
    assert "limit" in by_name["declared_1.dcm"] or "exceeds" in by_name["declared_1.dcm"]
    assert "NaN or infinite" in by_name["nonfinite_0.nii.gz"]
    assert "too large" in by_name["bomb.png"]
    assert "smaller than" in by_name["tiny_0.png"]
    assert "mask" in by_name["badmask_0.png"] and "not in the source's labels" in by_name["badmask_1.png"]


_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                     max_size=4), max_leaves=12)
_KEYS = st.sampled_from(["name", "format", "images", "masks", "labels", "modality", "slicing", "split", "caption",
                         "organ", "metadata", "boxes", "curation", "reference", "dedup", "root", "labels_file"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(_VALUES, st.dictionaries(st.just("sources"), st.lists(st.dictionaries(_KEYS, _VALUES),
                                                                        max_size=3))))
def test_the_manifest_loader_fails_only_with_manifest_errors(tmp_path: Path, document: object) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_manifest(path)
    except ManifestError as exc:
        assert "manifest key" in str(exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4000))
def test_readers_turn_any_bytes_into_data_or_a_reject(tmp_path: Path, data: bytes) -> None:
    from builder.errors import Reject
    from builder.pipeline.readers import READERS

    for name, suffix in (("dicom", ".dcm"), ("nifti", ".nii"), ("image", ".png")):
        path = tmp_path / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            array, meta = READERS[name].read(path)
        except Reject as exc:
            assert exc.reason
        else:
            assert array.ndim >= 2 and min(array.shape[:2]) >= 1 and isinstance(meta, dict)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(outside / "secret.png")
    src = tmp_path / "src"
    (src / "img").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(src / "img" / "inside.png")
    os.symlink(outside / "secret.png", src / "img" / "link.png")
    out = tmp_path / "out"
    summary = build(write_manifest(src, {"name": "s", "format": "image", "images": "img/*.png",
                                         "modality": "xray"}), out)
    lines = rejects(out)
    assert [(line["file"], line["stage"]) for line in lines] == [("img/link.png", "path")]
    assert summary["rows"]["total"] == 1
