"""Real DICOM files from pydicom-data: modalities, MONOCHROME1, patient privacy."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from conftest import build, dicom_file, real_files, testdata_dicoms, write_manifest
from datasets import load_dataset

FILES = {"CT_small.dcm": "ct", "MR2_UNCR.dcm": "mri", "RG1_UNCR.dcm": "xray", "US1_UNCR.dcm": "ultrasound"}
IDENTIFIERS = {
    "PatientName": "Zyxwvut^Quenby",
    "PatientID": "PID-98765-XQ",
    "PatientBirthDate": "19230405",
    "InstitutionName": "Saint Qwertyuiop Hospital",
    "ReferringPhysicianName": "Plover^Ximena",
    "StudyDate": "19870614",
    "AccessionNumber": "ACC55501234",
}
PRIVATE_VALUE = "PRIVATE-SECRET-4242"


@pytest.fixture(scope="module")
def dicom_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dicom")
    (folder / "dicom").mkdir()
    for name in FILES:
        ds = pydicom.dcmread(dicom_file(name))
        for keyword, value in IDENTIFIERS.items():
            setattr(ds, keyword, value)
        block = ds.private_block(0x0011, "ACME private", create=True)
        block.add_new(0x01, "LO", PRIVATE_VALUE)
        ds.save_as(folder / "dicom" / name)
    out = folder / "out"
    build(write_manifest(folder, {"name": "pydicom-data", "format": "dicom", "images": "dicom/*.dcm"}),
          out, "--format", "both")
    return out


def test_each_file_lands_in_its_modality_config(dicom_build: Path) -> None:
    for name, config in FILES.items():
        ds = load_dataset(str(dicom_build), config, split="train")
        assert f"dicom/{name}" in [real_files(dicom_build)[i] for i in ds["id"]], (name, config)
        assert set(ds["modality"]) == {config}


def test_monochrome1_is_shown_inverted(dicom_build: Path) -> None:
    raw = pydicom.dcmread(dicom_file("RG1_UNCR.dcm"))
    assert raw.PhotometricInterpretation == "MONOCHROME1"
    row = load_dataset(str(dicom_build), "xray", split="train")[0]
    stored = np.asarray(row["image"], dtype=np.float64)
    original = raw.pixel_array.astype(np.float64)
    assert stored.shape == original.shape
    assert np.corrcoef(stored.ravel(), original.ravel())[0, 1] < -0.9


def test_ct_uses_the_header_window_or_soft_tissue_default(dicom_build: Path) -> None:
    row = load_dataset(str(dicom_build), "ct", split="train")[0]
    image = np.asarray(row["image"])
    assert image.dtype == np.uint8 and image.min() == 0 and image.max() == 255
    assert row["width"] == 128 and row["height"] == 128


def _texts(out: Path) -> list[bytes]:
    """Every output byte, with Parquet cells and tar members decoded."""
    blobs = []
    for path in out.rglob("*"):
        if not path.is_file():
            continue
        blobs.append(path.read_bytes())
        if path.suffix == ".parquet":
            blobs.append(repr(pq.read_table(path).to_pylist()).encode())
        if path.suffix == ".tar":
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    data = tar.extractfile(member).read()
                    blobs.append(member.name.encode() + data)
    return blobs


def test_no_identifier_reaches_any_output_byte(dicom_build: Path) -> None:
    blobs = _texts(dicom_build)
    assert any(b".parquet" in b or len(b) > 1000 for b in blobs)
    for value in list(IDENTIFIERS.values()) + [PRIVATE_VALUE]:
        for variant in {value, value.replace("^", " "), value.split("^")[0]}:
            assert not any(variant.encode() in blob for blob in blobs), f"{variant!r} leaked"


def test_stored_png_has_no_text_chunks(dicom_build: Path) -> None:
    from PIL import Image

    table = pq.read_table(next((dicom_build / "data" / "ct").glob("*.parquet")))
    png = table.column("image")[0].as_py()["bytes"]
    assert not Image.open(io.BytesIO(png)).text


def test_multiframe_gives_one_row_per_frame(tmp_path: Path) -> None:
    (tmp_path / "mf").mkdir()
    shutil.copy(dicom_file("emri_small.dcm"), tmp_path / "mf" / "emri_small.dcm")
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "mf", "format": "dicom", "images": "mf/*.dcm"}), out)
    frames = int(pydicom.dcmread(dicom_file("emri_small.dcm")).NumberOfFrames)
    assert summary["rows"]["by_modality"] == {"mri": frames}
    ds = load_dataset(str(out), "mri", split="train")
    assert sorted(ds["slice_index"]) == list(range(frames))
    assert len(set(ds["id"])) == frames


def test_lossless_compressed_dicom_decodes_to_the_same_pixels(tmp_path: Path) -> None:
    pytest.importorskip("pylibjpeg", reason="compressed DICOM needs the codecs extra (pylibjpeg)")
    (tmp_path / "in").mkdir()
    for name in ("693_UNCR.dcm", "693_J2KR.dcm", "MR_small.dcm", "MR_small_RLE.dcm"):
        shutil.copy(dicom_file(name), tmp_path / "in" / name)
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "codecs", "format": "dicom", "images": "in/*.dcm",
                                              "allow_burned_in": True}), out)
    assert summary["files"]["rejected"] == 0
    files = real_files(out)
    rows = {files[r["id"]]: np.asarray(r["image"]) for r in load_dataset(str(out), "all", split="train")}
    assert np.array_equal(rows["in/693_UNCR.dcm"], rows["in/693_J2KR.dcm"])
    assert np.array_equal(rows["in/MR_small.dcm"], rows["in/MR_small_RLE.dcm"])


def _every_testdata_dicom() -> list[Path]:
    return testdata_dicoms(skip=(".py", ".json", ".txt", ".gz", ".bz2", ".zip", ".npy", ".xml"))


def test_no_identifier_leaks_from_any_testdata_file(tmp_path: Path) -> None:
    """Every pydicom test file, identifiers injected in standard and private tags."""
    folder = tmp_path / "all"
    folder.mkdir()
    prepared = 0
    for i, path in enumerate(_every_testdata_dicom()):
        try:
            ds = pydicom.dcmread(path)
            for keyword, value in IDENTIFIERS.items():
                setattr(ds, keyword, value)
            ds.private_block(0x0011, "ACME private", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
            ds.StudyDescription = f"study of {IDENTIFIERS['PatientName']}"
            ds.save_as(folder / f"{i:03d}_{path.stem}.dcm", enforce_file_format=False)
            prepared += 1
        except Exception:
            continue  # not a DICOM dataset pydicom can write back: nothing to test
    assert prepared > 100
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, {"name": "every", "format": "dicom", "images": "all/*.dcm",
                                              "modality": "ct"}), out, "--workers", "2", "--format", "both",
                    "--allow-burned-in")
    assert summary["files"]["accepted"] > 60, "most test files decode"
    blobs = _texts(out)
    for value in list(IDENTIFIERS.values()) + [PRIVATE_VALUE]:
        for variant in {value, value.replace("^", " "), value.split("^")[0]}:
            assert not any(variant.encode() in blob for blob in blobs), f"{variant!r} leaked"
