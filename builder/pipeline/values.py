"""Manifest values: each parser turns a manifest value into a field's value or raises a ManifestError naming the
key. The bottom of the formats' and the proposers' options (a field's ``parse``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from builder.errors import ManifestError

__all__ = ["choice", "flag", "fraction", "integer", "json_file", "text"]


def flag(value: Any, root: Path, key: str) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(key, "must be true or false")
    return value


def integer(low: int) -> Callable[[Any, str], int]:
    def check(value: Any, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ManifestError(key, f"must be an integer of at least {low}")
        return value

    return check


def choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ManifestError(key, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def fraction(value: Any, root: Path, key: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ManifestError(key, "must be a number between 0 and 1")
    return float(value)


def text(value: Any, root: Path, key: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(key, "must be a string")
    return value


def json_file(path: Path, key: str, what: str) -> Any:
    """The JSON a manifest key names (a BOM allowed), or a ManifestError saying it is not a readable ``what``."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(key, f"{path} is not a readable {what} ({exc})") from None
