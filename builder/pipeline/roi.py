"""Regions of interest: from label maps and box tables to geometry and words.

- A label map gives one ROI per label value present: ``bbox`` is the smallest
  box around its pixels, ``area_ratio`` its pixel count over the image's.
- A box table's boxes pass through (``area_ratio`` is the box's area).
- ``position`` is the cell of a 3x3 grid holding the ROI's centroid ("upper-left"
  ... "center" ... "lower-right"), the grid laid over the *frame*: the body's
  bounding box in a radiology image (:mod:`builder.pipeline.body`), the whole
  image otherwise. At a slice near the vertex the regions of the small head fall
  in different cells, not all in the image's centre. Text says the same cell in
  the patient's terms where the view has them (see :func:`position_text`).

Boxes are ``[x_min, y_min, x_max, y_max]`` in pixel-edge coordinates: a ROI
covering columns 3..7 has ``x_min=3, x_max=8``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from builder.errors import Reject
from builder.imaging import RADIOLOGY, lookup
from builder.pipeline.data import Box, Roi

ROWS = ("upper", "center", "lower")
COLS = ("left", "center", "right")


Frame = tuple[int, int, int, int]  # (x0, y0, x1, y1), pixel edges: what positions are given within


def position_of(cx: float, cy: float, width: int, height: int, frame: Frame | None = None) -> str:
    """The 3x3 grid cell of a point in ``frame`` (default: the whole image), e.g. "upper-left", "center"."""
    x0, y0, x1, y1 = frame or (0, 0, width, height)
    row = ROWS[max(0, min(2, int(3 * (cy - y0) / max(1, y1 - y0))))]
    col = COLS[max(0, min(2, int(3 * (cx - x0) / max(1, x1 - x0))))]
    if row == col == "center":
        return "center"
    return f"{row}-{col}"


def convention(modality: str, plane: str | None) -> str:
    """How the image's axes read in the body: its plane ("axial", "coronal", "sagittal") for a radiology slice,
    "radiological" for a radiology image of unknown plane (a radiograph), "image" for other modalities."""
    if modality not in RADIOLOGY:
        return "image"
    return plane if plane in ("axial", "coronal", "sagittal") else "radiological"


_PATIENT = {"left": "the patient's right", "right": "the patient's left"}
#: Per view: image left/right, and up/down, in the body.
_COLUMNS = {"axial": _PATIENT, "coronal": _PATIENT, "radiological": _PATIENT,
            "sagittal": {"left": "anterior", "right": "posterior"}, "image": {"left": "left", "right": "right"}}
_ROWS = {"axial": {"upper": "anterior", "lower": "posterior"}, "coronal": {"upper": "superior", "lower": "inferior"},
         "sagittal": {"upper": "superior", "lower": "inferior"}, "radiological": {"upper": "upper", "lower": "lower"},
         "image": {"upper": "upper", "lower": "lower"}}
#: The body region an organ is imaged in: the frame's name in text ("the anterior part of the head").
REGIONS = {"brain": "head", "head": "head", "skull": "head", "orbit": "head", "neck": "neck", "chest": "chest",
           "thorax": "chest", "lung": "chest", "lungs": "chest", "heart": "chest", "breast": "chest",
           "abdomen": "abdomen", "liver": "abdomen", "kidney": "abdomen", "kidneys": "abdomen",
           "pancreas": "abdomen", "spleen": "abdomen", "pelvis": "pelvis", "prostate": "pelvis", "knee": "knee"}


def region_of(organ: str) -> str:
    """The frame's name for an organ's images: "head" for the brain, "body" when the organ is not one of
    :data:`REGIONS`."""
    return REGIONS.get(organ.strip().lower(), "body")


def patient_side(side: str, view: str) -> str:
    """What image left/right is in the body for a view: " (the patient's right)", " (anterior)", or nothing."""
    return "" if view == "image" else f" ({_COLUMNS[view][side]})"


def relation_words(view: str, side: str) -> str:
    """How box B lying ``side`` (image left/right) of box A reads: "left of", with the patient's side after A."""
    return f"{side} of"


