"""Burned-in text found in the pixels themselves: RapidOCR's ONNX text detector and recogniser, offline.

Scanners and workstations burn names, IDs, dates and institutions into pixels
(ultrasound, secondary captures, screen saves, some reformats) while the header
says nothing. Header rules (:mod:`builder.pipeline.readers.screen`) know only the
regions of devices they name; this looks at the image.

How text is decided (measured in BENCHMARKS.md, ``tools/bench_ocr.py``):

1. RapidOCR (``rapidocr-onnxruntime``: PaddleOCR's detection and recognition
   models as ONNX, shipped inside the wheel, CPU) detects text lines and reads them;
2. the image holds text when a line reads as at least :data:`MIN_CHARACTERS`
   letters or digits with a confidence of at least :data:`MIN_SCORE` (the detector
   alone fires on anatomy: sulci, ribs, vessels; a single letter is a laterality
   marker, not an identifier);
3. then every detected line is blacked out: boxes on one row of text merged, grown
   by :data:`PADDING` of the line's height above and below and :data:`SIDE_PADDING`
   at either end (a line the detector split or read only in part is covered whole).

What was read is never kept or written anywhere: it may be a name. Only the
number of regions and the share of the image they cover are reported.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["MIN_CHARACTERS", "MIN_SCORE", "TextFound", "available", "find_text", "redact"]

MIN_CHARACTERS = 3  # letters or digits a line must read as, to be text
MIN_SCORE = 0.5  # the recogniser's confidence in that reading
PADDING = 0.3  # of a line's height, added above and below its box when blacked out
SIDE_PADDING = 1.5  # of a line's height, added at either end
ALNUM = re.compile(r"[A-Za-z0-9]")
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class TextFound:
    """Text regions to black out ``(x0, y0, x1, y1)`` (none: no text) and the share of the image they cover."""

    boxes: tuple[Box, ...] = ()
    share: float = 0.0


def available() -> bool:
    """RapidOCR is installed (the ``ocr`` extra)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


@lru_cache(maxsize=1)
def _engine() -> Any:
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)  # a worker per core: one thread each


def _grey8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    top = float(pixels.max()) or 1.0
    return np.round(pixels.astype(np.float32) * (255.0 / top)).astype(np.uint8)


def _box(quad: Any) -> tuple[float, float, float, float]:
    xs, ys = [float(p[0]) for p in quad], [float(p[1]) for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def _lines(boxes: list[tuple[float, float, float, float]]) -> list[tuple[float, float, float, float]]:
    """Boxes of one line of text merged: overlapping rows, at most two line heights apart (a line the detector
    split, or read in part, is blacked out whole)."""
    merged: list[list[float]] = []
    for x0, y0, x1, y1 in sorted(boxes):
        for line in merged:
            height = max(y1 - y0, line[3] - line[1])
            overlap = min(y1, line[3]) - max(y0, line[1])
            if overlap >= 0.5 * min(y1 - y0, line[3] - line[1]) and x0 - line[2] <= 2 * height:
                line[:] = [min(line[0], x0), min(line[1], y0), max(line[2], x1), max(line[3], y1)]
                break
        else:
            merged.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in merged]


def _padded(box: tuple[float, float, float, float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    pad = max(2.0, PADDING * (y1 - y0))
    side = max(pad, SIDE_PADDING * (y1 - y0))  # a line's ends, where a faint first or last word was not detected
    return (max(0, int(x0 - side)), max(0, int(y0 - pad)), min(width, int(np.ceil(x1 + side))),
            min(height, int(np.ceil(y1 + pad))))


def find_text(pixels: np.ndarray) -> TextFound:
    """The text lines burned into an image as displayed (2D grey or RGB), padded, if any line reads as text."""
    image = _grey8(pixels)
    height, width = image.shape[:2]
    engine = _engine()
    lines, _ = engine(image, use_det=True, use_cls=False, use_rec=True)
    if not any(len(ALNUM.findall(str(text))) >= MIN_CHARACTERS and float(score) >= MIN_SCORE
               for _, text, score in lines or []):
        return TextFound()
    detected, _ = engine(image, use_det=True, use_cls=False, use_rec=False)  # every line, read or not
    quads = [line[0] for line in lines or []] + list(detected or [])
    boxes = tuple(dict.fromkeys(_padded(b, width, height) for b in _lines([_box(q) for q in quads])))
    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] = True
    return TextFound(boxes, float(covered.mean()))


def redact(pixels: np.ndarray, boxes: tuple[Box, ...]) -> np.ndarray:
    """The image with the boxes blacked out (a copy)."""
    out = np.array(pixels, copy=True)
    for x0, y0, x1, y1 in boxes:
        out[y0:y1, x0:x1] = 0
    return out
