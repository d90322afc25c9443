"""``format: nnunet``: an nnU-Net v2 raw dataset or a Medical Segmentation Decathlon task, as published.

``root`` is the folder holding ``dataset.json``; the file tells the two apart:

- nnU-Net v2: ``channel_names`` and ``file_ending``; one file per channel,
  ``imagesTr/{case}_{XXXX}{ending}`` (only a trailing ``_`` and four digits are the
  channel: a case id may itself end in ``_1``), labels ``labelsTr/{case}{ending}``,
  ``labels`` as name -> value;
- MSD (v1): ``modality`` and a ``training`` list of ``./`` paths; images are 4D
  with the channel last, ``labels`` as value -> name.

``channel`` picks the channel (its index or name; default the first),
``channels: all`` makes rows of every channel. ``imagesTs`` cases have no label:
rows without ROIs in split ``test``, unless ``include_test: false``. Every file
under ``root`` is accounted for: a row, a reject line, or a counted skip (other
channels, ``dataset.json``, AppleDouble ``._*`` twins, other side files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from builder.errors import ManifestError, Problem
from builder.imaging import RASTER_SUFFIXES
from builder.pipeline.data import Record, Unit
from builder.pipeline.readers import READERS, read_labelmap_2d
from builder.pipeline.readers.display import for_display
from builder.pipeline.sources.base import relative, skipped_kind
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import RootOptions, Slicing, nested
from builder.pipeline.sources.volume import VolumeSource
from builder.pipeline.values import choice, flag, json_file

__all__ = ["Layout", "NnunetOptions", "NnunetSource", "read_layout"]

CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
#: Channel names that say the modality (nnU-Net normalises CT by name; the rest are MR contrasts).
MODALITY_WORDS = {"ct": "ct", "pet": "pet", "pt": "pet", "us": "ultrasound", "ultrasound": "ultrasound"}
MR_WORDS = ("mr", "t1", "t2", "flair", "adc", "dwi", "pd", "swi", "perfusion", "bold", "dce", "hbv", "cbf")


def _channel(value: Any, root: Path, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip():
        raise ManifestError(key, "must be a channel index (0, 1, ...) or a channel name of dataset.json")
    return str(value).strip()


@dataclass(frozen=True)
class NnunetOptions(RootOptions):
    """``format: nnunet``: the dataset folder and which channel(s) become rows."""

    channel: str = field(default="0", metadata={"parse": _channel})
    channels: str = field(default="one", metadata={"parse": lambda v, r, k: choice(v, k, ("one", "all"))})
    include_test: bool = field(default=True, metadata={"parse": flag})
    slicing: Slicing = field(default_factory=lambda: Slicing(only_with_roi=True),
                             metadata={"parse": nested(Slicing)})
    nan: str = field(default="reject", metadata={"parse": lambda v, r, k: choice(v, k, ("reject", "zero"))})
    volume: str = "0"  # which volume of a 4D file: the channel decides (VolumeSource.volume_choice)

    def columns(self) -> set[str]:
        return {"case", "channel_name"}

    @property
    def label_names(self) -> dict[int, str]:
        return dict(read_layout(self.root).labels)


@dataclass(frozen=True)
class Layout:
    """What ``dataset.json`` says: the version, channels, label names, file ending, and the MSD lists."""

    version: str  # "v2" or "msd"
    channels: dict[int, str]
    labels: dict[int, str]
    ending: str
    training: tuple[tuple[str, str | None], ...] = ()  # MSD: (image, label) paths relative to root
    test: tuple[str, ...] = ()


@lru_cache(maxsize=64)
def read_layout(root: Path) -> Layout:
    path = root / "dataset.json"
    doc = json_file(path, "root", "dataset.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("labels"), dict):
        raise ManifestError("root", f"{path} has no labels mapping: not an nnU-Net or MSD dataset.json")
    try:
        if "channel_names" in doc or "file_ending" in doc:
            return Layout("v2", {int(k): str(v) for k, v in doc.get("channel_names", {}).items()},
                          {int(v): str(k) for k, v in doc["labels"].items() if isinstance(v, int) and v > 0},
                          str(doc.get("file_ending", ".nii.gz")))
        training = tuple((_clean(e["image"]), _clean(e.get("label")) if e.get("label") else None)
                         for e in doc.get("training", []))
        return Layout("msd", {int(k): str(v) for k, v in doc.get("modality", {"0": "image"}).items()},
                      {int(k): str(v) for k, v in doc["labels"].items() if int(k) > 0}, ".nii.gz", training,
                      tuple(_clean(p) for p in doc.get("test", [])))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ManifestError("root", f"{path} is malformed ({type(exc).__name__}: {exc})") from None


def _clean(path: str) -> str:
    return path[2:] if path.startswith("./") else path


def modality_of(name: str) -> str:
    """The config of a channel name ("CT", "FLAIR", "T2w", "ADC"): empty when the name does not say."""
    word = name.strip().lower()
    if word in MODALITY_WORDS:
        return MODALITY_WORDS[word]
    return "mri" if word.startswith(MR_WORDS) or "mri" in word else ""


def _chosen(spec: SourceSpec, layout: Layout) -> list[int]:
    options: NnunetOptions = spec.options
    if options.channels == "all":
        return sorted(layout.channels) or [0]
    given = options.channel
    by_name = {name.lower(): index for index, name in layout.channels.items()}
    index = int(given) if given.isdigit() else by_name.get(given.lower())
    if index is None or (layout.channels and index not in layout.channels):
        known = ", ".join(f"{i} ({n})" for i, n in sorted(layout.channels.items()))
        raise ManifestError("channel", f"{given!r} is not a channel of {options.root / 'dataset.json'} ({known})")
    return [index]


@dataclass
class _Listing:
    spec: SourceSpec
    layout: Layout
    chosen: list[int]
    units: list[Unit] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    used: set[Path] = field(default_factory=set)

    def skip(self, path: Path, kind: str) -> None:
        self.used.add(path)
        self.problems.append(Problem(relative(self.spec, path), kind, skipped=kind))

    def problem(self, path: Path, reason: str) -> None:
        self.used.add(path)
        self.problems.append(Problem(relative(self.spec, path), reason, "nnunet"))

    def unit(self, image: Path, label: Path | None, channel: int, split: str, volume: bool) -> None:
        name = self.layout.channels.get(channel, str(channel))
        case = CHANNEL.sub(r"\g<case>", image.name[: -len(self.layout.ending)]) if not volume else \
            image.name[: -len(self.layout.ending)]
        rel = relative(self.spec, image) + (f"#channel{channel}" if volume and len(self.chosen) > 1 else "")
        self.used.update(p for p in (image, label) if p is not None)
        self.units.append(Unit(spec=self.spec, image=image, rel=rel, split=split if split == "test" else
                               self.spec.split, mask=label,
                               meta={"case": case, "channel": str(channel), "channel_name": name,
                                     "modality": modality_of(name), **({"volume": str(channel)} if volume else {})}))


def _v2(listing: _Listing, root: Path, include_test: bool) -> None:
    ending = listing.layout.ending
    for images, labels, split in (("imagesTr", "labelsTr", "train"), ("imagesTs", "labelsTs", "test")):
        cases: dict[str, dict[int, Path]] = {}
        for path in sorted((root / images).glob(f"*{ending}")):
            match = CHANNEL.match(path.name[: -len(ending)])
            if skipped_kind(path, ()) is None and match is None:
                listing.problem(path, f"not named CASE_XXXX{ending} (a case id, _, a four-digit channel)")
            elif match is not None and not path.name.startswith("._"):
                cases.setdefault(match["case"], {})[int(match["channel"])] = path
        for case, files in sorted(cases.items()):
            label = root / labels / f"{case}{ending}"
            if split == "test" and not include_test:
                for path in files.values():
                    listing.skip(path, "test case (include_test: false)")
                continue
            for channel, path in sorted(files.items()):
                if channel in listing.chosen:
                    listing.unit(path, label if label.is_file() else None, channel, split, volume=False)
                else:
                    listing.skip(path, "another channel (channel:)")
            for channel in listing.chosen:
                if channel not in files:
                    listing.problems.append(Problem(f"{images}/{case}", f"case {case} has no channel {channel:04d} "
                                                    "file", "nnunet"))


def _msd(listing: _Listing, root: Path, include_test: bool) -> None:
    layout = listing.layout
    entries = [(image, label, "train") for image, label in layout.training]
    entries += [(image, None, "test") for image in layout.test]
    for image, label, split in entries:
        path, mask = root / image, (root / label if label else None)
        if not path.is_file():
            listing.problems.append(Problem(image, f"dataset.json lists {image}, which is not there", "nnunet"))
            continue
        if split == "test" and not include_test:
            listing.skip(path, "test case (include_test: false)")
            continue
        for channel in listing.chosen:
            listing.unit(path, mask if mask is not None and mask.is_file() else None, channel, split, volume=True)


class NnunetSource(VolumeSource):
    """nnU-Net v2 and MSD datasets: units from ``dataset.json``'s layout, sliced as volumes."""

    options = NnunetOptions
    modality_from_data = True
    fields = frozenset({"case", "channel_name"})

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        options: NnunetOptions = spec.options
        layout = read_layout(options.root)
        listing = _Listing(spec, layout, _chosen(spec, layout))
        (_v2 if layout.version == "v2" else _msd)(listing, options.root, options.include_test)
        labelled = {unit.mask for unit in listing.units if unit.mask is not None}
        for path in sorted(p for p in options.root.rglob("*") if p.is_file() and p not in listing.used):
            kind = skipped_kind(path, ())
            if path.name == "dataset.json":
                listing.skip(path, "dataset description (dataset.json)")
            elif kind is not None:
                listing.skip(path, kind)
            elif path.parent.name.startswith("labels") and path not in labelled:
                listing.problem(path, "label pairs with no image of dataset.json's layout")
            elif path.parent.name.startswith("images"):
                listing.problem(path, "image not in dataset.json's layout (not listed, or not a case's channel)")
            else:
                listing.skip(path, "side file (not read by the format)")
        return listing.units, listing.problems

    def records(self, unit: Unit) -> Iterator[Record]:
        if not unit.image.name.lower().endswith(RASTER_SUFFIXES):
            yield from super().records(unit)
            return
        # a 2D dataset (file_ending .png, .tif): each case is one image, its label map the same size
        pixels = for_display(READERS["image"].read(unit.image)[0])
        labels = read_labelmap_2d(unit.mask, pixels.shape[:2]) if unit.mask is not None else None
        yield Record(unit=unit, pixels=pixels, labelmap=labels, modality=unit.spec.modality or self.modality(unit),
                     label_names=self.label_names(unit))

    def volume_choice(self, unit: Unit) -> str:
        return str(unit.meta.get("volume", "0"))

    def modality(self, unit: Unit) -> str:
        return str(unit.meta.get("modality") or "")

    def label_names(self, unit: Unit) -> dict[int, str] | None:
        return dict(read_layout(unit.spec.options.root).labels) or None

    def only_with_roi(self, unit: Unit) -> bool:
        """A labelled case gives the slices holding a label; a test case without one gives every slice."""
        return bool(unit.spec.options.slicing.only_with_roi) and unit.mask is not None
