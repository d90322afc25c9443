"""DICOM SEG objects as masks: paired with the images they reference, segments as labelled ROIs.

highdicom reads the SEG; each image of a ``format: dicom`` source whose SOP
Instance UID a SEG references gets that SEG as its mask, and the SEG's pixels
for that image (and frame) become a label map whose values are segment
numbers, named by each segment's Segment Label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import Problem, Reject

__all__ = ["pair_segmentations", "seg_labelmaps"]


def _uid(path: Path) -> str | None:
    import pydicom

    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    except Exception:  # not readable here: the image's own reader says why later
        return None


def pair_segmentations(images: list[Any], segmentations: list[Path], rel: Any) -> tuple[dict[Path, Path],
                                                                                         list[Problem]]:
    """``{image path: SEG path}`` by referenced SOP Instance UID, and what pairs with nothing."""
    import highdicom as hd

    by_uid: dict[str, Path] = {}
    problems: list[Problem] = []
    for path in segmentations:
        try:
            uids = [str(sop) for _, _, sop in hd.seg.segread(path).get_source_image_uids()]
        except Exception as exc:  # not a SEG, or a broken one
            problems.append(Problem(rel(path), f"not a readable DICOM SEG ({type(exc).__name__})", "segmentations"))
            continue
        for referenced in uids:
            by_uid.setdefault(str(referenced), path)
    pairs: dict[Path, Path] = {}
    for image in images:
        uid = _uid(image)
        if uid is not None and uid in by_uid:
            pairs[image] = by_uid.pop(uid)
    for path in sorted(set(by_uid.values()) - set(pairs.values())):
        problems.append(Problem(rel(path), "segmentation references no listed image", "segmentations"))
    return pairs, problems


def seg_labelmaps(path: Path, sop_uid: str, frames: int,
                  shape: tuple[int, int]) -> tuple[list[np.ndarray], dict[int, str]]:
    """One label map per frame of the referenced image (values: segment numbers) and the segment labels."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(path)
        names = {n: str(seg.get_segment_description(n).segment_label) for n in seg.get_segment_numbers()}
        if frames == 1:
            pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=[sop_uid], combine_segments=True,
                                                       skip_overlap_checks=True)
        else:
            pixels = seg.get_pixels_by_source_frame(sop_uid, source_frame_numbers=list(range(1, frames + 1)),
                                                    combine_segments=True, skip_overlap_checks=True)
    except Exception as exc:  # a SEG that does not fit its image
        raise Reject("mask", f"the DICOM SEG does not give this image's mask ({type(exc).__name__}: {exc})") from None
    maps = [np.asarray(frame) for frame in pixels]
    if any(m.shape != shape for m in maps):
        raise Reject("mask", f"the DICOM SEG's frames are not {shape[1]}x{shape[0]} like the image")
    return maps, names
