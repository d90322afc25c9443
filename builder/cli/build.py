"""``medtri-build build`` and ``demo``: the pipeline from a manifest to a dataset folder.

Choices are read from the registries (formats, engines, describers) when a
command runs or shows its help; nothing of the pipeline is imported before.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import click

from builder.cli.common import main
from builder.cli.flags import OptionsCommand, options_of
from builder.privacy import redact


def _start_workers_early(args: list[str]) -> None:
    """Start the local engine's forkserver before the flags are made (which imports the pipeline): it then loads the
    pipeline on another core while this process loads it too, instead of after; workers are up when the first unit
    is ready, about a second sooner."""
    if "--help" in args or "-h" in args:
        return
    workers = os.cpu_count() or 1
    for index, arg in enumerate(args):
        value = args[index + 1] if arg == "--workers" and index + 1 < len(args) else \
            arg.split("=", 1)[1] if arg.startswith("--workers=") else None
        if value is not None and value.strip().isdigit():
            workers = int(value)
    if workers > 1:
        from builder.forkserver import start_forkserver

        start_forkserver()  # idempotent; with --engine ray it only waits, unused


def _build_options() -> type:
    from builder.pipeline.build.options import BuildOptions

    return BuildOptions


class ProgressPrinter:
    """A live line on a terminal; a plain log line every ``interval`` seconds otherwise."""

    def __init__(self, quiet: bool, interval: float = 10.0) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.interval = interval if not self.tty else 0.2
        self.last = 0.0
        self.times: deque[float] = deque(maxlen=self.WINDOW)  # when the latest units of this run finished

    def __call__(self, p: Any) -> None:
        now = time.monotonic()
        self.times.append(now)
        done = p.units_done == p.units_total
        if self.quiet or (now - self.last < self.interval and not done):
            return
        self.last = now
        elapsed = max(now - p.started, 1e-9)
        rate = p.rows / elapsed
        resumed = f" ({p.resumed} done before)" if p.resumed else ""
        line = (f"{p.units_done}/{p.units_total} files{resumed}  {p.rows} rows  {p.rejects} rejected  "
                f"{rate:.1f} rows/s  ETA {self.eta(p.units_total - p.units_done)}")
        if self.tty:
            width = 30
            filled = int(width * p.units_done / max(p.units_total, 1))
            click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {line}", err=True, nl=done)
        else:
            click.echo(line, err=True)

    MIN_UNITS = 10  # before this many files are done, one slow file (a volume) would make any ETA absurd
    WINDOW = 2000  # the pace is taken over at most the later half of this many latest files

    def eta(self, left: int) -> str:
        """Seconds left at the pace of the later half of the files done so far (start-up and a slow first
        file weigh nothing once the pace is known); '--' until enough files are done to tell."""
        if left == 0:
            return "0s"
        if len(self.times) < self.MIN_UNITS:
            return "--"
        middle = len(self.times) // 2
        pace = (self.times[-1] - self.times[middle]) / max(len(self.times) - 1 - middle, 1)
        return f"{left * pace:.0f}s"


def print_summary(summary: dict[str, Any], out: Path) -> None:
    files, rows = summary["files"], summary["rows"]
    click.echo(f"wrote {rows['total']} rows to {out} in {summary['seconds']:.1f}s "
               f"({summary['rows_per_second'] or 0:.1f} rows/s)")
    for modality, count in rows["by_modality"].items():
        click.echo(f"  {modality:<12} {count:>8} rows")
    click.echo(f"files: {files['seen']} seen, {files['accepted']} accepted, {files['rejected']} rejected"
               f"; {summary['rejects']['total']} reject lines in {out / 'rejects.jsonl'} "
               f"(with the real paths: {out / '.private' / 'rejects.jsonl'})")


def run_build(manifest_path: Path, options: Any, quiet: bool = False) -> dict[str, Any]:
    """Build ``options`` (a :class:`builder.pipeline.build.BuildOptions`) from a manifest, reporting as a command."""
    from builder import gcpolicy
    from builder.errors import ManifestError
    from builder.formats.parquet import arrow_without_pandas
    from builder.pipeline.build import BuildError, build
    from builder.pipeline.sources.manifest import load_manifest

    try:
        manifest = load_manifest(manifest_path)
        arrow_without_pandas()
        gcpolicy.settle()  # the pipeline is imported: freeze it, collect young objects less often
        summary = build(manifest, options, ProgressPrinter(quiet))
    except (ManifestError, BuildError) as exc:
        raise click.ClickException(redact(str(exc))) from None
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: the files done so far are kept in {options.out}; run the same command again to "
                   "resume where it stopped (or add --overwrite to start over)", err=True)
        raise click.exceptions.Exit(130) from None
    if not quiet:
        print_summary(summary, options.out)
    _judge(summary, options.out)
    return summary


def _judge(summary: dict[str, Any], out: Path) -> None:
    """Exit non-zero for a build of nothing and for pipeline bugs, after everything else was written."""
    internal = summary["rejects"]["by_stage"].get("internal", 0)
    if internal:
        raise click.ClickException(f"{internal} input(s) hit an internal error (a bug of medtrinity-25m, not bad "
                                   f"input): see stage 'internal' in {out / '.private' / 'rejects.jsonl'} and "
                                   "report it")
    if summary["rows"]["total"] == 0:
        raise click.ClickException(f"the build wrote no rows: every input was rejected (see {out / 'rejects.jsonl'})")


@main.command("build", cls=OptionsCommand, options=_build_options, before=_start_workers_early)
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to write.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def build_cmd(ctx: click.Context, manifest: Path, out: Path, quiet: bool, **_: Any) -> None:
    """Build a dataset from a sources MANIFEST (YAML) into OUT."""
    run_build(manifest, options_of(ctx, out=out, repo=out.resolve().name), quiet)


@main.command("demo", cls=OptionsCommand, options=_build_options, before=_start_workers_early)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("medtrinity-25m"),
              show_default=True, help="Dataset folder to write.")
@click.option("--quiet", is_flag=True, help="No progress output.")
@click.pass_context
def demo_cmd(ctx: click.Context, out: Path, quiet: bool, **_: Any) -> None:
    """Build a small demo dataset offline from sample sources it assembles (replacing an earlier demo)."""
    import tempfile

    from builder.pipeline.demo import assemble

    with tempfile.TemporaryDirectory(prefix="medtri-demo-") as tmp:
        manifest = assemble(Path(tmp))
        # an earlier demo is disposable; any other folder is refused
        run_build(manifest, options_of(ctx, out=out, repo=out.resolve().name, demo=True, overwrite=True), quiet)
    # the first caption a newcomer reads is one that shows what the tool does: a slice with its annotated regions
    click.echo(f'\nopen it:  {shlex.quote(sys.executable)} -c "from datasets import load_dataset; '
               f"print(next(r['caption'] for r in load_dataset('{out}', 'ct', split='train') if r['rois']))\"")


@main.command("recipes")
@click.argument("name", required=False)
def recipes_cmd(name: str | None) -> None:
    """List the recipes (public datasets read as published) or show one: its layout, terms and source entry.

    Use one in a manifest as {name: ..., recipe: NAME, root: FOLDER}; the entry's own keys override the recipe's."""
    import yaml

    from builder.pipeline.sources.recipes import RECIPES, describe

    if name is None:
        for recipe in RECIPES.values():
            click.echo(f"{recipe.name:<22} {recipe.source.get('format', ''):<8} {recipe.title}")
        click.echo("\nmedtri-build recipes NAME shows the layout a recipe expects and the source it expands to.")
        return
    if name not in RECIPES:
        raise click.UsageError(f"{name!r} is not one of {', '.join(RECIPES.names())}")
    recipe = RECIPES[name]
    click.echo(describe(recipe))
    click.echo("  source:\n" + "\n".join(f"    {line}" for line in yaml.safe_dump(
        dict(recipe.source), sort_keys=False, allow_unicode=True).splitlines()))
