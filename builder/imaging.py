"""Facts about images that every stage shares, stated once."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["BOX_COLOUR", "LUMA", "MISSING", "RADIOLOGY", "RASTER_SUFFIXES", "STEM_SUFFIXES", "draw_boxes",
           "gray", "lookup", "nibabel", "opencv", "pixel_hash", "rescaled"]

#: The colour of boxes drawn into images (the MedTrinity-25M release draws green outlines).
BOX_COLOUR = (0, 255, 0)
#: ITU-R BT.601 luma weights: gray from RGB.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Modalities shown in radiological convention (patient's right on the image's left).
RADIOLOGY = frozenset({"ct", "mri", "xray", "pet"})
#: Raster image files Pillow reads.
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Suffixes a file stem is joined on without (``scan01.nii.gz`` -> ``scan01``).
STEM_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".dicom", *RASTER_SUFFIXES)
#: Values of a text field that mean "no value" (compared lower-cased and stripped).
MISSING = frozenset({"", "n/a", "na", "none", "null"})


def gray(pixels: np.ndarray) -> np.ndarray:
    """Luminance in float32, in the pixels' own scale (an alpha channel is ignored)."""
    values = pixels.astype(np.float32)
    return values[..., :3] @ LUMA if values.ndim == 3 else values


@lru_cache(maxsize=1)
def opencv() -> Any:
    """The ``cv2`` module where OpenCV is installed (the ``[fast]`` extra), else None."""
    return importlib.import_module("cv2") if importlib.util.find_spec("cv2") else None


@lru_cache(maxsize=1)
def nibabel() -> Any:
    """The ``nibabel`` module, imported without pydicom unless pydicom is loaded already.

    nibabel imports pydicom when it is installed (a third of a second, more than nibabel itself) only to
    parse the DICOM header a NIfTI file may carry as an extension. No reader here reads extensions (and a
    DICOM header is identifying), so a NIfTI build does not load it: nibabel then keeps an extension's bytes
    as they are. pydicom imports normally afterwards, for the DICOM readers.
    """
    if "nibabel" in sys.modules or "pydicom" in sys.modules:
        return importlib.import_module("nibabel")
    sys.modules["pydicom"] = None  # type: ignore[assignment]  # ``import pydicom`` fails: nibabel finds it absent
    try:
        return importlib.import_module("nibabel")
    finally:
        del sys.modules["pydicom"]


def lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``table[values]`` (``np.take``: a negative index counts from the end).

    An 8-bit table over an 8-bit grey image is OpenCV's ``LUT`` where installed
    (about 2.5x ``np.take``, which has no fast path for it); the same values either way.
    """
    cv2 = opencv() if values.dtype == np.uint8 and table.dtype == np.uint8 and values.ndim == 2 else None
    if cv2 is None or values.size == 0 or not values.flags.c_contiguous:
        return np.take(table, values)
    if table.size < 256:  # every index an 8-bit value can hold: the values present are all < table.size
        table = np.concatenate([table, np.zeros(256 - table.size, np.uint8)])
    return cv2.LUT(values, table[:256])  # an 8-bit value reads only the first 256 entries


def pixel_hash(pixels: np.ndarray) -> str:
    """Identity of decoded pixels, whatever file format or compression held them."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{pixels.shape}{pixels.dtype}".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def rescaled(values: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """``values * slope + intercept`` in float32 (a new array; never float64)."""
    out = values.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def draw_boxes(png: bytes, boxes: list[tuple[float, float, float, float]], width: int = 2) -> bytes:
    """PNG bytes of the image with each ``[x0, y0, x1, y1]`` box outlined in :data:`BOX_COLOUR` (RGB)."""
    import io

    from PIL import Image, ImageDraw

    image: Image.Image = Image.open(io.BytesIO(png))
    if image.mode != "RGB":  # 16-bit gray to 8 bits first, so the colour is a colour
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = (array.astype(np.float32) / max(float(array.max()), 1.0) * 255).astype(np.uint8)
        image = Image.fromarray(array).convert("RGB")
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=BOX_COLOUR, width=width)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()
