"""Each source format's own options: one dataclass per format, checked generically.

A format declares its options class (as ``datasets``' packaged builders declare
``BUILDER_CONFIG_CLASS``); every field says in its metadata how a manifest value
becomes the field's value (``parse``) and whether the key is ``required``. The
manifest loader knows only the keys every source shares; the rest it hands to
:func:`parse_options`, so a new format with new options is one dataclass.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import builder.pipeline.sources.tables as tables
from builder.errors import ManifestError
from builder.options import option
from builder.pipeline.sources.table_spec import TableSpec, table_file, table_spec
from builder.pipeline.template import Template, TemplateError
from builder.pipeline.values import choice, flag, integer

__all__ = [
    "DicomOptions",
    "FileOptions",
    "ImageOptions",
    "NiftiOptions",
    "PixelScreening",
    "Slicing",
    "VolumeOptions",
    "glob_of",
    "parse_options",
    "path_of",
]

PLANES = ("axial", "coronal", "sagittal")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")  # what format volume reads
IMAGE_SUFFIXES = ("_image", "_img", "_0000")  # stripped from an image's stem to pair it (brain1_image, case_0000)
MASK_SUFFIXES = ("_mask", "_seg", "_label", "_labels", "-mask", "-seg", "-label")
Parse = Callable[[Any, Path, str], Any]  # (manifest value, manifest folder, key) -> field value


def glob_of(value: Any, root: Path, key: str) -> str:
    """A glob under the manifest's folder (or absolute)."""
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(key, "must be a glob pattern (a string)")
    if os.path.isabs(value):
        return value
    fixed = value.split("*")[0].split("?")[0].split("[")[0]
    resolved = os.path.normpath(os.path.join(root, fixed))
    if os.path.commonpath([resolved, str(root)]) != str(root) or ".." in Path(value).parts:
        raise ManifestError(key, f"{value!r} climbs out of the manifest's folder; give an absolute path")
    return value


def path_of(value: Any, root: Path, key: str, folder: bool = False) -> Path:
    """A file (or folder) that exists, under the manifest's folder unless absolute."""
    given = Path(glob_of(value, root, key))
    path = given if given.is_absolute() else root / given
    if not (path.is_dir() if folder else path.is_file()):
        raise ManifestError(key, f"{'folder' if folder else 'file'} not found: {path}")
    base = os.path.realpath(root)
    if not folder and not given.is_absolute() and os.path.commonpath([os.path.realpath(path), base]) != base:
        raise ManifestError(key, f"{path} resolves outside the manifest's folder (a symbolic link out); "
                                 "give the file's own path as an absolute path if it is meant")
    return path


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def file_or_glob(value: Any, root: Path, key: str) -> str:
    """A glob, or one file (no glob characters) that must exist: a typo in an annotation's path is an error
    before any work, never a build whose images silently lose their annotations."""
    pattern = glob_of(value, root, key)
    if not is_glob(pattern):
        path_of(pattern, root, key)
    return pattern


def relative_glob(value: Any, root: Path, key: str) -> str:
    """A glob relative to each image's folder: never absolute, never climbing out of it."""
    if not isinstance(value, str) or not value.strip() or os.path.isabs(value) or ".." in Path(value).parts:
        raise ManifestError(key, "must be a glob relative to each image's folder, e.g. segmentations/*.nii.gz")
    return value


def folder_of(value: Any, root: Path, key: str) -> Path:
    return path_of(value, root, key, folder=True)


def strings(value: Any, root: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) for s in value):
        raise ManifestError(key, "must be a list of strings")
    return tuple(value)


