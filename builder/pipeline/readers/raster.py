"""PNG, JPEG, TIFF, BMP with Pillow: 8-bit, 16-bit and RGB kept as stored."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from builder.errors import Reject
from builder.imaging import RASTER_SUFFIXES

_MODES = {"L": np.uint8, "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16, "RGB": np.uint8}


def _normalise(img: Image.Image) -> Image.Image:
    if img.mode in _MODES:
        return img
    if img.mode == "F":
        raise Reject("read", "floating-point image: store it as 8- or 16-bit, or as NIfTI")
    if img.mode in ("1", "LA"):
        return img.convert("L")
    if img.mode == "I":
        arr = np.asarray(img)
        if arr.min() >= 0 and arr.max() < 65536:
            return Image.fromarray(arr.astype(np.uint16))
        raise Reject("read", "32-bit integer image with values outside 0..65535")
    return img.convert("RGB")


@dataclass(frozen=True)
class RasterReader:
    suffixes: tuple[str, ...] = RASTER_SUFFIXES

    def read(self, path: Path | IO[bytes]) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as opened:
                    opened.load()
                    img = _normalise(opened)
        except Reject:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise Reject("read", f"image too large ({exc})") from None
        except Exception as exc:
            raise Reject("read", f"not a readable image ({type(exc).__name__}: {exc})") from None
        arr = np.asarray(img)
        if min(arr.shape[:2]) < 1:
            raise Reject("read", f"empty image {arr.shape}")
        return arr, {"mode": img.mode, "bits": 16 if arr.dtype == np.uint16 else 8}
