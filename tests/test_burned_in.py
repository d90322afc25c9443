"""Burned-in text found in the pixels by OCR: a hostile DICOM whose header says nothing is published with its text
blacked out, a reformat without text is no longer refused for its header, and raster sources choose their policy.
What the published pixels say is read back with RapidOCR's own recogniser, not with the build's decision code."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import MEDPIX, build, dicom_file, need, rejects, shard_rows, write_manifest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("rapidocr_onnxruntime", reason="OCR needs the ocr extra (rapidocr-onnxruntime)")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(FONT, size) if Path(FONT).is_file() else ImageFont.load_default(size)


def _read(pixels: np.ndarray) -> str:
    """Every line RapidOCR reads in an image, joined."""
    from rapidocr_onnxruntime import RapidOCR

    lines, _ = RapidOCR()(np.ascontiguousarray(pixels))
    return " ".join(text for _, text, _ in lines or [])


def _burn(ds: pydicom.Dataset, lines: dict[tuple[int, int], str], size: int) -> pydicom.Dataset:
    """Text burned into the stored values at the image's maximum, as a scanner writes an overlay."""
    values = ds.pixel_array.copy()
    canvas = Image.new("L", (values.shape[1], values.shape[0]), 0)
    draw = ImageDraw.Draw(canvas)
    for where, text in lines.items():
        draw.text(where, text, fill=255, font=_font(size))
    values[np.asarray(canvas) > 127] = values.max()
    ds.PixelData = values.astype(ds.pixel_array.dtype).tobytes()
    return ds


def _one_row(tmp_path: Path, name: str, ds: pydicom.Dataset, **entry: object) -> tuple[dict, dict]:
    folder = tmp_path / name
    (folder / "in").mkdir(parents=True)
    ds.save_as(folder / "in" / "scan.dcm")
    summary = build(write_manifest(folder, {"name": name, "format": "dicom", "images": "in/*.dcm", **entry}),
                    folder / "out")
    rows = shard_rows(folder / "out")
    return (rows[0] if rows else {}), summary


def _pixels(row: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(row["image"]["bytes"])))


def test_a_name_burned_into_a_dicom_whose_header_says_nothing_is_blacked_out(tmp_path: Path) -> None:
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.pop("BurnedInAnnotation", None)  # the held-out hostile case: the header says nothing
    _burn(ds, {(2, 2): "DOE JOHN", (2, 112): "MRN55555"}, 11)
    assert "DOE" in _read(_burn_display(ds)), "the planted text is readable before the build"
    row, summary = _one_row(tmp_path, "hostile", ds)
    published = _pixels(row)
    said = _read(published)
    assert not any(word in said for word in ("DOE", "JOHN", "MRN", "55555")), said
    assert row["details"]["burned_in"].startswith("text redacted (")
    assert summary["notes"]["burned_in_text_redacted"] == 1
    assert published[2:12, 2:50].max() == 0  # where the name was
    assert published[40:90, 30:100].any()  # the anatomy stays


def _burn_display(ds: pydicom.Dataset) -> np.ndarray:
    values = ds.pixel_array.astype(np.float32)
    return (255 * (values - values.min()) / max(float(np.ptp(values)), 1.0)).astype(np.uint8)


def test_a_reformat_without_text_is_screened_by_its_pixels_not_refused_by_its_header(tmp_path: Path) -> None:
    original = pydicom.dcmread(dicom_file("CT_small.dcm"))
    reformat = pydicom.dcmread(dicom_file("CT_small.dcm"))
    reformat.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]  # deid's rules flag it from the header alone
    kept, summary = _one_row(tmp_path, "reformat", reformat)
    assert summary["files"]["rejected"] == 0 and summary["notes"]["pixels_screened_by_ocr"] == 1
    assert kept["details"]["burned_in"] is None
    plain, _ = _one_row(tmp_path, "original", original)
    assert np.array_equal(_pixels(kept), _pixels(plain))  # nothing blacked out


def _medpix_images(folder: Path, count: int) -> list[str]:
    """Real MedPix figures: each carries MedPix's own overlays ("MedPix", the uploader) burned in."""
    folder.mkdir(parents=True)
    names = []
    for path in sorted((need(MEDPIX / "test") / "images").glob("*.png")):
        if len(names) == count:
            break
        if "MedPix" in _read(np.asarray(Image.open(path).convert("L"))):
            shutil.copy(path, folder / path.name)
            names.append(path.name)
    return names


@pytest.mark.parametrize("policy", ["redact", "reject", "flag"])
def test_a_raster_source_screens_its_pixels_when_asked_and_follows_its_policy(tmp_path: Path, policy: str) -> None:
    _medpix_images(tmp_path / "figures", 2)
    clean = _burn_display(pydicom.dcmread(dicom_file("CT_small.dcm")))  # a scan without text beside them
    Image.fromarray(clean).save(tmp_path / "figures" / "scan.png")
    entry = {"name": "figures", "format": "image", "images": "figures/*.png", "modality": "ct",
             "screen_text": True, "burned_in": policy}
    out = tmp_path / "out"
    summary = build(write_manifest(tmp_path, entry), out)
    assert summary["notes"]["pixels_screened_by_ocr"] == 3
    rows = shard_rows(out)
    plain = [r for r in rows if r["width"] == clean.shape[1] and r["height"] == clean.shape[0]]
    assert len(plain) == 1 and plain[0]["details"]["burned_in"] is None
    figures = [r for r in rows if r not in plain]
    if policy == "reject":
        assert not figures and [line["stage"] for line in rejects(out)] == ["privacy", "privacy"]
        assert all("text is burned into the pixels" in line["reason"] for line in rejects(out))
        return
    assert len(figures) == 2
    for row in figures:
        said = _read(_pixels(row))
        if policy == "redact":
            assert "MedPix" not in said and "Uploader" not in said, said
            assert row["details"]["burned_in"].startswith("text redacted (")
        else:
            assert "MedPix" in said and row["details"]["burned_in"].startswith("text found and kept (")


def test_a_screenshot_mostly_text_is_refused_rather_than_blacked_out(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    page = Image.new("L", (400, 300), 0)
    draw = ImageDraw.Draw(page)
    for line in range(12):  # a report page, saved as an image
        draw.text((10, 8 + 24 * line), f"PATIENT DOE JOHN MRN 5555{line} REPORT LINE {line}", fill=255,
                  font=_font(16))
    page.save(tmp_path / "in" / "page.png")
    Image.fromarray(_burn_display(pydicom.dcmread(dicom_file("CT_small.dcm")))).save(tmp_path / "in" / "scan.png")
    out = tmp_path / "out"
    build(write_manifest(tmp_path, {"name": "pages", "format": "image", "images": "in/*.png", "modality": "xray",
                                    "screen_text": True}), out)
    (line,) = rejects(out)  # the page; the scan beside it, without text, is a row
    assert Path(line["file"]).name == "page.png" and line["stage"] == "privacy"
    assert "over the 30% that redaction may black out" in line["reason"]
