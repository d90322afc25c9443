"""``format: coco``: a COCO detection or instance-segmentation file and the folder of its images.

``annotations`` is the JSON (``images``, ``annotations``, ``categories``);
``images`` the folder its ``file_name`` values are relative to (sub-folders
kept). An instance with a ``segmentation`` (polygons, uncompressed RLE with
``iscrowd: 1``, or a compressed RLE string) becomes a mask, rasterised by
pycocotools as COCO's own tools do, each instance its own ROI named by its
category; an instance with only a ``bbox`` (float ``x, y, w, h``) becomes a box.
An image without annotations gives a row without ROIs. An image the JSON lists
but the folder lacks, and an annotation naming no listed image, are reject
lines; a file of the folder the JSON does not list is a counted skip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from builder.errors import ManifestError, Problem, Reject
from builder.pipeline.data import Box, Record, Shape, Unit
from builder.pipeline.readers import READERS
from builder.pipeline.readers.display import for_display
from builder.pipeline.sources.base import FolderSource, relative, skipped_kind
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import PixelScreening, folder_of, path_of
from builder.pipeline.values import json_file

__all__ = ["CocoOptions", "CocoSource", "rasterise"]


@dataclass(frozen=True)
class CocoOptions(PixelScreening):
    """``format: coco``: the annotation file and the images' folder."""

    annotations: Path = field(default=Path("."), metadata={"parse": path_of, "required": True})
    images: Path = field(default=Path("."), metadata={"parse": folder_of, "required": True})

    def columns(self) -> set[str]:
        return set()

    def inputs(self) -> str:
        return f"annotations {self.annotations.name}"

    @property
    def data_root(self) -> Path:
        return self.images

    @property
    def label_names(self) -> Mapping[int, str]:
        return {}


def _load(path: Path) -> dict[str, Any]:
    doc = json_file(path, "annotations", "COCO JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise ManifestError("annotations", f"{path} has no images list: not a COCO annotation file")
    return doc


def _instance(annotation: Mapping[str, Any], label: str) -> Shape | Box | None:
    """An annotation as a shape to rasterise, a box, or None when it has neither."""
    segmentation = annotation.get("segmentation")
    if isinstance(segmentation, list) and segmentation:
        return Shape(label, polygons=tuple(tuple(float(v) for v in part) for part in segmentation))
    if isinstance(segmentation, dict) and "counts" in segmentation:
        return Shape(label, rle=dict(segmentation))
    bbox = annotation.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4:
        x, y, w, h = (float(v) for v in bbox)
        return Box(x, y, x + w, y + h, label)
    return None


class CocoSource(FolderSource):
    options = CocoOptions

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        options: CocoOptions = spec.options
        doc = _load(options.annotations)
        names = {c["id"]: str(c.get("name", c["id"])) for c in doc.get("categories", []) if "id" in c}
        instances: dict[Any, list[Shape | Box]] = {}
        problems: list[Problem] = []
        listed = {image.get("id") for image in doc["images"]}
        for number, annotation in enumerate(doc.get("annotations", [])):
            found = _instance(annotation, names.get(annotation.get("category_id"), "object"))
            if annotation.get("image_id") not in listed or found is None:
                why = "names no image of the file" if found is not None else "has neither segmentation nor bbox"
                problems.append(Problem(f"{options.annotations}:annotation {number}", f"annotation {number} {why}",
                                        f"annotation {number}"))
            else:
                instances.setdefault(annotation["image_id"], []).append(found)
        units, used = [], set()
        for entry in doc["images"]:
            image = options.images / str(entry.get("file_name", ""))
            used.add(image)
            drawn = instances.get(entry.get("id"), [])
            units.append(Unit(spec=spec, image=image, rel=relative(spec, image), split=spec.split,
                              boxes=tuple(i for i in drawn if isinstance(i, Box)),
                              shapes=tuple(i for i in drawn if isinstance(i, Shape)),
                              problem=None if image.is_file() else "the annotation file lists it; it is not there"))
        for path in sorted(p for p in options.images.rglob("*") if p.is_file() and p not in used):
            kind = skipped_kind(path, ()) or "not listed in the annotation file"
            problems.append(Problem(relative(spec, path), kind, skipped=kind))
        return units, problems

    def records(self, unit: Unit) -> Iterator[Record]:
        pixels = for_display(READERS["image"].read(unit.image)[0])
        labelmap, names = rasterise(unit.shapes, pixels.shape[0], pixels.shape[1])
        yield Record(unit=unit, pixels=pixels, labelmap=labelmap, modality=unit.spec.modality or "",
                     label_names=names)


def rasterise(shapes: tuple[Shape, ...], height: int, width: int) -> tuple[np.ndarray | None, dict[int, str]]:
    """One label map of the shapes, instance ``i`` as value ``i + 1`` named by its label (pycocotools: COCO's
    own rasterisation of polygons and run lengths); None when there are no shapes."""
    if not shapes:
        return None, {}
    from pycocotools import mask as coco_mask

    labels = np.zeros((height, width), dtype=np.uint16 if len(shapes) > 255 else np.uint8)
    names: dict[int, str] = {}
    for value, shape in enumerate(shapes, start=1):
        if shape.rle is not None:
            size = [int(s) for s in shape.rle.get("size", [])]
            if size != [height, width]:
                raise Reject("mask", f"a run-length mask of {shape.label!r} is {size}, the image {[height, width]}")
            rle = shape.rle if isinstance(shape.rle["counts"], (str, bytes)) else \
                coco_mask.frPyObjects(dict(shape.rle), height, width)
        else:
            rle = coco_mask.merge(coco_mask.frPyObjects([list(p) for p in shape.polygons], height, width))
        inside = coco_mask.decode(rle).astype(bool)
        labels[inside] = value
        names[value] = shape.label
    return labels, names
