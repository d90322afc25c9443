"""Multigranular description: the describer interface and the offline default.

A describer receives a :class:`DescribeRequest` (coarse caption, ROIs with
their measured features, the image, retrieved knowledge) and returns the five
attributes of MedTrinity-25M. :class:`TemplateDescriber` is deterministic and
offline: it states only what the metadata says or what was measured.
Model-backed describers implement the same protocol and join ``DESCRIBERS``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from builder.anatomy import name_list, plain_label
from builder.errors import Reject
from builder.pipeline.data import DescribeRequest, Roi, RoiStats
from builder.pipeline.roi import patient_side, relation_words
from builder.pipeline.template import tidy
from builder.pipeline.text.medtrinity import paragraph
from builder.pipeline.text.radiology import allowed, compared
from builder.pipeline.text.styles import STYLES, cap, percent, where
from medtrinity_25m import ATTRIBUTE_KEYS, MODALITY_NAMES

MAX_ROIS_DESCRIBED = 5
CONTRAST_THRESHOLD = 0.05  # luminance difference (0..1) under which a ROI is "iso"
HETEROGENEITY = ((0.15, "homogeneous"), (0.35, "mildly heterogeneous"), (float("inf"), "heterogeneous"))
#: Words for brighter / darker / similar, per modality.
INTENSITY_WORDS: dict[str, tuple[str, str, str]] = {
    "ct": ("hyperdense", "hypodense", "isodense"),
    "mri": ("hyperintense", "hypointense", "isointense"),
    "ultrasound": ("hyperechoic", "hypoechoic", "isoechoic"),
    "pet": ("more tracer-avid", "less tracer-avid", "of similar uptake"),
}
DEFAULT_WORDS = ("brighter", "darker", "of similar brightness")


class Describer(Protocol):
    @property
    def name(self) -> str: ...

    def info(self) -> dict[str, object]:
        """What ``build.json`` records of it: backend, model, prompt version."""
        ...

    def describe(self, request: DescribeRequest) -> dict[str, str]:
        """The five attributes, keyed by :data:`medtrinity_25m.ATTRIBUTE_KEYS`."""
        ...

    def report(self) -> dict[str, Any]:
        """What it counted while describing (retries, tokens), for build.json; {} for most."""
        ...


class DescriberHooks:
    """The optional hooks of :class:`Describer`, as most describers answer them."""

    def report(self) -> dict[str, Any]:
        return {}


def _value(text: str) -> str:
    """A source's value set inside a sentence: without its own closing full stop ("Crohn disease.")."""
    return text.rstrip(" .")


def set_text(row: dict[str, Any], attributes: dict[str, str], describer: str, from_model: bool = False) -> None:
    """Put a describer's five attributes, and their join, into a row.

    The modality must be stated; an attribute with nothing to state is empty
    (null), never a sentence about its own absence, and the caption leaves it out.
    A model's answer (``from_model``) is tidied of doubled marks and words; the
    template describer's sentences are built clean (its values come through
    :func:`builder.pipeline.template.tidy` when the manifest's rules render them).
    """
    if not str(attributes.get("modality") or "").strip():
        raise Reject("describe", f"describer {describer!r} gave no modality")
    clean = tidy if from_model else str
    row["attributes"] = {key: (clean(str(attributes.get(key) or "").strip()) or None) for key in ATTRIBUTE_KEYS}
    row["caption"] = clean(str(attributes.get("caption") or "").strip()) or \
        join_caption({k: v or "" for k, v in row["attributes"].items()})


def join_caption(attributes: dict[str, str]) -> str:
    """The integrated description: the five attributes in order."""
    return " ".join(attributes[key].strip() for key in ATTRIBUTE_KEYS if attributes.get(key, "").strip())


def _name(roi: Roi) -> str:
    """How text names an ROI: its label in plain anatomical English (:mod:`builder.anatomy`)."""
    return plain_label(roi.label)


def _mm(roi: Roi, spacing: tuple[float, float] | None) -> str:
    """", 9.4x7.8 mm" for a box whose pixel spacing is known."""
    if not spacing:
        return ""
    x0, y0, x1, y1 = roi.bbox
    return f", {(x1 - x0) * spacing[1]:.1f}x{(y1 - y0) * spacing[0]:.1f} mm"


