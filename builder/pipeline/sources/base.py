"""Work units and records: what a source adapter takes and gives.

A :class:`Unit` is one input file (with its paired mask, metadata row and
boxes); it is small and picklable so worker processes can take it. An adapter
turns a unit into :class:`Record` objects, one per 2D sample (a raster image, a
DICOM frame, a volume slice), or raises :class:`builder.errors.Reject`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol

import builder.pipeline.sources.tables as tables
from builder.errors import ManifestError, Problem, Reject
from builder.pipeline.data import Box, Record, Sphere, Unit
from builder.pipeline.sources.manifest import SourceSpec
from builder.pipeline.sources.options import is_glob
from builder.pipeline.sources.table_spec import path_keys


@dataclass(frozen=True)
class Rule:
    """A named curation rule: ``check(unit)`` gives the reason to flag it, or None."""

    name: str
    check: Callable[[Unit], str | None]


class SourceAdapter(Protocol):
    """A manifest ``format``: which keys it needs, its units, its records."""

    @property
    def options(self) -> type:
        """The format's options dataclass (:mod:`builder.pipeline.sources.options`)."""
        ...

    @property
    def modality_from_data(self) -> bool:
        """True if ``modality`` may be left out."""
        ...

    @property
    def defaults(self) -> Mapping[str, Any]:
        """Manifest defaults of the format (data, not branches)."""
        ...

    @property
    def fields(self) -> frozenset[str]:
        """Template fields its units provide."""
        ...

    @property
    def rules(self) -> tuple[Rule, ...]:
        """Curation rules run before a unit is read."""
        ...

    @property
    def public_names(self) -> bool:
        """True if the inputs are a public release whose names may be published."""
        ...

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]: ...

    def records(self, unit: Unit) -> Iterator[Record]: ...

    def terms(self, spec: SourceSpec) -> dict[str, str]:
        """A published release's own licence and gating terms (``license``, ``terms``); {} for most formats."""
        ...

    def unmatched(self, spec: SourceSpec, seen: Callable[[], set[str]], units: Iterable[Unit]) -> list[Problem]:
        """Inputs no unit accounted for, asked once every group is done (``seen()``: the row ids written or
        rejected); [] for most formats."""
        ...


class AdapterHooks:
    """The optional hooks of :class:`SourceAdapter`, as most formats answer them: an adapter overrides its own."""

    public_names = False  # True for a published release whose file names are public (kept in outputs)

    def terms(self, spec: SourceSpec) -> dict[str, str]:
        return {}

    def unmatched(self, spec: SourceSpec, seen: Callable[[], set[str]], units: Iterable[Unit]) -> list[Problem]:
        return []


class FolderSource(AdapterHooks):
    """Base of the formats that list a published dataset's folder themselves (COCO, VOC, YOLO)."""

    modality_from_data = False
    defaults: Mapping[str, Any] = {}
    fields: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = ()


class FileSource(AdapterHooks):
    """Base of the formats whose inputs are the files an ``images`` glob matches."""

    modality_from_data = False
    suffixes: tuple[str, ...] = ()  # the files the format reads; others a glob matches are counted side files
    defaults: Mapping[str, Any] = {}
    fields: frozenset[str] = frozenset()
    rules: tuple[Rule, ...] = ()

    def units(self, spec: SourceSpec) -> tuple[list[Unit], list[Problem]]:
        return enumerate_units(spec, self.suffixes)


def expand(spec: SourceSpec, pattern: str) -> list[Path]:
    """The files a glob of the source matches, sorted; a broken symlink is a file too (it ends as a reject).

    A glob's ``*`` skips hidden files; the AppleDouble twin ``._<name>`` of a file it matches (macOS's metadata,
    shipped in the MSD tars) is listed too, to be counted as skipped rather than vanish."""
    full = pattern if os.path.isabs(pattern) else os.path.join(spec.root, pattern)
    found = {Path(p) for p in glob.glob(full, recursive=True) if os.path.isfile(p) or os.path.islink(p)}
    return sorted(found | _appledouble_twins(found))


def _appledouble_twins(found: set[Path]) -> set[Path]:
    """The ``._<name>`` files beside ``found`` files: one listing of each folder, not a look-up per file."""
    twins: set[Path] = set()
    for folder in {path.parent for path in found}:
        try:
            names = [entry.name for entry in os.scandir(folder) if entry.name.startswith("._")]
        except OSError:
            continue
        twins |= {folder / name for name in names if folder / name[2:] in found}
    return twins


def relative(spec: SourceSpec, path: Path) -> str:
    """``source_file``: relative to the manifest's folder, else to the source's root."""
    for base in (spec.root, spec.data_root):
        if base is not None and path.is_relative_to(base):
            return path.relative_to(base).as_posix()
    return path.as_posix()


