"""Errors of the pipeline, and the stages that refuse an input.

A :class:`Reject` is data, not a crash: it names the :class:`Stage` that refused
an input and why, and ends as one line of ``rejects.jsonl``. A
:class:`ManifestError` stops a build before any work. A :class:`Problem` is a
file the read side or a listing found wrong (local path, published name).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Literal

__all__ = ["ManifestError", "Problem", "Reject", "Stage", "StageName", "install_hint", "raised_by_reader_library"]


class Stage(str, Enum):
    """Where an input was refused; the value is what reject lines and build.json say."""

    LISTING = "listing"  # known unusable while listing inputs (a broken metadata row, a blank split key)
    PAIRING = "pairing"  # side tables and masks that pair with nothing
    CURATION = "curation"  # a named curation rule or a person's decision
    PATH = "path"  # a file that resolves outside its source's folder
    PRIVACY = "privacy"  # burned-in text that cannot be cleaned
    READ = "read"  # a file its reader cannot turn into pixels
    SIZE = "size"  # an image too small to be a sample
    MODALITY = "modality"  # no config for the file's modality
    MASK = "mask"  # a mask that does not fit its image
    ROI = "roi"  # a label map or box that cannot become ROIs; a proposer's failure
    CAPTION = "caption"  # a caption rule that cannot render
    DESCRIBE = "describe"  # a describer that gave no usable text
    TEXT = "text"  # a model's text that still contradicts what was measured after its retry (--on-contradiction)
    VALIDATE = "validate"  # a judge that gave no usable score
    TIMEOUT = "timeout"  # the unit time limit
    WORKER = "worker"  # the worker process died (twice) on this input
    INTERNAL = "internal"  # a bug of the pipeline, not bad input: the build exits non-zero

    def __str__(self) -> str:
        return self.value


#: A stage by its name, as call sites write it (``Reject("read", ...)``): mypy checks the spelling.
StageName = Literal["listing", "pairing", "curation", "path", "privacy", "read", "size", "modality", "mask", "roi",
                    "caption", "describe", "text", "validate", "timeout", "worker", "internal"]


class ManifestError(ValueError):
    """The sources manifest is invalid; the message names the key."""

    def __init__(self, key: str, reason: str, path: str = "") -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}manifest key '{key}': {reason}")
        self.key = key
        self.reason = reason
        self.path = path

    def __reduce__(self) -> tuple:
        return (ManifestError, (self.key, self.reason, self.path))


class Reject(Exception):
    """An input that cannot become a sample: which stage refused it and why."""

    def __init__(self, stage: Stage | StageName, reason: str, rule: str | None = None,
                 skipped: str | None = None) -> None:
        self.stage = Stage(stage).value  # a typed stage; its plain value travels and is written
        super().__init__(f"{self.stage}: {reason}")
        self.reason = reason
        self.rule = rule  # the named curation rule that flagged the input, if any
        self.skipped = skipped  # not a fault: a file passed over on purpose, counted by this kind (no reject line)

    def __reduce__(self) -> tuple:  # crosses process boundaries with its fields
        return (Reject, (self.stage, self.reason, self.rule, self.skipped))


@dataclass(frozen=True)
class Problem:
    """A file that is wrong, and why.

    ``file`` is local (real paths); ``public`` names it in published outputs
    (``metadata:12``); ``stem`` is the image a side-table row belongs to, when
    known, whose unit is then rejected rather than built without its row. A problem with ``skipped`` is no
    problem: a file passed over on purpose (``._*`` AppleDouble files, a header's detached voxel data, a side
    file), counted by kind in build.json instead of a reject line, so that every file is accounted for.
    """

    file: str
    reason: str
    public: str = ""
    stem: str | None = None
    skipped: str | None = None  # not wrong: a file a listing passes over on purpose, counted by this kind

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


def install_hint(extra: str) -> str:
    """How to install an optional part, as the README says it (from a clone) and from an index."""
    return f"pip install -e '.[{extra}]' in a clone of medtrinity-25m (or pip install 'medtrinity-25m[{extra}]')"


#: Libraries that decode inputs: an exception raised inside one of them while it reads a file is that file's fault.
READER_LIBRARIES = frozenset({"pydicom", "nibabel", "PIL", "highdicom", "numpy", "scipy", "imagecodecs", "pylibjpeg",
                              "openjpeg", "libjpeg", "rle", "zstandard", "gzip", "zlib", "isal", "cv2", "SimpleITK",
                              "nrrd", "deid", "tarfile", "struct", "xml", "json", "csv", "pyarrow"})


def raised_by_reader_library(exc: BaseException) -> bool:
    """True when the innermost frame of ``exc`` is a decoding library's (pydicom's palette lookup on a file without
    its table, an unsupported transfer syntax): bad input. An exception raised in this project's own code is a bug,
    never hidden among bad inputs."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", ""))
    return module.split(".")[0] in READER_LIBRARIES
