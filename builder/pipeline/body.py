"""Where the body is in a radiology image: the frame ROI positions are given in and the tissue contrast is read in.

A CT, MRI, PET or radiograph shows the patient against a dark background (air,
padding outside the field of view). The body is what is brighter than half of
Otsu's threshold of the image, its holes filled (lungs, ventricles, bowel gas
are inside the body) and small specks outside it (noise, the scanner table's
edge, a marker) dropped: every part at least a tenth of the largest is kept.
Images of other modalities (photographs, endoscopy, slides) have no such
background: the whole image is the frame.

An atlas's regions together make up an organ (AAL's parcels the brain): the
*parent* of a parcellation is their union, closed and filled (the white matter
inside the cortical ribbon), the structure a region is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builder.imaging import RADIOLOGY, gray, opencv

__all__ = ["Body", "body_of", "parent_of"]

KEEP_PART = 0.1  # a part of the foreground at least this share of the largest is body, smaller ones are specks
MIN_PARCELS = 3  # mask regions that make a parcellation (an atlas), whose union is an organ
MIN_COVER = 0.1  # the parcels cover at least this share of the body
CLOSING = 7  # the square that bridges the gaps between neighbouring parcels before the fill


@dataclass(frozen=True)
class Body:
    """The body mask (None: the whole image) and its bounding box, ``(x0, y0, x1, y1)`` in pixel edges."""

    mask: np.ndarray | None
    box: tuple[int, int, int, int]

    @property
    def size(self) -> tuple[int, int]:
        return self.box[2] - self.box[0], self.box[3] - self.box[1]


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of 8-bit values (OpenCV's where installed, else from the histogram here)."""
    cv2 = opencv()
    if cv2 is not None:
        return float(cv2.threshold(values, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0])
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(hist)
    total = weight[-1]
    mean = np.cumsum(hist * levels)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean[-1] * weight - mean * total) ** 2 / (weight * (total - weight))
    between[~np.isfinite(between)] = 0
    return float(np.argmax(between))


def _parts(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 4-connected parts of a mask, labelled 1..n: OpenCV's labelling where installed (5x scipy's)."""
    cv2 = opencv()
    if cv2 is not None:
        count, parts = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        return parts, count - 1
    from scipy import ndimage  # without OpenCV only: importing it costs a worker 0.2 s

    return ndimage.label(mask)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box ``(x0, y0, x1, y1)`` of a mask's pixels (not empty)."""
    cv2 = opencv()
    if cv2 is not None:
        x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
        return x, y, x + w, y + h
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background part that does not touch the image's edge filled (as scipy's
    ``binary_fill_holes``): the background flooded from a one-pixel frame around the image with OpenCV where
    installed, else one labelling of the background instead of scipy's repeated dilations."""
    cv2 = opencv()
    if cv2 is not None:
        framed = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), np.uint8)
        framed[1:-1, 1:-1] = mask
        cv2.floodFill(framed, None, (0, 0), 2, flags=4)
        return framed[1:-1, 1:-1] != 2
    from scipy import ndimage

    parts, count = ndimage.label(~mask)
    edge = np.unique(np.concatenate((parts[0], parts[-1], parts[:, 0], parts[:, -1])))
    outside = np.zeros(count + 1, dtype=bool)
    outside[edge] = True
    outside[0] = False
    return mask | ~outside[parts]


def body_of(pixels: np.ndarray, modality: str, labelled: np.ndarray | None = None) -> Body:
    """The body of a radiology image (any labelled pixel counts as body); the whole image for other modalities."""
    height, width = pixels.shape[:2]
    whole = Body(None, (0, 0, width, height))
    if modality not in RADIOLOGY:
        return whole
    grey = gray(pixels)
    if grey.dtype != np.uint8:
        top = float(grey.max()) or 1.0
        grey = np.round(grey.astype(np.float32) * (255.0 / top)).astype(np.uint8)
    foreground = grey > 0.5 * _otsu(grey)
    if labelled is not None:
        foreground |= labelled
    if not foreground.any():
        return whole
    mask = fill_holes(foreground)
    parts, count = _parts(mask)
    if count > 1:  # specks beside the body: parts under a tenth of the largest go
        sizes = np.bincount(parts.ravel(), minlength=count + 1)
        keep = sizes >= KEEP_PART * sizes[1:].max()
        keep[0] = False
        mask = keep[parts]
        if labelled is not None:
            mask |= labelled
    return Body(mask, _box(mask))


def parent_of(mask: np.ndarray | None, regions: int, body: Body) -> np.ndarray | None:
    """The organ a parcellation's regions make up (their union closed and filled), or None when the mask is not
    a parcellation: fewer than :data:`MIN_PARCELS` regions, or covering under :data:`MIN_COVER` of the body."""
    if mask is None or regions < MIN_PARCELS:
        return None
    union = mask > 0
    area = np.count_nonzero(body.mask) if body.mask is not None else mask.size
    if np.count_nonzero(union) < MIN_COVER * area:
        return None
    return fill_holes(_closed(union)) | union


def _closed(mask: np.ndarray) -> np.ndarray:
    """A closing by a :data:`CLOSING`-pixel square (OpenCV's where installed, else scipy's separable filters);
    beyond the image's edge nothing is eroded."""
    cv2 = opencv()
    if cv2 is not None:
        kernel = np.ones((CLOSING, CLOSING), np.uint8)
        return cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_CLOSE, kernel).view(bool)
    from scipy import ndimage

    grown = ndimage.maximum_filter(mask, CLOSING, mode="constant", cval=0)
    return ndimage.minimum_filter(grown, CLOSING, mode="constant", cval=1)
