"""The describer's prompt: MedTrinity-25M's three levels, then one integration.

The model receives the image, the coarse caption, every ROI with its position
and area ratio, and the retrieved knowledge; it is asked to align them with what
it sees and to answer with one JSON object holding the five attributes.
"""

from __future__ import annotations

from typing import Any, Sequence

from builder.llm import ParseError, json_object
from builder.pipeline.text.styles import STYLES, where
from medtrinity_25m import ATTRIBUTE_KEYS

PROMPT_VERSION = "medtrinity-v1"

SYSTEM = (
    "You are an expert radiologist and pathologist writing precise, factual descriptions of medical images "
    "for a training dataset. State only what the image, the metadata or the reference knowledge supports."
)

INSTRUCTIONS = """\
Describe this medical image at three levels, then integrate them.
1. Global description: the modality, the view and the organs or tissues shown.
2. Local analysis of each region of interest (ROI) listed below, at its given position and area ratio:
   what it contains, its colour, intensity (density, signal or echogenicity) and texture.
3. Relationship: how the regions of interest relate to each other and to the rest of the image.
Use the coarse caption and the medical knowledge as guidance, and align them with what you see; do not
repeat knowledge that the image does not show.

Answer with one JSON object and nothing else, with these keys (each a string of one to three sentences):
- "modality": the imaging modality and view;
- "organ_detection": the organs and tissues detected;
- "roi_analysis": the location and description of each region of interest;
- "texture": disease-related colour and texture;
- "region_relationship": the relation between the regions of interest and the surrounding structures.
"""




def roi_lines(rois: Sequence[Any], view: str, style: str = "attributes", organ: str = "") -> str:
    if not rois:
        return "No region of interest is annotated: describe the whole image."
    line = STYLES[style].prompt_roi
    return "\n".join(f"ROI {i}: {line(roi, where(roi, view, organ))}" for i, roi in enumerate(rois, 1))


def user_text(coarse_caption: str, rois: Sequence[Any], view: str, knowledge: Sequence[str],
              style: str = "attributes", organ: str = "", correction: str = "") -> str:
    instructions = INSTRUCTIONS + STYLES[style].prompt_form
    parts = [instructions, f"Coarse caption: {coarse_caption}",
             "Regions of interest:\n" + roi_lines(rois, view, style, organ)]
    if knowledge:
        parts.append("Medical knowledge:\n" + "\n".join(f"[{i}] {text}" for i, text in enumerate(knowledge, 1)))
    if correction:  # a retry: what the first answer contradicted
        parts.append(correction)
    return "\n\n".join(parts)




def parse_attributes(text: str, keys: Sequence[str] = ATTRIBUTE_KEYS) -> dict[str, str]:
    """The JSON object of a model's answer (fenced or bare), with every key non-empty."""
    value = json_object(text)
    missing = [k for k in keys if not isinstance(value.get(k), (str, int, float)) or not str(value[k]).strip()]
    if missing:
        raise ParseError(f"answer lacks {', '.join(missing)}")
    return {k: str(value[k]).strip() for k in keys}
