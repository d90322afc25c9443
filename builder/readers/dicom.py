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

from ..errors import Reject

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


@dataclass(frozen=True)
class DicomReader:
    suffixes: tuple[str, ...] = (".dcm", ".dicom")
    allow_burned_in: bool = False

    def read(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        import pydicom
        from pydicom.pixels import apply_color_lut, apply_modality_lut

        try:
            ds = pydicom.dcmread(str(path))
        except Exception as exc:  # pydicom raises many types for broken files
            raise Reject("read", f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
        meta = {key: _plain(ds.get(key)) for key in ALLOWED_ATTRIBUTES if ds.get(key) not in (None, "")}
        if str(meta.get("BurnedInAnnotation", "")).upper() == "YES" and not self.allow_burned_in:
            raise Reject("privacy", "BurnedInAnnotation is YES (text may be burned into pixels)")
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            raise Reject("read", "DICOM file holds no pixel data")
        declared = 1
        for key in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel"):
            declared *= max(1, int(_first(meta.get(key)) or 1))
        if declared > MAX_PIXELS:
            raise Reject("read", f"declared size of {declared} pixel values exceeds the limit of {MAX_PIXELS}")
        try:
            pixels = ds.pixel_array
        except Exception as exc:
            raise Reject("read", f"cannot decode pixel data ({type(exc).__name__}: {exc})") from None
        photometric = str(meta.get("PhotometricInterpretation", "MONOCHROME2"))
        frames = int(_first(meta.get("NumberOfFrames")) or 1)
        if photometric == "PALETTE COLOR":
            pixels, photometric = apply_color_lut(pixels, ds), "RGB"
        color = pixels.shape[-1] == 3 and int(meta.get("SamplesPerPixel", 1)) == 3 or photometric == "RGB"
        if not color:
            pixels = apply_modality_lut(pixels, ds).astype(np.float32, copy=False)
        if pixels.ndim == (3 if color else 2):
            pixels = pixels[None]
        if pixels.shape[0] != frames and frames > 1:
            raise Reject("read", f"NumberOfFrames is {frames} but pixel data holds {pixels.shape[0]}")
        center, width = _first(meta.get("WindowCenter")), _first(meta.get("WindowWidth"))
        meta.update(
            window=[center, width] if center is not None and width else None,
            invert=photometric == "MONOCHROME1",
            color=bool(color),
            plane=plane_of(meta.get("ImageOrientationPatient")),
        )
        return pixels, meta
