"""From a work unit to finished rows: ROIs, coarse caption, description, PNGs.

:func:`process_unit` is what a worker runs. It returns a :class:`UnitResult`:
all of the unit's rows, or none of them and the reason (no partial file).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from medtrinity_25m import ATTRIBUTE_KEYS

from .errors import Reject
from .roi import convention, rois_from_boxes, rois_from_labelmap
from .sources import ADAPTERS
from .sources.base import Record, Unit, check_inside
from .text.caption import coarse_caption, subject, template_values
from .text.describers import DESCRIBERS, DescribeRequest, Describer, join_caption
from .text.measure import measure


@dataclass(frozen=True)
class TripletOptions:
    describer: str = "template"
    png_level: int = 1  # zlib level: 1 is ~as small as 6 on medical images, and faster


@dataclass
class UnitResult:
    unit: Unit
    rows: list[dict[str, Any]] = field(default_factory=list)
    reject: Reject | None = None


def row_id(source: str, rel: str, plane: str | None, index: int | None) -> str:
    """Stable id from source, file and slice: ``<source>-<20 hex digits>``.

    Dots are replaced so the id is a valid WebDataset key.
    """
    digest = hashlib.sha1(f"{source}\0{rel}\0{plane or ''}\0{'' if index is None else index}".encode())
    return f"{source.replace('.', '_')}-{digest.hexdigest()[:20]}"


def encode_png(pixels: np.ndarray, level: int) -> bytes:
    """PNG bytes of the pixels as they are: 8-bit, 16-bit gray or RGB; no metadata."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def make_row(record: Record, describer: Describer, options: TripletOptions) -> dict[str, Any]:
    """One finished row (see ``medtrinity_25m.FEATURES``)."""
    unit, spec = record.unit, record.unit.spec
    height, width = record.pixels.shape[:2]
    rois, mask = ([], None)
    if record.labelmap is not None:
        rois, mask = rois_from_labelmap(record.labelmap, spec.labels, default=spec.disease or "region")
    rois = rois + rois_from_boxes(unit.boxes, width, height)
    values = template_values(record, rois)
    subj = subject(record, values)
    caption = coarse_caption(record, rois, values, subj)
    request = DescribeRequest(
        id=row_id(spec.name, unit.rel, record.plane, record.slice_index),
        modality=record.modality, organ=subj.organ, disease=subj.disease, plane=record.plane,
        slice_index=record.slice_index, coarse_caption=caption, rois=rois,
        stats=measure(record.pixels, mask, rois), view=convention(record.modality, record.plane),
        image=record.pixels,
    )
    attributes = describer.describe(request)
    missing = [key for key in ATTRIBUTE_KEYS if not attributes.get(key)]
    if missing:
        raise Reject("describe", f"describer {describer.name!r} gave no {', '.join(missing)}")
    return {
        "id": request.id,
        "image": {"bytes": encode_png(record.pixels, options.png_level), "path": None},
        "mask": None if mask is None else {"bytes": encode_png(mask, options.png_level), "path": None},
        "modality": record.modality,
        "organ": subj.organ,
        "disease": subj.disease or None,
        "rois": [roi.as_row() for roi in rois],
        "coarse_caption": caption,
        "caption": join_caption(attributes),
        "attributes": {key: attributes[key] for key in ATTRIBUTE_KEYS},
        "knowledge": [],
        "reference": None,
        "source": spec.name,
        "source_file": unit.rel,
        "plane": record.plane,
        "slice_index": record.slice_index,
        "width": width,
        "height": height,
        "license": spec.license,
    }


def process_unit(unit: Unit, options: TripletOptions) -> UnitResult:
    """All rows of one unit, or a reject naming the stage and the reason."""
    describer = DESCRIBERS[options.describer]()
    try:
        check_inside(unit)
        rows = [make_row(record, describer, options) for record in ADAPTERS[unit.spec.format].records(unit)]
    except Reject as exc:
        return UnitResult(unit, reject=exc)
    except MemoryError:
        return UnitResult(unit, reject=Reject("read", "out of memory while reading"))
    except Exception as exc:  # an unforeseen failure still ends as a reject line, never a crash
        return UnitResult(unit, reject=Reject("internal", f"{type(exc).__name__}: {exc}"))
    return UnitResult(unit, rows=rows)
