"""PNG encoders: the fastest installed library that writes standard, lossless PNG.

PNG encoding is the largest single cost of a build (BENCHMARKS.md compares the
candidates on the project's images). Each encoder here writes a plain PNG that
Pillow and ``datasets`` decode to exactly the pixels given (8-bit and 16-bit
grey, RGB); ``auto`` picks the first installed of OpenCV (``imencode``, fastest),
imagecodecs (libpng) and Pillow, the fallback that is always there. The choice
changes the bytes, never the pixels, and ``build.json`` records it.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PngEncoder:
    name: str
    module: str  # what must be installed
    write: Callable[[np.ndarray, int], bytes]

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


#: In order of preference for ``auto``: fastest first, Pillow last (always installed).
ENCODERS: dict[str, PngEncoder] = {e.name: e for e in (
    PngEncoder("opencv", "cv2", _opencv),
    PngEncoder("imagecodecs", "imagecodecs", _imagecodecs),
    PngEncoder("pillow", "PIL", _pillow),
)}


def choose(name: str = "auto") -> str:
    """The encoder a build uses: ``auto`` is the first installed; a named one must be installed."""
    if name == "auto":
        return next(e.name for e in ENCODERS.values() if e.available())
    encoder = ENCODERS.get(name)
    if encoder is None or not encoder.available():
        raise ValueError(f"PNG encoder {name!r} is not installed (choices: {', '.join(ENCODERS)})")
    return name


def encode(pixels: np.ndarray, level: int, name: str = "pillow") -> bytes:
    """PNG bytes of the pixels as they are (8-bit, 16-bit grey or RGB), no metadata."""
    return ENCODERS[name].write(pixels, level)