def position_text(position: str, view: str, region: str = "body") -> str:
    """The stored grid cell in words: in the patient's terms within the body for a radiology view, in the
    image's otherwise. The stored ``position`` and the text say the same cell:

    >>> position_text("upper-left", "axial", "head")
    "anterior part of the head, on the patient's right"
    >>> position_text("lower-left", "image")
    "lower-left of the image"
    """
    if view == "image":
        return "center of the image" if position == "center" else f"{position} of the image"
    row, col = ("center", "center") if position == "center" else position.split("-")
    vertical = _ROWS[view].get(row, "")
    if view == "sagittal":  # both axes in the body's words: "superior anterior part"
        words = " ".join(w for w in (vertical, _COLUMNS[view].get(col, "")) if w)
        return f"{words or 'central'} part of the {region}"
    side = f", on {_COLUMNS[view][col]}" if col != "center" else ""
    return f"{vertical or 'central'} part of the {region}{side}"


MAX_ROIS = 65_535  # distinct labels one image may hold: the stored mask is a 16-bit PNG


def _narrowest(top: int) -> type:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return dtype
    return np.uint64


def as_labels(labelmap: np.ndarray) -> np.ndarray:
    """A label map as non-negative integers of the narrowest type; a reject if it holds anything else.

    Float label maps (atlases are often stored as float32) are checked and
    converted one slab at a time, never through a volume-sized int64 copy.
    """
    if labelmap.dtype.kind == "b":
        return labelmap.astype(np.uint8)
    if labelmap.dtype.kind not in "iuf":
        raise Reject("roi", f"label map of type {labelmap.dtype}")
    if labelmap.size == 0:
        return labelmap.astype(np.uint8)
    if labelmap.dtype.kind == "u":
        return labelmap  # non-negative integers already: nothing to check
    low, high = labelmap.min(), labelmap.max()
    if labelmap.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
        raise Reject("roi", "label map holds non-integer values")
    if low < 0:
        raise Reject("roi", "label map holds negative values")
    if labelmap.dtype.kind == "i":
        return labelmap
    out: np.ndarray = np.empty(labelmap.shape, dtype=_narrowest(int(high)))
    slabs: Any = range(labelmap.shape[-1]) if labelmap.ndim == 3 else [slice(None)]
    for slab in slabs:
        part = labelmap[..., slab]
        if (part != np.round(part)).any():
            raise Reject("roi", "label map holds non-integer values")
        out[..., slab] = part
    return out


def rois_from_labelmap(
    labelmap: np.ndarray, names: Mapping[int, str], default: str, frame: Frame | None = None
) -> tuple[list[Roi], np.ndarray | None]:
    """ROIs of every label value present, and the stored mask (0, or ROI index + 1).

    ``names`` maps label values to names; when it is not empty, a value missing
    from it is a reject (the mask does not fit its labels). Without names a
    binary mask's one label is called ``default`` and others ``region <value>``.
    """
    if labelmap.ndim != 2:
        raise Reject("roi", f"label map must be 2D, got shape {labelmap.shape}")
    labelmap = as_labels(labelmap)
    height, width = labelmap.shape
    flat = labelmap.ravel()
    where = np.flatnonzero(flat != 0)  # numpy finds a boolean array's nonzeros 3x faster than a label map's
    if where.size == 0:
        return [], None
    # one stable sort by label: each label's pixels stay in raster order, so its rows are already sorted
    values = flat[where]
    order = np.argsort(values, kind="stable")
    values, where = values[order], where[order]
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    uniq, counts = values[starts], np.diff(np.append(starts, values.size))
    if len(uniq) > MAX_ROIS:
        raise Reject("roi", f"label map holds {len(uniq)} distinct labels in one image, over the {MAX_ROIS} a "
                            "16-bit mask can store")
    missing = [int(v) for v in uniq if names and int(v) not in names]
    if missing:
        raise Reject("roi", f"mask value(s) {missing[:5]} not in the source's labels")
    ys, xs = np.divmod(where, width)
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts) + 1
    y0, y1 = ys[starts], ys[starts + counts - 1] + 1
    cx = np.add.reduceat(xs, starts) / counts + 0.5
    cy = np.add.reduceat(ys, starts) / counts + 0.5
    total, single = float(height * width), len(uniq) == 1
    rois = [Roi(bbox=(float(left), float(top), float(right), float(bottom)),
                label=names.get(value) or (default if single else f"region {value}"), area_ratio=count / total,
                position=position_of(x, y, width, height, frame), pixels=count)
            for value, left, top, right, bottom, count, x, y in zip(
                uniq.tolist(), x0.tolist(), y0.tolist(), x1.tolist(), y1.tolist(), counts.tolist(), cx.tolist(),
                cy.tolist())]
    return rois, stored_mask(labelmap, uniq)