def _by_area(rois: Sequence[Roi]) -> list[int]:
    """The ROIs' indices, largest area first (the first of equals first)."""
    return sorted(range(len(rois)), key=lambda i: -rois[i].area_ratio)


def _largest(request: DescribeRequest, order: Sequence[int]) -> list[tuple[Roi, RoiStats]]:
    """The largest ROIs that are described (``order``: :func:`_by_area`) and their measurements."""
    return [(request.rois[i], request.stats[i]) for i in order[:MAX_ROIS_DESCRIBED]]


def _more(request: DescribeRequest) -> str:
    rest = len(request.rois) - MAX_ROIS_DESCRIBED
    return f" {rest} smaller region{'s' if rest > 1 else ''} are annotated as well." if rest > 0 else ""


@dataclass(frozen=True)
class TemplateDescriber(DescriberHooks):
    """Deterministic offline describer: metadata and measurements into sentences."""

    name: str = "template"
    style: str = "attributes"  # or "medtrinity": the release's paragraph (builder.pipeline.text.medtrinity)

    def info(self) -> dict[str, object]:
        return {"name": self.name, "version": 2, "style": self.style}

    def describe(self, request: DescribeRequest) -> dict[str, str]:
        order = _by_area(request.rois)  # sorted once: three attributes speak of the largest ROIs
        largest = _largest(request, order)
        attributes = {
            "modality": self._modality(request),
            "organ_detection": self._organs(request),
            "roi_analysis": self._rois(request, order),
            "texture": self._texture(request, largest),
            "region_relationship": self._relationship(request, largest),
        }
        if STYLES[self.style].paragraph:
            organ = request.organ if request.organ != "unspecified" else ""
            sentences = [attributes[k] for k in ("roi_analysis", "texture", "region_relationship")]
            finding = attributes["organ_detection"].split("Annotated structure")[0] if not request.rois else ""
            attributes["caption"] = paragraph(request.modality, organ, request.rois, [finding, *sentences])
        return attributes

    def _modality(self, r: DescribeRequest) -> str:
        name = MODALITY_NAMES.get(r.modality, r.modality)
        article = "An" if name[:1].lower() in "aeiou" or name.startswith(("MRI", "X-")) else "A"
        where = f" in the {r.plane} plane" if r.plane else ""
        index = "" if r.slice_index is None else f" ({'slice' if r.plane else 'frame'} {r.slice_index})"
        return f"{article} {name} image{where}{index}."

    def _organs(self, r: DescribeRequest) -> str:
        parts = [f"Organ or region: {_value(r.organ)}."] if r.organ and r.organ != "unspecified" else []
        if r.rois:
            names = list(dict.fromkeys(_name(roi) for roi in r.rois))
            parts.append(f"Annotated structure{'s' if len(names) > 1 else ''}: {name_list(names)}.")
        if r.disease and r.finding_shown is not False:
            parts.append(f"The source records the finding as {_value(r.disease)}.")
        elif r.disease:  # a slice of a study whose finding this slice does not show
            parts.append(f"The {'slice' if r.plane else 'frame'} is from a study recorded with "
                         f"{_value(r.disease)}.")
        return " ".join(parts)

    def _rois(self, r: DescribeRequest, order: Sequence[int]) -> str:
        if not r.rois:
            return ""
        parts = []
        style = STYLES[self.style]
        limit = len(r.rois) if style.every_roi else MAX_ROIS_DESCRIBED
        described = [r.rois[i] for i in order[:limit]]
        for roi in described:
            x0, y0, x1, y1 = roi.bbox
            box = f"box {x1 - x0:.0f}x{y1 - y0:.0f} px{_mm(roi, r.spacing)}"
            parts.append(style.roi_sentence(_name(roi), roi, where(roi, r.view, r.organ), box))
        return " ".join(parts) + (_more(r) if len(described) < len(r.rois) else "")

    def _texture(self, r: DescribeRequest, largest: list[tuple[Roi, RoiStats]]) -> str:
        if not r.rois:
            return ""
        parts = []
        for roi, st in largest:
            texture = next(name for limit, name in HETEROGENEITY if st.cv < limit)
            contrast = _contrast(r, roi, st)
            text = (f"{_name(roi)} is {contrast + ' and ' if contrast else ''}{texture} "
                    f"(coefficient of variation {st.cv:.2f})")
            if st.redness_in is not None and st.redness_ring is not None:
                delta = st.redness_in - st.redness_ring
                if abs(delta) > CONTRAST_THRESHOLD:
                    text += f", {'redder' if delta > 0 else 'less red'} than around it"
            parts.append(cap(text) + ".")
        return " ".join(parts + _organs_compared(r))

    def _relationship(self, r: DescribeRequest, pairs: list[tuple[Roi, RoiStats]]) -> str:
        if not r.rois:
            return ""
        total = sum(roi.area_ratio for roi in r.rois)
        first = pairs[0][0]
        text = (f"Together the regions cover {percent(min(total, 1.0))} of the image; "
                f"the largest is {_name(first)} ({percent(first.area_ratio)}).")
        relations = [_relation(a, b, r.view) for (a, _), (b, _) in itertools.pairwise(pairs[:3])]
        return text + "".join(f" {cap(rel)}" for rel in relations)