def mask_key(path: Path, suffixes: tuple[str, ...]) -> str:
    """The image stem a mask pairs with: its stem less one of ``suffixes``."""
    stem = tables.file_stem(path)
    for suffix in suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


@dataclass
class Pairing:
    """Masks paired with images; masks that pair with nothing; images whose pairing is ambiguous (why)."""

    masks: dict[Path, Path] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    ambiguous: dict[Path, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # image -> (why, files named)


def mask_files(spec: SourceSpec) -> list[Path]:
    """The files the source's ``masks`` names: never dataset images, even where the images glob matches them.

    A ``masks`` glob that matches nothing is an error, as an ``images`` glob is: the annotations were meant.
    """
    pattern = getattr(spec.options, "masks", None)
    if not pattern:
        return []
    found = expand(spec, pattern)
    if not found:
        raise ManifestError("masks", f"{pattern!r} of source {spec.name!r} matches no file")
    return found


def pair_masks(spec: SourceSpec, images: list[Path], masks: list[Path]) -> Pairing:
    """Pair masks with images.

    The rule: when ``masks`` names one file (no glob characters), that file is
    the mask of every image (an atlas on the images' grid). Otherwise a mask
    pairs with the image whose file stem equals the mask's stem, less one of
    ``mask_suffixes`` (``liver_01_seg.nii.gz`` -> ``liver_01``). A mask that
    pairs with no image is reported; a mask whose stem two images share
    (``b.png``, ``b.jpg``) pairs with neither, and both images are rejected with
    a reason naming the three files: an annotation is never dropped silently.
    """
    pairing = Pairing()
    if not masks:
        return pairing
    if not is_glob(spec.options.masks):
        pairing.masks = {image: masks[0] for image in images}
        return pairing
    by_stem: dict[str, list[Path]] = {}
    for image in images:  # an image is found by its stem, and by its stem less an image suffix (brain1_image)
        stem = tables.file_stem(image)
        keys = dict.fromkeys([stem, mask_key(image, spec.options.image_suffixes)])
        for key in keys:
            by_stem.setdefault(key, []).append(image)
    for mask in masks:
        found = by_stem.get(mask_key(mask, spec.options.mask_suffixes)) or by_stem.get(tables.file_stem(mask))
        if not found:
            pairing.problems.append(Problem(relative(spec, mask), "mask pairs with no image", "masks"))
        elif len(found) > 1:
            named = tuple(relative(spec, path) for path in (*found, mask))
            for image in found:
                pairing.ambiguous[image] = (f"ambiguous pairing: mask {named[-1]} pairs with both "
                                            f"{' and '.join(named[:-1])} (their file stems are the same); rename "
                                            "one of them", named)
        elif found[0] in pairing.masks:
            pairing.problems.append(Problem(relative(spec, mask), f"second mask for {relative(spec, found[0])}",
                                            "masks"))
        else:
            pairing.masks[found[0]] = mask
    return pairing


DATA_SUFFIXES = (".raw", ".zraw", ".raw.gz", ".raw.bz2", ".img", ".img.gz")  # a detached header's voxel data
HEADER_SUFFIXES = (".mhd", ".nhdr", ".hdr")


def skipped_kind(path: Path, suffixes: tuple[str, ...]) -> str | None:
    """Why a listed file is passed over on purpose (counted, not a reject), or None: macOS's AppleDouble ``._*``
    files (MSD's tars ship them), a header's detached voxel data, a file the format does not read (``suffixes``)."""
    name = path.name.lower()
    if name.startswith("._"):
        return "AppleDouble metadata (._*)"
    if name == "dicomdir":  # a DICOM medium's index of its files: no image
        return "DICOM media index (DICOMDIR)"
    data = next((s for s in DATA_SUFFIXES if name.endswith(s)), None)
    if data and any((path.parent / (path.name[: -len(data)] + header)).exists() for header in HEADER_SUFFIXES):
        return "voxel data of a detached header"
    if suffixes and not name.endswith(suffixes):
        return "side file (not read by the format)"
    return None


def _listed(spec: SourceSpec, paths: list[Path], suffixes: tuple[str, ...],
            problems: list[Problem]) -> list[Path]:
    """``paths`` less the files passed over on purpose, each counted in ``problems`` as skipped."""
    kept = []
    for path in paths:
        kind = skipped_kind(path, suffixes)
        if kind is None:
            kept.append(path)
        else:
            problems.append(Problem(relative(spec, path), kind, skipped=kind))
    return kept


def structure_files(spec: SourceSpec, image: Path) -> tuple[Path, ...]:
    """The binary structure masks of an image (``structures:``, a glob relative to the image's folder), sorted."""
    pattern = getattr(spec.options, "structures", None)
    if not pattern:
        return ()
    found = glob.glob(os.path.join(glob.escape(str(image.parent)), pattern), recursive=True)
    return tuple(sorted(Path(p) for p in found if Path(p) != image and not Path(p).name.startswith("._")))


def enumerate_units(spec: SourceSpec, suffixes: tuple[str, ...] = ()) -> tuple[list[Unit], list[Problem]]:
    """Every input file of a source as a unit, and the side-table problems and counted skips."""
    problems: list[Problem] = []
    mask_paths = mask_files(spec)
    masks = _listed(spec, mask_paths, (), problems)
    taken = set(mask_paths)
    listed = [image for image in expand(spec, spec.options.images) if image not in taken]
    structures = {image: structure_files(spec, image) for image in listed}
    taken |= {path for paths in structures.values() for path in paths}
    images = _listed(spec, [image for image in listed if image not in taken], suffixes, problems)
    pairing = pair_masks(spec, images, masks)
    problems += pairing.problems
    tabled = {"metadata": tables.Table(), "boxes": tables.Table()}
    for name, read in (("metadata", tables.read_metadata), ("boxes", tables.read_boxes)):
        spec_of_table = getattr(spec.options, name)
        if not spec_of_table:
            continue
        try:
            tabled[name] = read(spec_of_table)
        except tables.TableError as exc:
            problems.append(Problem(str(exc).split(":")[0], str(exc), "side table"))
            continue
        problems += tabled[name].problems
    keys = {name: {image: table.key(image) for image in images} for name, table in tabled.items()}
    for name, table in tabled.items():
        problems += _unmatched(spec, name, table, set(keys[name].values()))
    broken = {p.stem: p for p in problems if p.stem}
    units = []
    unmasked = "no mask pairs with it (set unmasked: keep to build such images without ROIs)" \
        if masks and is_glob(spec.options.masks) and spec.options.unmasked == "reject" else None
    for image in images:
        stem = tables.file_stem(image)
        drawn = tabled["boxes"].rows.get(keys["boxes"][image] or "", ())
        ambiguous, named = pairing.ambiguous.get(image, (None, ()))
        if ambiguous is None and image not in pairing.masks:
            ambiguous = unmasked
        units.append(Unit(
            spec=spec,
            image=image,
            rel=relative(spec, image),
            split=spec.split,
            mask=pairing.masks.get(image),
            meta=tabled["metadata"].rows.get(keys["metadata"][image] or "", {}),
            boxes=tuple(b for b in drawn if isinstance(b, Box)),
            spheres=tuple(s for s in drawn if isinstance(s, Sphere)),
            public=relative(spec, image) if spec.publish_paths else None,
            problem=ambiguous or _row_problem(next((broken[k] for k in (stem, *path_keys(image)) if k in broken),
                                                   None)),
            related=named,
            structures=structures.get(image, ()),
        ))
    return units, problems


def _unmatched(spec: SourceSpec, name: str, table: tables.Table, matched: set[str | None]) -> list[Problem]:
    """One line for the rows of a side table that name no image of the source (images not supplied): counted and
    reported once, never fatal, the keys kept in the local line only."""
    missing = sorted(set(table.rows) - matched, key=lambda key: table.lines[key])
    if not missing:
        return []
    lines = ", ".join(str(table.lines[key]) for key in missing[:20]) + (" ..." if len(missing) > 20 else "")
    return [Problem(f"{getattr(spec.options, name)}: lines {lines} ({', '.join(missing[:20])})",
                    f"{len(missing)} image(s) named by the {name} table are not among the source's images "
                    f"(lines {lines})", name)]


def _row_problem(problem: Problem | None) -> str | None:
    return None if problem is None else f"its {problem.public or 'side-table'} row is unusable: {problem.reason}"


def check_inside(unit: Unit) -> None:
    """Refuse a file that resolves outside its source's folder (a symlink out).

    The folder is the source's ``root`` if it has one, else the manifest's
    folder; a source whose ``images`` glob is an absolute path is not checked.
    """
    spec = unit.spec
    if spec.data_root is None and os.path.isabs(getattr(spec.options, "images", "/")):  # or a remote release
        return
    base = os.path.realpath(spec.data_root or spec.root)
    for role, path in (("", unit.image), ("its mask ", unit.mask)):
        if path is not None and os.path.commonpath([os.path.realpath(path), base]) != base:
            raise Reject("path", f"{role}{path} resolves outside the source's folder {base}")
