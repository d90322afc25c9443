"""DICOM frames as displayed: per-frame functional groups, the modality LUT, the VOI LUT, mosaics.

- **Per-frame attributes.** Enhanced (multi-frame) objects keep the rescale
  (Pixel Value Transformation), the window (Frame VOI LUT), the orientation
  (Plane Orientation) and the pixel spacing (Pixel Measures) in the Shared and
  Per-frame Functional Groups Sequences, not at the top level. :func:`frame_attributes`
  builds each frame's attributes (per-frame over shared over top level), the way
  highdicom's ``Image.get_frame`` does, and the stored values come from pydicom
  (which masks the bits beyond Bits Stored).
- **Windows** follow DICOM PS3.3 C.11.2.1.2: ``LINEAR`` (with ``c - 0.5`` and
  ``w - 1``), ``LINEAR_EXACT`` and ``SIGMOID``; a VOI LUT Sequence goes through
  pydicom's ``apply_voi_lut``. MONOCHROME1 is inverted after the window.
- **Siemens mosaics** (``ImageType`` ... ``MOSAIC``): the CSA header's
  NumberOfImagesInMosaic (nibabel's ``nicom``) says how many tiles of the slice
  grid are slices; they are cut out row by row, in acquisition order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from builder.errors import Reject
from builder.pipeline.readers.display import DEFAULT_WINDOWS, auto_window

__all__ = ["FrameAttributes", "apply_window", "demosaic", "first_number", "frame_attributes", "mosaic_tiles"]

WINDOW_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class FrameAttributes:
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None  # (center, width)
    function: str = "LINEAR"
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient
    spacing: tuple[float, float] | None = None  # PixelSpacing (row, column) in mm


def first_number(value: Any) -> float | None:
    """The first value of a (multi-valued) DICOM attribute as a number, or None."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _item(group: Any, keyword: str) -> Any:
    """The first item of ``group.<keyword>`` (a functional group's sequence), or None."""
    sequence = getattr(group, keyword, None) if group is not None else None
    return sequence[0] if sequence else None


def _lookup(groups: list[Any], sequence: str, keyword: str) -> Any:
    """``keyword`` of ``sequence`` in the first group that has it (per-frame before shared)."""
    for group in groups:
        item = _item(group, sequence)
        if item is not None and item.get(keyword) not in (None, ""):
            return item.get(keyword)
    return None


def frame_attributes(ds: Any, index: int) -> FrameAttributes:
    """Frame ``index``'s (0-based) rescale, window, orientation and spacing."""
    groups: list[Any] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        groups.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    groups.append(None)  # the top level: looked up directly below

    def value(sequence: str, keyword: str) -> Any:
        found = _lookup(groups[:-1], sequence, keyword)
        return found if found is not None else ds.get(keyword)

    slope = first_number(value("PixelValueTransformationSequence", "RescaleSlope"))
    intercept = first_number(value("PixelValueTransformationSequence", "RescaleIntercept"))
    center = first_number(value("FrameVOILUTSequence", "WindowCenter"))
    width = first_number(value("FrameVOILUTSequence", "WindowWidth"))
    function = str(value("FrameVOILUTSequence", "VOILUTFunction") or "LINEAR").strip().upper()
    orientation = value("PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = value("PixelMeasuresSequence", "PixelSpacing")
    return FrameAttributes(
        slope=1.0 if slope is None else slope, intercept=0.0 if intercept is None else intercept,
        window=(center, width) if center is not None and width is not None and width > 0 else None,
        function=function if function in WINDOW_FUNCTIONS else "LINEAR",
        orientation=_numbers(orientation, 6), spacing=_pair(_numbers(spacing, 2)),
    )


def _numbers(value: Any, count: int) -> tuple[float, ...] | None:
    """``count`` finite numbers from a multi-valued attribute, or None (absent, short, not numbers)."""
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(math.isfinite(n) for n in numbers) else None


def _pair(value: tuple[float, ...] | None) -> tuple[float, float] | None:
    return (value[0], value[1]) if value is not None and value[0] > 0 and value[1] > 0 else None


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID) onto 0..255, rounded to uint8."""
    x = values.astype(np.float64, copy=False)
    if function == "SIGMOID":
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    elif function == "LINEAR_EXACT":
        y = np.clip(((x - center) / width + 0.5) * 255.0, 0.0, 255.0)
    else:
        if width < 1:
            raise Reject("read", f"window width {width} is below 1, which LINEAR does not allow")
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
        y = np.where(x <= low, 0.0, np.where(x > high, 255.0,
                                             ((x - (center - 0.5)) / max(width - 1, 1e-9) + 0.5) * 255.0))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def mosaic_tiles(ds: Any) -> int:
    """How many slices a Siemens mosaic holds (0: not a mosaic)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if "MOSAIC" not in image_type:
        return 0
    try:
        from nibabel.nicom import csareader

        header = csareader.get_csa_header(ds, "image")
        count = csareader.get_n_mosaic(header) if header else None
    except Exception as exc:  # an unreadable CSA header: the tiles cannot be told apart
        raise Reject("read", f"a MOSAIC image whose CSA header cannot be read ({type(exc).__name__})") from None
    if not count:
        raise Reject("read", "a MOSAIC image without NumberOfImagesInMosaic in its CSA header")
    return int(count)


def demosaic(frame: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` slices of a mosaic frame ``(R, C)``: tiles of a ceil(sqrt(count)) grid, row by row."""
    grid = math.ceil(math.sqrt(count))
    rows, cols = frame.shape[0] // grid, frame.shape[1] // grid
    if rows * grid != frame.shape[0] or cols * grid != frame.shape[1]:
        raise Reject("read", f"a {frame.shape[1]}x{frame.shape[0]} mosaic does not split into a {grid}x{grid} grid")
    tiles = frame.reshape(grid, rows, grid, cols).swapaxes(1, 2).reshape(grid * grid, rows, cols)
    return np.ascontiguousarray(tiles[:count])


def display(values: np.ndarray, window: Any, modality: str, invert: bool) -> np.ndarray:
    """One frame as shown: its header window (DICOM's formulas), else the modality's default, else percentiles."""
    if window is not None:
        out = apply_window(values, float(window[0]), float(window[1]), str(window[2]))
    elif modality in DEFAULT_WINDOWS:
        out = apply_window(values, *DEFAULT_WINDOWS[modality], "LINEAR")
    else:
        center, width = auto_window(values)
        out = apply_window(values, center, width, "LINEAR_EXACT")
    return 255 - out if invert else out
