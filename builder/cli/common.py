"""What every subcommand shares: the click group, lazy choices, reporting problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import click

__all__ = ["LazyChoice", "main", "report"]


class LazyChoice(click.Choice):
    """A choice whose values come from a registry, read only when a command runs or shows its help."""

    def __init__(self, load: Callable[[], Iterable[str]], case_sensitive: bool = True) -> None:
        self._load = load
        super().__init__([], case_sensitive=case_sensitive)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._load())

    @choices.setter
    def choices(self, value: Any) -> None:  # click's __init__ assigns it; the registry is the source
        pass


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medtrinity-25m")
def main() -> None:
    """Build MedTrinity-style multigranular medical datasets and publish them."""
    from builder.gcpolicy import freeze_at_exit

    freeze_at_exit()


def report(problems: list[Any], out: Path) -> None:
    if problems:
        for problem in problems:
            click.echo(f"FAIL {problem}", err=True)
        raise click.ClickException(f"{out}: {len(problems)} problem(s)")