def _contrast(r: DescribeRequest, roi: Roi, st: RoiStats) -> str:
    """"hypointense relative to the rest of the brain (mean 0.41 vs 0.52)", or "" when the comparison is not
    meaningful (:mod:`builder.pipeline.text.measure`) or says what radiology rules out
    (:mod:`builder.pipeline.text.radiology`)."""
    if st.reference is None:
        return ""
    direction = "hyper" if st.contrast > CONTRAST_THRESHOLD else "hypo" if st.contrast < -CONTRAST_THRESHOLD else "iso"
    permitted = allowed(r.modality, r.sequence, _name(roi), parcel=st.reference == "parent")
    if permitted is not None and direction not in permitted:
        return ""
    brighter, darker, similar = INTENSITY_WORDS.get(r.modality, DEFAULT_WORDS)
    word = {"hyper": brighter, "hypo": darker, "iso": similar}[direction]
    organ = r.organ if r.organ and r.organ != "unspecified" else "annotated anatomy"
    against = f"the rest of the {organ}" if st.reference == "parent" else "the surrounding tissue"
    return f"{word} relative to {against} (mean {st.mean_in:.2f} vs {st.mean_ring:.2f})"


def _organs_compared(r: DescribeRequest) -> list[str]:
    """"The liver is hyperdense relative to the spleen (mean 0.52 vs 0.47).": organs radiologists compare."""
    sentences = []
    for i, j in compared(r.modality, [_name(roi) for roi in r.rois]):
        difference = r.stats[i].mean_in - r.stats[j].mean_in
        brighter, darker, similar = INTENSITY_WORDS.get(r.modality, DEFAULT_WORDS)
        word = brighter if difference > CONTRAST_THRESHOLD else darker if difference < -CONTRAST_THRESHOLD else similar
        sentences.append(f"{cap(_name(r.rois[i]))} is {word} relative to the {_name(r.rois[j])} (mean "
                         f"{r.stats[i].mean_in:.2f} vs {r.stats[j].mean_in:.2f}).")
    return sentences


def _relation(a: Roi, b: Roi, view: str) -> str:
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    gap_x, gap_y = max(bx0 - ax1, ax0 - bx1), max(by0 - ay1, ay0 - by1)
    if gap_x < 0 and gap_y < 0:
        return f"The boxes of {_name(a)} and {_name(b)} overlap."
    if max(gap_x, gap_y) <= 2:
        return f"{_name(b)} borders {_name(a)}."
    if gap_x >= gap_y:
        side = "left" if bx1 <= ax0 else "right"
        return f"{_name(b)} lies {relation_words(view, side)} {_name(a)} in the image{patient_side(side, view)}."
    return f"{_name(b)} lies {'above' if by1 <= ay0 else 'below'} {_name(a)}."

