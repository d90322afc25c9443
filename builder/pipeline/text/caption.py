"""Metadata integration: the manifest's rules turn a record's fields into text.

The template fields are those of :data:`builder.pipeline.sources.manifest.TEMPLATE_FIELDS`
plus the columns of the source's metadata table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from builder.anatomy import name_list, plain_label
from builder.errors import Reject
from builder.pipeline.data import Record, Roi, file_stem
from builder.pipeline.template import DEFAULT_CAPTION, Template, TemplateError, tidy
from builder.pipeline.text.styles import STYLES
from medtrinity_25m import MODALITY_NAMES

MAX_REGIONS_IN_CAPTION = 12
UNSPECIFIED = "unspecified"


@dataclass(frozen=True)
class Subject:
    """What the metadata says about a sample: the row's organ and disease."""

    organ: str
    disease: str


def region_list(rois: Sequence[Roi]) -> str:
    return name_list([plain_label(roi.label) for roi in rois], MAX_REGIONS_IN_CAPTION)


def view_text(plane: str | None, slice_index: int | None, volume: int | None = None) -> str:
    if volume is not None:
        return f"volume {volume}, " + view_text(plane, slice_index)
    if plane and slice_index is not None:
        return f"{plane} slice {slice_index}"
    if slice_index is not None:
        return f"frame {slice_index}"
    return f"{plane} view" if plane else ""


def template_values(record: Record, rois: Sequence[Roi]) -> dict[str, Any]:
    height, width = record.pixels.shape[:2]
    values: dict[str, Any] = {k: ("" if v is None else v) for k, v in record.unit.meta.items()}
    values.update(
        modality=record.modality,
        modality_name=MODALITY_NAMES.get(record.modality, record.modality),
        plane=record.plane or "",
        slice_index="" if record.slice_index is None else record.slice_index,
        view=view_text(record.plane, record.slice_index, record.volume_index),
        regions=region_list(rois),
        n_rois=len(rois),
        source=record.unit.spec.name,
        stem=file_stem(record.unit.image),
        folder=record.unit.image.parent.name,
        width=width,
        height=height,
    )
    if record.release is not None:  # a published release's own fields
        values.update(release_source=record.release.source or "", file_name=record.release.public)
    return values


def render(template: str, values: dict[str, Any], key: str) -> str:
    try:
        return tidy(Template(template).render(values))
    except TemplateError as exc:
        raise Reject("caption", f"'{key}' rule: {exc}") from None


def subject(record: Record, values: dict[str, Any]) -> Subject:
    """The organ and disease of a sample from the manifest's rules and header hints."""
    organ = render(record.unit.spec.organ, values, "organ")
    if organ in ("", UNSPECIFIED) and record.hints.get("organ"):
        organ = record.hints["organ"]
    return Subject(organ=organ or UNSPECIFIED, disease=render(record.unit.spec.disease, values, "disease"))


def coarse_caption(record: Record, rois: Sequence[Roi], values: dict[str, Any], subj: Subject,
                   style: str = "attributes") -> str:
    """The source's caption rule; with ``style`` medtrinity and no rule of its own, the paper's form."""
    organ = "" if subj.organ == UNSPECIFIED else subj.organ  # an unknown organ drops its clause
    own = STYLES[style].coarse
    if own is not None and record.unit.spec.caption == DEFAULT_CAPTION:
        return own(record.modality, organ, subj.disease)
    values = dict(values, organ=organ, disease=subj.disease)
    return render(record.unit.spec.caption, values, "caption")
