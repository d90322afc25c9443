"""How a side table is read: a path, or a mapping saying which columns hold what (``boxes:``, ``metadata:``).

    boxes:
      file: stage_2_train_labels.csv
      key: patientId                 # the column naming the image (default: image, file, filename, stem, id)
      match: stem                    # join on the file stem (default), the relative path (CheXpert's Path) or
                                     # the image's folder (TotalSegmentator's subject: s0001/ct.nii.gz)
      columns: {x: x, y: y, w: width, h: height, label: class}
      box: xywh                      # xyxy (default) | xywh | cxcywh_norm | voc (1-based inclusive)
      units: pixels                  # pixels | world_mm (a volume's x, y, z centre and diameter: LUNA16)
      label: Lung Opacity            # the label of every box, where no column holds one
      delimiter: ","                 # ";" for TotalSegmentator's meta.csv
    metadata:
      file: train.csv
      key: Path
      match: path
      findings: [Atelectasis, Cardiomegaly, ...]   # one column per finding: 1 positive, -1 uncertain, 0 / blank not
      label_sep: "|"                               # or one column of findings joined (columns: {label: ...})

A row whose coordinate cells are all blank is a negative: its image is known to hold no box. Column names written
``name [a,b,c]`` over several columns (NIH's ``Bbox [x,y,w,h]``) are the names ``a``, ``b``, ``c``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from builder.errors import ManifestError

__all__ = ["BOX_FORMATS", "ROLES", "TableSpec", "table_spec"]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh_norm", "voc")
#: The coordinate roles of each box format (the ``columns`` keys), and of world-millimetre spheres.
ROLES = {"xyxy": ("x_min", "y_min", "x_max", "y_max"), "voc": ("x_min", "y_min", "x_max", "y_max"),
         "xywh": ("x", "y", "w", "h"), "cxcywh_norm": ("x", "y", "w", "h"), "world_mm": ("x", "y", "z", "diameter")}
KEYS = ("file", "key", "match", "columns", "box", "units", "label", "label_sep", "delimiter", "findings")


@dataclass(frozen=True)
class TableSpec:
    """A side table and how to read it (see the module's example)."""

    file: Path
    key: str | None = None
    match: str = "stem"
    columns: Mapping[str, str] = field(default_factory=dict)
    box: str = "xyxy"
    units: str = "pixels"
    label: str | None = None
    label_sep: str | None = None
    delimiter: str = ","
    findings: tuple[str, ...] = ()

    def column(self, role: str) -> str:
        """The column holding ``role`` (``x``, ``label``, ...): the mapping's, else the role's own name."""
        return self.columns.get(role, role)

    @property
    def roles(self) -> tuple[str, ...]:
        return ROLES["world_mm" if self.units == "world_mm" else self.box]

    def __str__(self) -> str:
        return str(self.file)


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ManifestError(key, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or not str(value):
        raise ManifestError(key, "must be a string")
    return str(value)


def table_spec(value: Any, path: Path, key: str) -> TableSpec:
    """A table mapping checked key by key (``path``: its ``file``, already found); a plain path gives defaults."""
    if not isinstance(value, Mapping):
        return TableSpec(path)
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise ManifestError(f"{key}.{unknown[0]}", f"is not a table key (known: {', '.join(KEYS)})")
    columns = value.get("columns") or {}
    if not isinstance(columns, Mapping) or not all(isinstance(v, str) for v in columns.values()):
        raise ManifestError(f"{key}.columns", "must map roles (x, y, w, h, label, ...) to column names")
    findings = value.get("findings") or ()
    if not isinstance(findings, (list, tuple)) or not all(isinstance(f, str) for f in findings):
        raise ManifestError(f"{key}.findings", "must be a list of column names")
    delimiter = _text(value.get("delimiter", ","), f"{key}.delimiter")
    if len(delimiter.replace("\\t", "\t")) != 1:
        raise ManifestError(f"{key}.delimiter", "must be one character")
    return TableSpec(
        file=path,
        key=_text(value["key"], f"{key}.key") if value.get("key") is not None else None,
        match=_choice(value.get("match", "stem"), f"{key}.match", ("stem", "path", "folder")),
        columns={str(k): str(v) for k, v in columns.items()},
        box=_choice(value.get("box", "xyxy"), f"{key}.box", BOX_FORMATS),
        units=_choice(value.get("units", "pixels"), f"{key}.units", ("pixels", "world_mm")),
        label=_text(value["label"], f"{key}.label") if value.get("label") is not None else None,
        label_sep=_text(value["label_sep"], f"{key}.label_sep") if value.get("label_sep") is not None else None,
        delimiter=delimiter.replace("\\t", "\t"),
        findings=tuple(findings),
    )


def table_file(value: Any) -> Any:
    """The ``file`` of a table mapping, or the value itself (a path)."""
    if isinstance(value, Mapping):
        if not value.get("file"):
            raise ManifestError("file", "a table mapping needs its file")
        return value["file"]
    return value


def relative_key(value: str) -> str:
    """A path-valued key as forward-slash parts, without ``./`` or leading slashes."""
    return "/".join(part for part in value.replace("\\", "/").split("/") if part not in ("", "."))


def _rejoined(header: list[str]) -> list[str]:
    """Header cells with an unquoted ``name [a,b]`` put back together (the CSV reader split it at its commas)."""
    out: list[str] = []
    for cell in header:
        if out and "[" in out[-1] and "]" not in out[-1]:
            out[-1] += "," + cell
        else:
            out.append(cell)
    return out


def expanded_header(header: list[str], width: int) -> list[str]:
    """Column names, a ``name [a,b,c]`` cell spread over the columns it spans (the blank cells after it, and the
    cells by which the rows are wider than the header): NIH's ``Bbox [x,y,w,h],,,`` gives x, y, w, h."""
    cells = _rejoined(header)
    extra = max(0, width - len(cells))
    out: list[str] = []
    index = 0
    while index < len(cells):
        cell = cells[index]
        inner = cell[cell.find("[") + 1: cell.rfind("]")] if "[" in cell and cell.rstrip().endswith("]") else ""
        parts = [p.strip() for p in inner.split(",") if p.strip()]
        blanks = 0
        while index + 1 + blanks < len(cells) and not cells[index + 1 + blanks].strip() and blanks < len(parts) - 1:
            blanks += 1
        if len(parts) > 1 and blanks + extra >= len(parts) - 1:
            out += parts
            extra -= len(parts) - 1 - blanks
            index += 1 + blanks
        else:
            out.append(cell)
            index += 1
    return out


def path_keys(path: Path) -> list[str]:
    """The keys a path-matched table may give for a file: its path's tails, longest first."""
    parts = Path(os.path.normpath(path)).parts
    return ["/".join(parts[i:]) for i in range(len(parts))]
