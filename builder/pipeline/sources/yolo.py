"""``format: yolo``: an Ultralytics YOLO dataset: ``data.yaml`` (or ``classes.txt``), images and their labels.

``data.yaml`` names the classes (``names``: a list or ``{index: name}``) and the
split folders (``train``, ``val``, ``test``, relative to ``path`` or to the file;
Roboflow's exports write ``../train/images``). Without it, ``classes.txt`` holds
the names and ``images/`` (with or without split sub-folders) the images. An
image's labels are the ``.txt`` of the same stem in the ``labels`` folder beside
``images`` (Ultralytics' rule): one line per object, ``class cx cy w h``
normalised to the image, or ``class x1 y1 x2 y2 ...`` for a polygon (its box is
kept). An image without a labels file gives a row without ROIs (YOLO's
negatives); a split folder that ``data.yaml`` names but that is absent is
reported once, never fatal.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

from builder.errors import ManifestError, Problem, Reject
from builder.imaging import RASTER_SUFFIXES
from builder.pipeline.data import Box, Record, Unit
from builder.pipeline.readers import READERS
from builder.pipeline.readers.display import for_display
from builder.pipeline.sources.base import FolderSource, relative, skipped_kind
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import RootOptions
from builder.yamlsafe import YamlError, load_yaml

__all__ = ["YoloOptions", "YoloSource", "boxes_of"]

SPLIT_KEYS = {"train": "train", "val": "val", "test": "test"}


@dataclass(frozen=True)
class YoloOptions(RootOptions):
    """``format: yolo``: the folder holding ``data.yaml`` (or ``classes.txt`` and ``images/``)."""


def _names(value: Any) -> dict[int, str]:
    if isinstance(value, list):
        return {i: str(name) for i, name in enumerate(value)}
    if isinstance(value, dict):
        return {int(k): str(v) for k, v in value.items()}
    raise ManifestError("root", "data.yaml's names must be a list or a mapping {index: name}")


def _folder(root: Path, base: str, given: str) -> Path | None:
    """A split folder of data.yaml, found where Ultralytics or Roboflow would look; None when absent."""
    tail = Path(given)
    candidates = [root / base / tail, root / tail, root / Path(*[p for p in tail.parts if p != ".."])]
    return next((c.resolve() for c in candidates if c.is_dir()), None)


@lru_cache(maxsize=16)
def _layout(root: Path) -> tuple[dict[int, str], list[tuple[str, Path | None, str]]]:
    """Class names, and (split, images folder or None, as data.yaml names it)."""
    config = root / "data.yaml"
    if config.is_file():
        try:
            doc = load_yaml(config.read_text(encoding="utf-8-sig"), str(config))
        except (YamlError, OSError, UnicodeDecodeError) as exc:
            raise ManifestError("root", f"{config} is not readable YAML ({exc})") from None
        if not isinstance(doc, dict) or "names" not in doc:
            raise ManifestError("root", f"{config} names no classes (names:)")
        base = str(doc.get("path") or ".")
        splits = [(split, _folder(root, base, str(doc[key])), str(doc[key]))
                  for key, split in SPLIT_KEYS.items() if isinstance(doc.get(key), str)]
        return _names(doc["names"]), splits
    classes = root / "classes.txt"
    if not classes.is_file():
        raise ManifestError("root", f"{root} has neither data.yaml nor classes.txt")
    names = [line.strip() for line in classes.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    images = root / "images"
    found: list[tuple[str, Path | None, str]] = [(s, images / s, f"images/{s}") for s in SPLIT_KEYS.values()
                                                  if (images / s).is_dir()]
    return {i: n for i, n in enumerate(names)}, found or [("train", images if images.is_dir() else None, "images")]


def _labels_of(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = list(image.parts)
    index = max(i for i, part in enumerate(parts) if part == "images") if "images" in parts else None
    if index is None:
        return image.with_suffix(".txt")
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def boxes_of(text: str, names: Mapping[int, str], width: int, height: int) -> tuple[Box, ...]:
    """The boxes of a labels file in pixel-edge coordinates (a reject naming the line when one is malformed)."""
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        try:
            cls, coords = int(values[0]), [float(v) for v in values[1:]]
        except ValueError:
            raise Reject("roi", f"line {number} is not 'class cx cy w h'") from None
        if cls not in names or len(coords) < 4 or (len(coords) > 4 and len(coords) % 2):
            raise Reject("roi", f"line {number}: class {cls} or its {len(coords)} coordinates are not YOLO's")
        if len(coords) == 4:
            cx, cy, w, h = coords
            x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
        else:  # a polygon: its box
            xs, ys = coords[0::2], coords[1::2]
            x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        boxes.append(Box(x0 * width, y0 * height, x1 * width, y1 * height, names[cls]))
    return tuple(boxes)


class YoloSource(FolderSource):
    options = YoloOptions

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        root: Path = spec.options.root
        _, splits = _layout(root)  # the names are checked now, read again by each worker
        units, problems, used = [], [], {root / "data.yaml", root / "classes.txt"}
        for split, folder, given in splits:
            if folder is None:
                problems.append(Problem(os.path.normpath(root / given),
                                        f"data.yaml's {split} folder {given} is not there", f"{split} folder"))
                continue
            for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES):
                if skipped_kind(image, ()) is not None:
                    continue  # counted below with the rest of the folder
                used.update((image, _labels_of(image)))
                units.append(Unit(spec=spec, image=image, rel=relative(spec, image), split=split,
                                  related=(str(_labels_of(image)),)))
        used = {path.resolve() for path in used}
        for path in sorted(p for p in root.rglob("*") if p.is_file() and p.resolve() not in used):
            kind = skipped_kind(path, ())
            if kind is None and path.suffix == ".txt" and "labels" in path.parts:
                problems.append(Problem(relative(spec, path), "labels file whose image is not there", "labels"))
                continue
            kind = kind or "side file (not read by the format)"
            problems.append(Problem(relative(spec, path), kind, skipped=kind))
        return units, problems

    def records(self, unit: Unit) -> Iterator[Record]:
        pixels = for_display(READERS["image"].read(unit.image)[0])
        labels = _labels_of(unit.image)
        boxes: tuple[Box, ...] = ()
        if labels.is_file():
            names, _ = _layout(unit.spec.options.root)
            boxes = boxes_of(labels.read_text(encoding="utf-8-sig"), names, pixels.shape[1], pixels.shape[0])
        yield Record(unit=dataclasses.replace(unit, boxes=boxes), pixels=pixels, labelmap=None,
                     modality=unit.spec.modality or "")
