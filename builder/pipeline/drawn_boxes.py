"""Boxes drawn into the pixels: recover the green ROI outlines of the MedTrinity-25M release.

The release draws each ROI into its image as a green rectangle outline and
publishes no coordinates. :func:`find_boxes` finds them again: pixels that are
clearly green (green well above red and blue, which JPEG's chroma blur keeps
for a drawn line, and which grey anatomy never is), joined across JPEG gaps,
split into connected parts; a part is a box when all four sides of its bounding
rectangle are enclosed by it and its inside is not green (a green-stained
blob or a green organ in a photograph is filled, an outline is not). The box
is the outline's outer edge, in pixel-edge coordinates. :func:`restore` paints
the outlines out again (each line pixel takes the nearest pixel beside the line).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GreenOutlines", "find_boxes", "green_pixels", "restore"]


@dataclass(frozen=True)
class GreenOutlines:
    min_green: int = 110  # the green channel of an outline pixel, at least
    min_excess: int = 50  # green above max(red, blue), at least (pure green drawn, then JPEG-compressed)
    min_side: int = 6  # pixels: smaller rectangles are noise
    max_line: int = 7  # pixels: a green region this thick everywhere is filled, not a line
    min_enclosed: float = 0.9  # share of its bounding rectangle the outline encloses (a rectangle: all of it)
    min_hole: float = 0.2  # share of that rectangle inside the line (a filled green region has none)
    weak_excess: int = 40  # beside a clear line pixel, this much green excess is line too (a line over white
    # bone keeps little of its colour through JPEG's chroma blur)
    vivid_green: int = 180  # the drawn colour itself (pure green): kept where it crosses a green-ish region
    vivid_excess: int = 120
    tint: int = 8  # restore: green above red and blue by this much, along a found outline, is the line's colour


def _green(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The green channel, and how far it stands above the larger of red and blue."""
    channels = rgb.astype(np.int16)
    return channels[..., 1], channels[..., 1] - np.maximum(channels[..., 0], channels[..., 2])


def green_pixels(rgb: np.ndarray, rule: GreenOutlines) -> np.ndarray:
    value, excess = _green(rgb)
    return (value >= rule.min_green) & (excess >= rule.min_excess)


def find_boxes(pixels: np.ndarray, rule: GreenOutlines | None = None) -> list[tuple[int, int, int, int]]:
    """``(x_min, y_min, x_max, y_max)`` of each green outline, pixel-edge coordinates, in reading order."""
    rule = rule or GreenOutlines()
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        return []  # a grey image has no green outline
    green = green_pixels(pixels, rule)
    rows, cols = np.flatnonzero(green.any(axis=1)), np.flatnonzero(green.any(axis=0))
    if rows.size == 0:
        return []
    # the work below runs on the part of the image that holds green, with a margin for the filters
    top, left = max(0, rows[0] - 8), max(0, cols[0] - 8)
    crop = (slice(top, rows[-1] + 9), slice(left, cols[-1] + 9))
    found = _find(pixels[crop], green[crop], rule)
    return [(x0 + left, y0 + top, x1 + left, y1 + top) for x0, y0, x1, y1 in found]


