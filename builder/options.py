"""Options: every setting is declared once, as a field of its extension's dataclass.

A field made with :func:`option` carries its default, its help, its command-line
flag and whether it takes part in the resume key (after transformers'
``HfArgumentParser`` fields). Everything else is derived from the fields:

- the command line's flags (:mod:`builder.cli.flags`): one per field, named after
  it unless ``flag`` says otherwise (``flag=False``: not on the command line);
- ``build.json``'s ``options``: :func:`leaves`, every leaf, nothing listed by hand;
- the resume key: :func:`resume_key`, every leaf marked ``resume``;
- a field whose value is an options dataclass is nested (its fields are leaves
  too); a field with ``registry`` holds the options of the registry entry that
  its sibling ``chosen_by`` names (an engine's, a describer's).

Plain data: this module imports nothing of the pipeline.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

__all__ = [
    "NoOptions",
    "differences",
    "field_types",
    "jsonable",
    "leaves",
    "option",
    "option_fields",
    "resume_key",
]


@dataclass(frozen=True)
class NoOptions:
    """The options of an entry that has none."""


def option(default: Any = MISSING, *, help: str, flag: str | bool | None = None, resume: bool = False,
           default_factory: Callable[[], Any] | Any = MISSING, choices: Callable[[], Iterable[str]] | None = None,
           registry: Callable[[], Any] | None = None, chosen_by: str | None = None,
           cli: Mapping[str, Any] | None = None, public: Callable[[Any], Any] | None = None, **metadata: Any) -> Any:
    """A dataclass field that is a setting.

    ``flag``: the command-line flag without ``--`` (default: the field's name with dashes; ``False``: none).
    ``resume``: a resumed build must have the same value (it changes the rows). ``choices``: the allowed values,
    read when the command line needs them (a registry's names). ``registry`` + ``chosen_by``: the field holds the
    options of the entry that the field ``chosen_by`` names. ``cli``: more of click's option settings (``type``,
    ``default``, ``convert`` from the flag's value to the field's, ``envvar``, ...). Other keywords stay in the
    field's metadata (a manifest key's ``parse``). ``public``: what build.json shows of a value that is not to be
    published as it is (a secret, a local path): the resume key keeps the value itself.
    """
    meta = {"help": help, "flag": flag, "resume": resume, "choices": choices, "registry": registry,
            "chosen_by": chosen_by, "cli": dict(cli or {}), "public": public, **metadata}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@lru_cache(maxsize=256)
def field_types(cls: type) -> dict[str, Any]:
    """The fields' types, resolved (modules use ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def option_fields(cls: type) -> Iterator[dataclasses.Field[Any]]:
    """The fields of ``cls`` that are settings (made with :func:`option`) or nested options."""
    for f in fields(cls):
        if "help" in f.metadata or _nested(cls, f):
            yield f


def _nested(cls: type, f: dataclasses.Field[Any]) -> bool:
    kind = field_types(cls).get(f.name)
    return isinstance(kind, type) and is_dataclass(kind)


def jsonable(value: Any) -> Any:
    """A leaf's value as JSON: paths as text, tuples as lists, mappings as objects, enums as their value."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def _walk(obj: Any, prefix: str, only_resume: bool) -> Iterator[tuple[str, Any]]:
    for f in option_fields(type(obj)):
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if is_dataclass(value) and not isinstance(value, type):
            yield from _walk(value, f"{name}.", only_resume)
        elif only_resume:
            if f.metadata.get("resume"):
                yield name, jsonable(value)
        else:
            shown = f.metadata.get("public")
            yield name, jsonable(shown(value) if shown is not None else value)


def leaves(obj: Any) -> dict[str, Any]:
    """Every setting of ``obj`` (nested ones as ``a.b``), as JSON values, each as ``public`` shows it: what
    build.json records."""
    return dict(_walk(obj, "", only_resume=False))


def resume_key(obj: Any) -> dict[str, Any]:
    """The settings of ``obj`` marked ``resume``: a build resumes only under the same ones."""
    return dict(_walk(obj, "", only_resume=True))


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The names whose values differ between two flat mappings (one's absent keys count)."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def given(value: Any) -> bool:
    """What build.json shows of a secret: whether one was given."""
    return value is not None and value != ""


def name_only(value: Any) -> str | None:
    """What build.json shows of a local path: its last part."""
    return Path(value).name if value else None
