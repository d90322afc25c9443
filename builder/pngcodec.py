"""PNG encoders: the fastest installed library that writes standard, lossless PNG.

PNG encoding is the largest single cost of a build (BENCHMARKS.md compares the
candidates on the project's images). Each encoder here writes a plain PNG that
Pillow and ``datasets`` decode to exactly the pixels given (8-bit and 16-bit
grey, RGB); ``auto`` picks the first installed of ISA-L (fastest), OpenCV
(``imencode``), imagecodecs (libpng) and Pillow, the fallback that is always there.
The choice changes the bytes, never the pixels, and ``build.json`` records it.

ISA-L (Intel's deflate, ``isal``) has no PNG writer of its own: :func:`_isal`
writes the three chunks a PNG needs (``IHDR``, one ``IDAT``, ``IEND``) around the
rows, each with the "up" filter, deflated by ISA-L. Its deflate is 3-5x faster than
zlib at level 1 on the project's images, for PNGs 1-4% larger (BENCHMARKS.md).
"""

from __future__ import annotations

import importlib.util
import io
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np

__all__ = ["ENCODERS", "PngEncoder", "choose", "encode"]


def _pillow(pixels: np.ndarray, level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def _opencv_params(cv2: Any, pixels: np.ndarray, level: int) -> list[int]:
    """zlib level, and where this OpenCV can set them, one PNG row filter and the zlib strategy.

    libpng's default tries all five row filters on every row; one "up" filter with run-length
    matching (grey) or the default strategy (colour) is 1.5-2x faster at the same size or
    smaller on the project's images (BENCHMARKS.md). The PNG stays standard and lossless.
    """
    params = [cv2.IMWRITE_PNG_COMPRESSION, level]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV 4.11+
        strategy = cv2.IMWRITE_PNG_STRATEGY_DEFAULT if pixels.ndim == 3 else cv2.IMWRITE_PNG_STRATEGY_RLE
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_STRATEGY, strategy]
    return params


def _opencv(pixels: np.ndarray, level: int) -> bytes:
    import cv2

    ordered = pixels[..., ::-1] if pixels.ndim == 3 else pixels  # OpenCV writes BGR
    ok, data = cv2.imencode(".png", np.ascontiguousarray(ordered), _opencv_params(cv2, pixels, level))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {pixels.dtype} image of shape {pixels.shape}")
    return data.tobytes()


def _imagecodecs(pixels: np.ndarray, level: int) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.png_encode(np.ascontiguousarray(pixels), level=level))


_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: grey, grey + alpha, RGB, RGBA


def _chunk(kind: bytes, data: bytes, crc32: Callable[[bytes, int], int]) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc32(data, crc32(kind, 0)))


def _up_filtered(rows: np.ndarray) -> np.ndarray:
    """PNG filter 2 ("up") on byte rows: each row less the one above it, modulo 256, after its filter byte."""
    out = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    out[:, 0] = 2
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out


def _isal(pixels: np.ndarray, level: int) -> bytes:
    """A PNG of 8-bit grey, grey + alpha, RGB or RGBA, or 16-bit grey; others go to Pillow."""
    from isal import isal_zlib

    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.dtype not in (np.uint8, np.uint16) or channels not in _COLOUR_TYPES or pixels.ndim not in (2, 3) or \
            (pixels.dtype == np.uint16 and channels != 1) or 0 in pixels.shape:
        return _pillow(pixels, level)
    height, width = pixels.shape[:2]
    samples = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(">"))  # PNG samples are big-endian
    idat = isal_zlib.compress(_up_filtered(samples.reshape(height, -1).view(np.uint8)), min(level, 3))
    header = struct.pack(">IIBBBBB", width, height, 8 * pixels.dtype.itemsize, _COLOUR_TYPES[channels], 0, 0, 0)
    crc = isal_zlib.crc32
    return _SIGNATURE + _chunk(b"IHDR", header, crc) + _chunk(b"IDAT", idat, crc) + _chunk(b"IEND", b"", crc)


@dataclass(frozen=True)
class PngEncoder:
    name: str
    module: str  # what must be installed
    write: Callable[[np.ndarray, int], bytes]

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


#: In order of preference for ``auto``: fastest first, Pillow last (always installed).
ENCODERS: dict[str, PngEncoder] = {e.name: e for e in (
    PngEncoder("isal", "isal", _isal),
    PngEncoder("opencv", "cv2", _opencv),
    PngEncoder("imagecodecs", "imagecodecs", _imagecodecs),
    PngEncoder("pillow", "PIL", _pillow),
)}


def choose(name: str = "auto") -> str:
    """The encoder a build uses: ``auto`` is the first installed; a named one must be installed."""
    if name == "auto":
        return _first_installed()
    encoder = ENCODERS.get(name)
    if encoder is None or not encoder.available():
        raise ValueError(f"PNG encoder {name!r} is not installed (choices: {', '.join(ENCODERS)})")
    return name


@lru_cache(maxsize=1)
def _first_installed() -> str:
    return next(e.name for e in ENCODERS.values() if e.available())


def encode(pixels: np.ndarray, level: int, name: str = "pillow") -> bytes:
    """PNG bytes of the pixels as they are (8-bit, 16-bit grey or RGB), no metadata; ``auto``: the first installed."""
    return ENCODERS[_first_installed() if name == "auto" else name].write(pixels, level)