def _find(pixels: np.ndarray, green: np.ndarray, rule: GreenOutlines) -> list[tuple[int, int, int, int]]:
    from scipy import ndimage  # here, not at import: a build without a release never loads it (0.5 s)

    green = _line_pixels(pixels, green, rule)
    mask = green.view(np.uint8)
    joined = (ndimage.minimum_filter(ndimage.maximum_filter(mask, 5), 5, mode="constant", cval=1) > 0) | green
    labels, _ = ndimage.label(joined, structure=np.ones((3, 3), int))
    boxes = []
    for index, where in enumerate(ndimage.find_objects(labels), 1):
        if where is None:
            continue
        part = labels[where] == index
        height, width = part.shape
        if min(height, width) < rule.min_side:
            continue
        box = _edges(pixels, where, max(2, min(height, width) // 12))
        rows, cols = where
        inner = (slice(box[1] - rows.start, box[3] - rows.start), slice(box[0] - cols.start, box[2] - cols.start))
        filled, line = ndimage.binary_fill_holes(part)[inner], part[inner]
        # a closed outline encloses its whole rectangle, and most of that is hole, not line
        if filled.size and filled.mean() >= rule.min_enclosed and (filled & ~line).mean() >= rule.min_hole:
            boxes.append(box)
    return sorted(boxes, key=lambda b: (b[1], b[0]))


def _thick(mask: np.ndarray, rule: GreenOutlines) -> np.ndarray:
    """Parts of a mask thicker than any drawn line: an opening, as separable min/max filters (several times faster
    than binary morphology, the same set)."""
    from scipy import ndimage

    return ndimage.maximum_filter(ndimage.minimum_filter(mask.view(np.uint8), rule.max_line, mode="constant"),
                                  rule.max_line)


def _line_pixels(pixels: np.ndarray, green: np.ndarray, rule: GreenOutlines) -> np.ndarray:
    """The green pixels that can be a drawn line.

    Green regions thicker than any line (a stain, an organ in a photograph) are not outlines: they and a
    margin around them are dropped, except pixels of the drawn colour itself, which a line keeps where it
    crosses such a region. Then fainter green pixels right beside the line join it (hysteresis: a line
    over bright bone comes out of JPEG pale).
    """
    from scipy import ndimage

    value, excess = _green(pixels)
    thick = _thick(green, rule)
    line = green.copy()
    if thick.any():
        vivid = (value >= rule.vivid_green) & (excess >= rule.vivid_excess)
        vivid &= _thick(vivid, rule) == 0  # a region painted in the drawn colour is still no line
        line = (line & (ndimage.maximum_filter(thick, 5) == 0)) | vivid
    beside = ndimage.maximum_filter(line.view(np.uint8), 3) > 0
    return line | (beside & (excess >= rule.weak_excess) & (value >= rule.min_green) & (thick == 0))


def _edges(pixels: np.ndarray, where: tuple[slice, slice], band: int) -> tuple[int, int, int, int]:
    """The outline's outer edges, from the green channel's profile across each side.

    JPEG spreads the colour of a line over its 2x2 chroma blocks, so a pixel or two beside the
    line is green too; brightness is kept per pixel, and the line itself is far brighter in green.
    """
    rows, cols = where
    green = pixels[where][..., 1].astype(np.float32)
    width = 2 * band + 2
    across = np.median(green[:, band:-band], axis=1)  # per row, along the horizontal sides
    down = np.median(green[band:-band], axis=0)  # per column, along the vertical sides

    def first(profile: np.ndarray) -> int:
        part = profile[:width]
        low, high = float(part.min()), float(part.max())
        return int(np.argmax(part >= low + 0.6 * (high - low)))

    top, left = first(across), first(down)
    bottom, right = len(across) - first(across[::-1]), len(down) - first(down[::-1])
    return cols.start + left, rows.start + top, cols.start + right, rows.start + bottom


def restore(pixels: np.ndarray, boxes: list[tuple[int, int, int, int]], rule: GreenOutlines | None = None,
            halo: int = 1) -> np.ndarray:
    """The image with the outlines of ``boxes`` painted out; pixels away from them are left as they are.

    The line is every green-tinted pixel within the band along each box's sides (JPEG spreads the line's
    colour, faintly, a few pixels around it), grown by ``halo`` pixels; each of its pixels takes the value of
    the nearest pixel outside it (``scipy.ndimage.distance_transform_edt``).
    """
    from scipy import ndimage

    rule = rule or GreenOutlines()
    if not boxes or pixels.ndim != 3:
        return pixels
    height, width = pixels.shape[:2]
    band = np.zeros((height, width), bool)
    reach, out = rule.max_line + halo, halo + 3  # a found edge may lie a pixel inside the drawn one
    for x0, y0, x1, y1 in boxes:  # each box's ring along its sides (one box's inside may hold another's sides)
        ring = np.zeros_like(band)
        ring[max(0, y0 - out):min(height, y1 + out), max(0, x0 - out):min(width, x1 + out)] = True
        ring[y0 + reach:max(y0 + reach, y1 - reach), x0 + reach:max(x0 + reach, x1 - reach)] = False
        band |= ring
    _, excess = _green(pixels)
    line = ((excess >= rule.tint) | _line_pixels(pixels, green_pixels(pixels, rule), rule)) & band
    line = ndimage.binary_dilation(line, iterations=halo) & band if halo else line
    if not line.any():
        return pixels
    _, (rows, cols) = ndimage.distance_transform_edt(line, return_indices=True)
    restored = pixels.copy()
    restored[line] = pixels[rows[line], cols[line]]
    return restored
