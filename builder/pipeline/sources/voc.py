"""``format: voc``: a Pascal VOC folder: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main`` split lists.

Each XML names its image (``<filename>`` in ``JPEGImages/``; the ``<path>`` an
annotator's tool wrote, a path on its own machine, is never read) and its
objects: ``<bndbox>`` is 1-based and inclusive, so ``xmin..xmax`` covers the
pixel-edge box ``[xmin - 1, xmax]``. ``ImageSets/Main/{train,val,test}.txt`` give
the splits (an image in none keeps the source's split; ``trainval`` and the
per-class lists are read by no one). An XML without its image, and an image
without its XML, are reject lines; the rest of the folder is counted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from builder.errors import Problem, Reject
from builder.imaging import RASTER_SUFFIXES
from builder.pipeline.data import Box, Record, Unit
from builder.pipeline.readers import READERS
from builder.pipeline.readers.display import for_display
from builder.pipeline.sources.base import FolderSource, relative, skipped_kind
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import RootOptions

__all__ = ["VocOptions", "VocSource", "read_voc"]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class VocOptions(RootOptions):
    """``format: voc``: the folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/``."""


def read_voc(path: Path) -> tuple[str, tuple[Box, ...]]:
    """The image file name and the boxes of one annotation XML (a reject when it is not VOC)."""
    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise Reject("read", f"{path.name} is not readable XML ({exc})") from None
    name = (root.findtext("filename") or "").strip()
    boxes = []
    for number, item in enumerate(root.iter("object")):
        bndbox = item.find("bndbox")
        try:
            x0, y0, x1, y1 = (float(bndbox.findtext(k) or "") for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            raise Reject("roi", f"object {number} of {path.name} has no numeric bndbox") from None
        boxes.append(Box(x0 - 1, y0 - 1, x1, y1, (item.findtext("name") or "object").strip()))
    return name, tuple(boxes)


def _splits(root: Path) -> dict[str, str]:
    """Image stem -> split, from ``ImageSets/Main/{train,val,test}.txt``."""
    found: dict[str, str] = {}
    for split in SPLITS:
        path = root / "ImageSets" / "Main" / f"{split}.txt"
        if path.is_file():
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                if line.split():
                    found.setdefault(line.split()[0], split)
    return found


class VocSource(FolderSource):
    options = VocOptions

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        root: Path = spec.options.root
        splits = _splits(root)
        images = {p.stem: p for p in sorted((root / "JPEGImages").glob("*"))
                  if p.suffix.lower() in RASTER_SUFFIXES and skipped_kind(p, ()) is None}
        units, problems, used = [], [], set(images.values())
        for xml in sorted((root / "Annotations").glob("*.xml")):
            used.add(xml)
            image = images.pop(xml.stem, None)
            if image is None:
                problems.append(Problem(relative(spec, xml), "annotation whose image is not in JPEGImages/",
                                        f"Annotations/{xml.stem}"))
                continue
            try:
                name, boxes, problem = *read_voc(xml), None
                if name and Path(name).stem != image.stem:
                    problem = f"its annotation {xml.name} names another image"
            except Reject as exc:
                boxes, problem = (), f"its annotation {xml.name} is unusable: {exc.reason}"
            units.append(Unit(spec=spec, image=image, rel=relative(spec, image), split=splits.get(image.stem,
                              spec.split), boxes=boxes, problem=problem, related=(str(xml),)))
        for stem, image in images.items():  # images without an annotation
            units.append(Unit(spec=spec, image=image, rel=relative(spec, image), split=splits.get(stem, spec.split),
                              problem="no annotation Annotations/<its stem>.xml"))
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p not in used):
            kind = skipped_kind(path, ()) or ("split list (ImageSets)" if "ImageSets" in path.parts else
                                              "side file (not read by the format)")
            problems.append(Problem(relative(spec, path), kind, skipped=kind))
        return units, problems

    def records(self, unit: Unit) -> Iterator[Record]:
        pixels = for_display(READERS["image"].read(unit.image)[0])
        yield Record(unit=unit, pixels=pixels, labelmap=None, modality=unit.spec.modality or "")
