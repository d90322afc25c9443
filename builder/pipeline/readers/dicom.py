"""DICOM with pydicom: modality LUT, VOI window, MONOCHROME1, multi-frame.

Only the attributes in :data:`ALLOWED_ATTRIBUTES` are read into ``meta``: no
name, id, date, institution or private tag can reach a row. Compressed transfer
syntaxes decode when ``pylibjpeg`` and its plugins are installed (the
``codecs`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import Reject
from builder.imaging import rescaled

#: The header attributes a build may use. Nothing else is copied anywhere.
ALLOWED_ATTRIBUTES: tuple[str, ...] = (
    "Modality",
    "BodyPartExamined",
    "PhotometricInterpretation",
    "SamplesPerPixel",
    "BitsStored",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "PixelSpacing",
    "SliceThickness",
    "ImageOrientationPatient",
    "WindowCenter",
    "WindowWidth",
    "BurnedInAnnotation",
)
PLANE_BY_AXIS = ("sagittal", "coronal", "axial")
MAX_PIXELS = 2**28  # pixel values a file may declare (rows x columns x frames x samples)


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _first(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def plane_of(orientation: Any) -> str | None:
    """axial/coronal/sagittal from ImageOrientationPatient (row and column cosines)."""
    try:
        row, col = np.asarray(orientation, dtype=float).reshape(2, 3)
    except (TypeError, ValueError):
        return None
    normal = np.abs(np.cross(row, col))
    return PLANE_BY_AXIS[int(np.argmax(normal))] if normal.any() else None


MAX_INFLATED = 512 * 1024**2  # bytes a deflated dataset may inflate to
DEFER = 16 * 1024**2  # elements larger than this are read only when used (PixelData)
MAX_SLOPE = 1e6  # a rescale slope beyond this (or NaN) is not a scanner's


def _inflated_size(path: Path, limit: int) -> int | None:
    """For a Deflated Explicit VR file, the inflated size of its dataset (stopping past ``limit``)."""
    import zlib

    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    with open(path, "rb") as fh:
        pydicom.filereader.read_preamble(fh, force=True)
        meta = pydicom.filereader._read_file_meta_info(fh)
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return None
        inflater, size = zlib.decompressobj(-zlib.MAX_WBITS), 0
        for block in iter(lambda: fh.read(1 << 16), b""):
            size += len(inflater.decompress(block, limit + 1 - size))
            while inflater.unconsumed_tail and size <= limit:
                size += len(inflater.decompress(inflater.unconsumed_tail, limit + 1 - size))
            if size > limit:
                break
        return size


def _open(path: Path) -> Any:
    """The dataset, refusing a deflated file that would inflate past :data:`MAX_INFLATED`."""
    import pydicom

    try:
        size = _inflated_size(path, MAX_INFLATED)
    except Exception:  # not a DICOM file meta: dcmread says why below
        size = None
    if size is not None and size > MAX_INFLATED:
        raise Reject("read", f"deflated dataset inflates past the limit of {MAX_INFLATED // 2**20} MiB")
    return pydicom.dcmread(str(path), defer_size=None if size is not None else DEFER)


def _rescale(ds: Any) -> tuple[float, float] | None:
    """(slope, intercept) of a plain linear rescale; None when a Modality LUT Sequence applies."""
    if "ModalityLUTSequence" in ds:
        return None
    slope, intercept = _first(ds.get("RescaleSlope")), _first(ds.get("RescaleIntercept"))
    slope = 1.0 if slope is None else slope
    intercept = 0.0 if intercept is None else intercept
    if not (np.isfinite(slope) and np.isfinite(intercept)) or slope == 0 or abs(slope) > MAX_SLOPE:
        raise Reject("read", f"rescale slope {slope} / intercept {intercept} is not a usable linear rescale")
    return slope, intercept


def _modality_lut(pixels: np.ndarray, ds: Any) -> np.ndarray:
    """Stored values to modality values, in float32, frame by frame for plain rescales."""
    from pydicom.pixels import apply_modality_lut

    linear = _rescale(ds)
    if linear is None:
        try:
            values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
        except Exception as exc:  # a malformed LUT (empty descriptor...) is bad input, not a bug
            raise Reject("read", f"unusable Modality LUT Sequence ({type(exc).__name__}: {exc})") from None
    else:
        values = rescaled(pixels, *linear)
    if not np.isfinite(values).all():
        raise Reject("read", "the modality LUT gives NaN or infinite values")
    return values


@dataclass(frozen=True)
class DicomReader:
    suffixes: tuple[str, ...] = (".dcm", ".dicom")
    allow_burned_in: bool = False

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        from pydicom.pixels import apply_color_lut

        from builder.pipeline.readers.bodypart import body_part
        from builder.pipeline.readers.screen import burned_in_flag, clean, screen

        try:
            ds = _open(path)
        except Reject:
            raise
        except MemoryError:
            raise Reject("read", "out of memory while reading the header") from None
        except Exception as exc:  # pydicom raises many types for broken files
            raise Reject("read", f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
        meta = {key: _plain(ds.get(key)) for key in ALLOWED_ATTRIBUTES if ds.get(key) not in (None, "")}
        if burned_in_flag(ds) and not self.allow_burned_in:
            raise Reject("privacy", "BurnedInAnnotation is YES (text may be burned into pixels)")
        screening = screen(ds)
        if screening.refusal and not self.allow_burned_in:
            raise Reject("privacy", screening.refusal)
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise Reject("read", "DICOM file holds no pixel data")
        declared = 1
        for key in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel"):
            declared *= max(1, int(_first(meta.get(key)) or 1))
        if declared > MAX_PIXELS:
            raise Reject("read", f"declared size of {declared} pixel values exceeds the limit of {MAX_PIXELS}")
        try:
            pixels = ds.pixel_array
        except MemoryError:
            raise Reject("read", "out of memory while decoding pixel data") from None
        except Exception as exc:
            raise Reject("read", f"cannot decode pixel data ({type(exc).__name__}: {exc})") from None
        photometric = str(meta.get("PhotometricInterpretation", "MONOCHROME2")).strip()
        frames = int(_first(meta.get("NumberOfFrames")) or 1)
        if photometric == "PALETTE COLOR":
            pixels, photometric = _palette(apply_color_lut(pixels, ds), ds), "RGB"
        color = (pixels.shape[-1] == 3 and int(meta.get("SamplesPerPixel", 1)) == 3) or photometric == "RGB"
        if not color:
            pixels = _modality_lut(pixels, ds)
        if pixels.ndim == (3 if color else 2):
            pixels = pixels[None]
        if pixels.shape[0] != frames and frames > 1:
            raise Reject("read", f"NumberOfFrames is {frames} but pixel data holds {pixels.shape[0]}")
        notes: dict[str, int] = {}
        if screening.boxes:
            pixels = clean(pixels, screening.boxes)
            notes["pixels_cleaned_by_deid"] = 1
        organ = body_part(ds.get("BodyPartExamined"))
        if ds.get("BodyPartExamined") and organ is None:
            notes["body_part_unmapped"] = 1
        center, width = _first(meta.get("WindowCenter")), _first(meta.get("WindowWidth"))
        meta.update(
            window=[center, width] if center is not None and width else None,
            invert=photometric == "MONOCHROME1",
            color=bool(color),
            plane=plane_of(meta.get("ImageOrientationPatient")),
            organ=organ,
            notes=notes,
        )
        meta.pop("BodyPartExamined", None)  # only the controlled term may reach a row
        return pixels, meta


def _palette(rgb: np.ndarray, ds: Any) -> np.ndarray:
    """PALETTE COLOR output as 8-bit RGB, scaled by the LUT's bit depth (its descriptor's third value)."""
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor") or [0, 0, 8]
    try:
        bits = int(descriptor[2])
    except (TypeError, ValueError, IndexError):
        bits = 8
    if bits > 8:
        return (np.asarray(rgb, dtype=np.uint32) >> (bits - 8)).astype(np.uint8)
    return np.asarray(rgb).astype(np.uint8)
