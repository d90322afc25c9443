"""Command-line flags made from options dataclasses (:mod:`builder.options`), and the dataclasses made from flags.

A command declares the options class it fills (``OptionsCommand(options=...)``);
its flags are generated from the class's fields when the command parses or shows
its help, never before (``medtri-build --help`` imports nothing of the pipeline).
A field holding a registry entry's options (``--engine``'s, ``--describer``'s)
adds the flags of every entry, each accepted only with its own entry; a registry
field without ``chosen_by`` (the source formats') adds every entry's flagged
fields, applied wherever an entry has the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal

import click
from click.core import ParameterSource

from builder.cli.common import LazyChoice
from builder.options import field_types, option_fields

__all__ = ["OptionFlags", "OptionsCommand", "flag_of", "options_of"]

_TYPES: dict[Any, Any] = {int: int, float: float, str: str, Path: click.Path(path_type=Path)}


def flag_of(f: dataclasses.Field[Any]) -> str | None:
    """The field's flag without ``--``, or None when it has none."""
    flag = f.metadata.get("flag")
    if flag is False or "help" not in f.metadata:
        return None
    return str(flag) if flag else f.name.replace("_", "-")


def dest_of(flag: str) -> str:
    return flag.replace("-", "_")


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _base(kind: Any) -> Any:
    """``X`` of ``X | None``."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1 else kind


def _click_option(f: dataclasses.Field[Any], kind: Any, flag: str) -> click.Option:
    cli = dict(f.metadata["cli"])
    cli.pop("convert", None)
    default = cli.pop("default", _default(f))
    base = _base(kind)
    shown = default not in (None, "")
    settings: dict[str, Any] = {"help": f.metadata["help"], "default": default, "show_default": shown}
    declaration = f"--{flag}"
    if base is bool:
        declaration = f"--{flag}/--no-{flag}" if default else f"--{flag}"
        settings.update(is_flag=True, show_default=bool(default))
    elif typing.get_origin(base) is Literal:
        settings["type"] = click.Choice([str(a) for a in typing.get_args(base)])
    elif f.metadata.get("choices"):
        settings["type"] = LazyChoice(f.metadata["choices"])
    elif base in _TYPES:
        settings["type"] = _TYPES[base]
    if "path" in cli:  # an existing file or folder
        folder = cli.pop("path") == "folder"
        settings["type"] = click.Path(exists=True, file_okay=not folder, dir_okay=folder)
    settings.update(cli)
    return click.Option([declaration, dest_of(flag)], **settings)


@dataclasses.dataclass
class OptionFlags:
    """The flags of one options class: click options, and which entry each belongs to."""

    cls: type
    options: dict[str, click.Option] = dataclasses.field(default_factory=dict)
    owners: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # flag -> "--engine ray", ...

    def __post_init__(self) -> None:
        self._collect(self.cls, "")

    def _collect(self, cls: type, owner: str, only_flagged: bool = False) -> None:
        kinds = field_types(cls)
        for f in option_fields(cls):
            registry = f.metadata.get("registry") if "help" in f.metadata else None
            if registry is not None:
                chooser = f.metadata.get("chosen_by")
                for name, entry in registry().items():
                    self._collect(entry.options, f"{chooser} {name}" if chooser else f"format {name}",
                                  only_flagged=not chooser)
            elif "help" not in f.metadata:
                self._collect(kinds[f.name], owner, only_flagged)
            elif (flag := flag_of(f)) is not None and not (only_flagged and not f.metadata.get("flag")):
                self.options.setdefault(flag, _click_option(f, kinds[f.name], flag))
                if owner:
                    self.owners.setdefault(flag, []).append(owner)

    def params(self) -> list[click.Option]:
        return list(self.options.values())

    def make(self, ctx: click.Context, **fixed: Any) -> Any:
        """The options object from the parsed flags; ``fixed`` fields are given by the command itself.

        A flag given on the command line that the chosen entries do not take is a usage error naming its entry."""
        used: set[str] = set()
        value = self._make(self.cls, ctx, used, fixed)
        for flag, owners in self.owners.items():
            if dest_of(flag) not in used and _given(ctx, dest_of(flag)):
                raise click.UsageError(f"--{flag} is an option of {' / '.join(owners)}")
        return value

    def _make(self, cls: type, ctx: click.Context, used: set[str], fixed: dict[str, Any]) -> Any:
        kinds = field_types(cls)
        values: dict[str, Any] = {}
        for f in option_fields(cls):
            if f.name in fixed:
                values[f.name] = fixed.pop(f.name)
            elif "help" not in f.metadata:
                values[f.name] = self._make(kinds[f.name], ctx, used, fixed)
            elif f.metadata.get("registry") and f.metadata.get("chosen_by"):
                entry = f.metadata["registry"]()[values[f.metadata["chosen_by"]]]
                values[f.name] = self._make(entry.options, ctx, used, {})
            elif f.metadata.get("registry"):
                values[f.name] = self._given_of_entries(f, ctx, used)
            elif (flag := flag_of(f)) is not None and dest_of(flag) in ctx.params:
                used.add(dest_of(flag))
                convert: Callable[[Any], Any] | None = f.metadata["cli"].get("convert")
                given = ctx.params[dest_of(flag)]
                values[f.name] = convert(given) if convert else given
        return cls(**values)

    def _given_of_entries(self, f: dataclasses.Field[Any], ctx: click.Context, used: set[str]) -> dict[str, Any]:
        """Every entry's flagged fields given on the command line: {field name: value}."""
        given: dict[str, Any] = {}
        for _, entry in f.metadata["registry"]().items():
            for inner in option_fields(entry.options):
                flag = flag_of(inner) if inner.metadata.get("flag") else None
                if flag is not None and _given(ctx, dest_of(flag)):
                    given[inner.name] = ctx.params[dest_of(flag)]
                    used.add(dest_of(flag))
        return given


def _given(ctx: click.Context, dest: str) -> bool:
    return ctx.get_parameter_source(dest) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


class OptionsCommand(click.Command):
    """A command whose flags are generated from an options class when it parses its arguments or shows its help.

    ``before(args)`` runs first, on the raw arguments (the build starts its workers' forkserver there, while this
    process goes on to import the pipeline that generating the flags needs)."""

    def __init__(self, *args: Any, options: Callable[[], type], before: Callable[[list[str]], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options_class, self.before = options, before
        self.own = list(self.params)
        self.flags: OptionFlags | None = None

    def option_flags(self, fresh: bool = False) -> OptionFlags:
        """The flags of the options class, made again when ``fresh`` (a registry may have gained entries since)."""
        if self.flags is None or fresh:
            self.flags = OptionFlags(self.options_class())
            own = {p.name for p in self.own}
            self.params = self.own + [p for p in self.flags.params() if p.name not in own]
        return self.flags

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        self.option_flags()
        return super().get_params(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if self.before is not None and not ctx.resilient_parsing:
            self.before(list(args))
        self.option_flags(fresh=True)  # once per invocation: the registries as they are now
        return super().parse_args(ctx, args)


def options_of(ctx: click.Context, **fixed: Any) -> Any:
    """The options object of the running :class:`OptionsCommand`, from its parsed flags and ``fixed`` fields."""
    command = ctx.command
    if not isinstance(command, OptionsCommand):
        raise TypeError(f"{command.name} is not an OptionsCommand")
    return command.option_flags().make(ctx, **fixed)