def stored_mask(labelmap: np.ndarray, uniq: np.ndarray) -> np.ndarray:
    """The mask as stored: 0, or the ROI's index + 1 (8- or 16-bit)."""
    dtype = np.uint8 if len(uniq) < 256 else np.uint16
    if int(uniq[-1]) < 1 << 20:  # a lookup table is cheapest while it is small
        lut = np.zeros(int(uniq[-1]) + 1, dtype=dtype)
        lut[uniq] = np.arange(1, len(uniq) + 1)
        return lookup(lut, labelmap)  # as lut[labelmap], without fancy indexing's overhead
    index = np.searchsorted(uniq, labelmap) + 1
    return np.where(labelmap == 0, 0, index).astype(dtype)


EDGE_TOLERANCE = 0.5  # pixels a fractional box may overrun the image by (rounded normalised values); it is clipped


def rois_from_boxes(boxes: Iterable[Box], width: int, height: int, frame: Frame | None = None) -> list[Roi]:
    """Boxes of a box table, checked against the image's size; an edge up to half a pixel outside is clipped."""
    rois = []
    for given in boxes:
        if given.normalised:
            given = Box(given.x_min * width, given.y_min * height, given.x_max * width, given.y_max * height,
                        given.label)
        low, high = -EDGE_TOLERANCE, EDGE_TOLERANCE
        if given.x_min < low or given.y_min < low or given.x_max > width + high or given.y_max > height + high:
            raise Reject("roi", f"box {given.label!r} {[given.x_min, given.y_min, given.x_max, given.y_max]} "
                                f"lies outside the {width}x{height} image")
        box = Box(max(given.x_min, 0.0), max(given.y_min, 0.0), min(given.x_max, float(width)),
                  min(given.y_max, float(height)), given.label)
        area = (box.x_max - box.x_min) * (box.y_max - box.y_min)
        cx, cy = (box.x_min + box.x_max) / 2, (box.y_min + box.y_max) / 2
        rois.append(
            Roi(
                bbox=(box.x_min, box.y_min, box.x_max, box.y_max),
                label=box.label,
                area_ratio=area / float(width * height),
                position=position_of(cx, cy, width, height, frame),
            )
        )
    return rois


def rois_from_proposals(proposals: Iterable[Any], width: int, height: int, origin: str,
                        frame: Frame | None = None) -> list[Roi]:
    """ROIs from proposed masks or boxes: same geometry as annotations, their ``origin`` and ``score``.

    A proposal's mask gives its box and area ratio but is not stored: proposals
    may overlap (a lesion inside the body region), which one label map cannot hold.
    """
    rois = []
    for proposal in proposals:
        if proposal.mask is not None:
            ys, xs = np.nonzero(proposal.mask)
            if ys.size == 0:
                continue
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            area, (cx, cy) = ys.size / float(width * height), (xs.mean() + 0.5, ys.mean() + 0.5)
        else:
            x0, y0, x1, y1 = proposal.box
            box = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            area = (box[2] - box[0]) * (box[3] - box[1]) / float(width * height)
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        rois.append(Roi(bbox=box, label=proposal.label, area_ratio=area,
                        position=position_of(cx, cy, width, height, frame), origin=origin,
                        score=round(float(proposal.score), 4)))
    return rois
