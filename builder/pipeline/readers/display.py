"""From stored values to the pixels a person (or a model) looks at."""

from __future__ import annotations

from typing import Callable

import numpy as np

from builder.imaging import lookup, rescaled

#: (center, width) when the header gives no VOI window; others use percentiles.
DEFAULT_WINDOWS: dict[str, tuple[float, float]] = {"ct": (40.0, 400.0)}
PERCENTILES = (0.5, 99.5)


def auto_window(values: np.ndarray) -> tuple[float, float]:
    """A (center, width) window spanning the 0.5-99.5 percentiles of finite values."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    if finite.size > 4_000_000:  # a strided sample is plenty for two percentiles
        finite = finite[:: finite.size // 2_000_000]
    lo, hi = np.percentile(finite, PERCENTILES)
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    return (float(lo) + float(hi)) / 2.0, max(float(hi) - float(lo), 1e-6)


def window_for(values: np.ndarray, modality: str, header: tuple[float, float] | None) -> tuple[float, float]:
    """The header's window, else the modality default, else percentiles."""
    if header is not None and header[1] > 0:
        return header
    if modality in DEFAULT_WINDOWS:
        return DEFAULT_WINDOWS[modality]
    return auto_window(values)


def to_uint8(values: np.ndarray, window: tuple[float, float], invert: bool = False) -> np.ndarray:
    """Apply a linear VOI window (center, width) and map to 0..255."""
    center, width = window
    lo = center - width / 2.0
    scaled = values.astype(np.float32)  # a new array, worked on in place: the same arithmetic, fewer passes
    scaled -= np.float32(lo)
    scaled *= np.float32(255.0 / width)
    if not np.issubdtype(values.dtype, np.integer):  # only floats hold NaN
        np.nan_to_num(scaled, copy=False, nan=0.0)
    out = np.clip(scaled, 0, 255, out=scaled).astype(np.uint8)
    return 255 - out if invert else out


Display = Callable[[np.ndarray], np.ndarray]


def windowing(dtype: np.dtype, scale: tuple[float, float], window: tuple[float, float]) -> Display:
    """``values -> to_uint8(rescaled(values, *scale), window)`` for stored values of ``dtype``, made once per volume.

    Every step is elementwise, so for 8- and 16-bit integers the whole map is a lookup table over every value the
    type holds (256 or 65,536 entries, built by the same arithmetic), and a slice is one ``lookup``: the same bytes,
    without a slice-sized float array. Laid out by the value's bit pattern in this machine's byte order, the table
    takes a signed value's negative index from its end, as ``np.take`` does. Other types are windowed slice by
    slice.
    """
    dtype = np.dtype(dtype).newbyteorder("=")  # the table is indexed by value: a big-endian volume's too (>i2)
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        return lambda values: to_uint8(rescaled(values, *scale), window)
    patterns = np.arange(1 << (8 * dtype.itemsize), dtype=np.uint8 if dtype.itemsize == 1 else np.uint16)
    table = to_uint8(rescaled(patterns.view(dtype), *scale), window)
    return lambda values: lookup(table, values)


def for_display(pixels: np.ndarray) -> np.ndarray:
    """An image as vision-language trainers read it: 8-bit. 16-bit grey is windowed by its 0.5-99.5 percentiles
    (as a DICOM frame without a window is); 16-bit colour keeps its top 8 bits; 8-bit is returned as it is."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.ndim == 3:
        return (pixels.astype(np.uint32) >> 8).astype(np.uint8)
    return to_uint8(pixels, auto_window(pixels))