def _labels(value: Any, root: Path, key: str) -> dict[int, str]:
    if not isinstance(value, dict):
        raise ManifestError(key, "must be a mapping {value: name}")
    try:
        return {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise ManifestError(key, "keys must be integer label values") from None


def _labels_file(value: Any, root: Path, key: str) -> dict[int, str]:
    path = path_of(value, root, key)
    try:
        return tables.read_labels_file(path)
    except ValueError as exc:
        raise ManifestError(key, str(exc)) from None


def _table(boxes: bool) -> Parse:
    """A side table: a path, or a mapping saying which columns hold what (:mod:`.table_spec`)."""
    def parse(value: Any, root: Path, key: str) -> TableSpec:
        try:
            spec = table_spec(value, path_of(table_file(value), root, key), key)
            found = tables.columns(spec.file, spec.delimiter)
        except tables.TableError as exc:
            raise ManifestError(key, str(exc)) from None
        except ManifestError as exc:
            raise ManifestError(exc.key if exc.key.startswith(key) else f"{key}.{exc.key}", exc.reason) from None
        wanted = [spec.column(role) for role in spec.roles] if boxes else []
        wanted += [spec.key] if spec.key and "{" not in spec.key else []
        wanted += list(spec.findings) + ([spec.column("label")] if spec.label_sep else [])
        missing = [c for c in wanted if c not in found]
        if found and missing:
            raise ManifestError(key, f"{spec.file.name} lacks the column(s) {', '.join(missing)}")
        return spec

    return parse


def nested(cls: type) -> Parse:
    """A mapping checked key by key against a dataclass's fields (``slicing:``, ``roi:``)."""
    def parse(value: Any, root: Path, key: str) -> Any:
        if not isinstance(value, dict):
            names = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ManifestError(key, f"must be a mapping with {names}")
        try:
            return parse_options(cls, value, root)
        except ManifestError as exc:
            raise ManifestError(f"{key}.{exc.key}", exc.reason) from None

    return parse


@dataclass(frozen=True)
class Slicing:
    """How a volume (or a multi-frame file) becomes 2D samples."""

    plane: str = field(default="axial", metadata={"parse": lambda v, r, k: choice(v, k, PLANES)})
    step: int = field(default=1, metadata={"parse": lambda v, r, k: integer(1)(v, k)})
    only_with_roi: bool = field(default=False, metadata={"parse": flag})


def _burned_in(value: Any, root: Path, key: str) -> str:
    return choice(value, key, ("redact", "reject", "flag"))


@dataclass(frozen=True)
class PixelScreening:
    """Burned-in text in the pixels, found by OCR (:mod:`builder.pipeline.burned_in`): every source has these."""

    screen_text: bool = option(False, parse=flag, flag="screen-text",
                               help="Look for burned-in text in every image of the source by OCR (DICOM images the "
                                    "header does not vouch for are always looked at).")
    burned_in: Literal["redact", "reject", "flag"] = option("redact", parse=_burned_in, flag="burned-in",
                            help="Text found in the pixels: redact (black it out, noted in details.burned_in; a "
                                 "reject when it covers too much of the image), reject, or flag (kept, noted).")


@dataclass(frozen=True)
class FileOptions(PixelScreening):
    """Formats whose inputs are the files a glob matches, with masks, labels and side tables."""

    images: str = field(default="", metadata={"parse": glob_of, "required": True})
    masks: str | None = field(default=None, metadata={"parse": file_or_glob})
    mask_suffixes: tuple[str, ...] = field(default=MASK_SUFFIXES, metadata={"parse": strings})
    image_suffixes: tuple[str, ...] = field(default=IMAGE_SUFFIXES, metadata={"parse": strings})
    unmasked: str = field(default="reject", metadata={"parse": lambda v, r, k: choice(v, k, ("reject", "keep"))})
    mask_threshold: int | None = field(default=None, metadata={"parse": lambda v, r, k: integer(0)(v, k)})
    labels: Mapping[int, str] = field(default_factory=dict, metadata={"parse": _labels})
    labels_file: Mapping[int, str] = field(default_factory=dict, metadata={"parse": _labels_file})
    boxes: TableSpec | None = field(default=None, metadata={"parse": _table(boxes=True)})
    metadata: TableSpec | None = field(default=None, metadata={"parse": _table(boxes=False)})

    def check(self) -> None:
        if self.labels and self.labels_file:
            raise ManifestError("labels", "give labels or labels_file, not both")

    @property
    def label_names(self) -> Mapping[int, str]:
        return self.labels or self.labels_file

    def columns(self) -> set[str]:
        """Template fields the metadata table adds."""
        if self.metadata is None:
            return set()
        try:
            found = tables.columns(self.metadata.file, self.metadata.delimiter)
        except tables.TableError as exc:
            raise ManifestError("metadata", str(exc)) from None
        return found | ({"findings"} if self.metadata.findings or self.metadata.label_sep else set())

    def inputs(self) -> str:
        return f"images {self.images!r}"

    @property
    def data_root(self) -> Path | None:
        """The folder a format reads whole (none: the inputs are what ``images`` matches)."""
        return None


@dataclass(frozen=True)
class ImageOptions(FileOptions):
    """``format: image``: PNG, JPEG, TIFF, BMP.

    ``bit_depth``: ``display`` (default) stores a 16-bit image as an 8-bit display image, windowed by its
    percentiles, as vision-language trainers read images (a 16-bit PNG is clipped at 255 by PIL's
    ``convert("RGB")``: most of it white); ``stored`` keeps the file's 16 bits.
    """

    bit_depth: str = field(default="display", metadata={"parse": lambda v, r, k: choice(v, k, ("display",
                                                                                                "stored"))})


def _volume(value: Any, root: Path, key: str) -> str:
    text = str(value).strip().lower()
    if text in ("mean", "all") or (text.isdigit() and not isinstance(value, bool)):
        return text
    raise ManifestError(key, "must be a volume number (0 is the first), mean or all")


@dataclass(frozen=True)
class VolumeOptions(FileOptions):
    """``format: volume`` (``nifti`` is a name for it): NIfTI, NRRD and MetaImage volumes, sliced.

    ``volume``: which volume of a 4D series (fMRI, DWI, ASL) becomes slices: a
    number (default ``0``, the first), ``mean`` (the mean over time) or ``all``.
    ``nan``: a volume with NaN or infinite voxels is a reject (``reject``, the
    default) or has them set to 0 (``zero``, counted in build.json).
    ``structures``: a glob relative to each image's folder (``segmentations/*.nii.gz``):
    one binary volume per structure, named by its file stem, instead of one label map.
    """

    slicing: Slicing = field(default_factory=Slicing, metadata={"parse": nested(Slicing)})
    volume: str = field(default="0", metadata={"parse": _volume})
    nan: str = field(default="reject", metadata={"parse": lambda v, r, k: choice(v, k, ("reject", "zero"))})
    structures: str | None = field(default=None, metadata={"parse": relative_glob})

    def check(self) -> None:
        super().check()
        if self.structures and self.masks:
            raise ManifestError("structures", "give masks (label maps) or structures (one file per structure), "
                                              "not both")


NiftiOptions = VolumeOptions  # ``format: nifti``: the same options


def _modality_map(value: Any, root: Path, key: str) -> dict[str, str]:
    from medtrinity_25m import MODALITIES

    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ManifestError(key, "must map DICOM Modality codes to configs, e.g. {OT: xray, SC: pathology}")
    bad = sorted(str(v) for v in value.values() if str(v).lower() not in MODALITIES)
    if bad:
        raise ManifestError(key, f"{bad[0]!r} is not one of {', '.join(MODALITIES)}")
    return {k.strip().upper(): str(v).lower() for k, v in value.items()}


def _frames(value: Any, root: Path, key: str) -> str:
    text = str(value).strip().lower()
    parts = text.split()
    if text in ("auto", "all", "middle") or (len(parts) == 2 and parts[0] == "every" and parts[1].isdigit()
                                             and int(parts[1]) >= 1):
        return text
    raise ManifestError(key, "must be auto, all, middle or 'every N'")


@dataclass(frozen=True)
class DicomOptions(FileOptions):
    """``format: dicom``.

    ``frames``: which frames of a multi-frame file become rows: ``all``, ``middle``
    or ``every N``; ``auto`` (the default) keeps the middle frame of a cine
    (ultrasound, angiography or endoscopy clips, or any file with a frame time)
    and every frame of other multi-frame files (slices of an enhanced CT or MR).
    ``modality_map`` maps header Modality codes to configs (``{OT: xray}``);
    codes with a built-in config keep it. ``slicing.step`` keeps every n-th frame.
    ``segmentations``: a glob of DICOM SEG objects, each paired with the images
    it references (Referenced SOP Instance UIDs); segments become ROIs named by
    their Segment Label.
    ``series``: ``file`` (default: each file its own samples) or ``volume``: the
    files of a series (SeriesInstanceUID) make one volume, ordered along the slice
    normal and sliced like a NIfTI; structure sets (RTSTRUCT) among the inputs or
    named by ``rtstruct`` (a glob) become its masks.
    """

    slicing: Slicing = field(default_factory=Slicing, metadata={"parse": nested(Slicing)})
    allow_burned_in: bool = option(False, parse=flag, flag="allow-burned-in",
                                   help="Admit DICOM images that may show burned-in text (BurnedInAnnotation=YES, or "
                                        "flagged by deid's rules without a known region to clean).")
    frames: str = field(default="auto", metadata={"parse": _frames})
    segmentations: str | None = field(default=None, metadata={"parse": file_or_glob})  # DICOM SEG files: masks
    series: str = field(default="file", metadata={"parse": lambda v, r, k: choice(v, k, ("file", "volume"))})
    rtstruct: str | None = field(default=None, metadata={"parse": file_or_glob})  # structure sets (series: volume)

    def check(self) -> None:
        super().check()
        if self.rtstruct and self.series != "volume":
            raise ManifestError("rtstruct", "structure sets pair with series read as volumes: add series: volume")
    modality_map: Mapping[str, str] = field(default_factory=dict, metadata={"parse": _modality_map})


@dataclass(frozen=True)
class RootOptions(PixelScreening):
    """Formats that read a dataset's folder as published (``root:``): MedPix, nnU-Net, VOC, YOLO."""

    root: Path = field(default=Path("."), metadata={"parse": folder_of, "required": True})

    def columns(self) -> set[str]:
        return set()

    def inputs(self) -> str:
        return f"root {self.root}"

    @property
    def data_root(self) -> Path | None:
        return self.root

    @property
    def label_names(self) -> Mapping[int, str]:
        return {}


def parse_options(cls: type, raw: Mapping[str, Any], root: Path) -> Any:
    """``cls`` from the manifest keys that name its fields; each field's ``parse`` checks its value."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in raw and raw[f.name] is not None:
            parse: Parse = f.metadata.get("parse", lambda v, r, k: v)
            values[f.name] = parse(raw[f.name], root, f.name)
        elif f.metadata.get("required"):
            raise ManifestError(f.name, "is required")
    options = cls(**values)
    check = getattr(options, "check", None)
    if check is not None:
        check()
    return options


def option_keys(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if "parse" in f.metadata}


def check_template(value: Any, key: str, known: set[str]) -> None:
    if not isinstance(value, str):
        raise ManifestError(key, "must be a string (a constant or a template)")
    try:
        Template(value).check(known)
    except TemplateError as exc:
        raise ManifestError(key, str(exc)) from None
