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

from builder.cli.common import LazyChoice, main
from builder.privacy import redact


def _format_names() -> list[str]:
    from builder.formats import format_choices

    return sorted(format_choices())


def _start_workers_early(ctx: click.Context, param: click.Parameter, workers: int) -> int:
    """Start the local engine's forkserver as soon as ``--workers`` is read (an eager option: before the other
    choices, whose registries import the pipeline). It then loads the pipeline on another core while this process
    loads it too, instead of after: workers are up when the first unit is ready, about a second sooner."""
    if workers > 1 and not ctx.resilient_parsing:
        from builder.forkserver import start_forkserver

        start_forkserver()  # idempotent; with --engine ray it only waits, unused
    return workers


def _png_encoder_names() -> list[str]:
    from builder.pngcodec import ENCODERS

    return ["auto", *ENCODERS]


def _engine_names() -> list[str]:
    from builder.pipeline.engines import ENGINES

    return ENGINES.names()


def _describer_names() -> list[str]:
    from builder.pipeline.text.registry import DESCRIBERS

    return DESCRIBERS.names()


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


def build_options(fn: Any) -> Any:
    options = [
        click.option("--format", "fmt", type=LazyChoice(_format_names), default="parquet",
                     show_default=True, help="Shard format(s) to write."),
        click.option("--workers", type=int, default=os.cpu_count() or 1, show_default="all cores",
                     is_eager=True, callback=_start_workers_early,
                     help="Worker processes (with --engine ray: CPUs of a local Ray)."),
        click.option("--engine", type=LazyChoice(_engine_names), default="local", show_default=True,
                     help="Run units on this machine's processes or on Ray."),
        click.option("--ray-address", help="Ray cluster to join (default: start a local Ray)."),
        click.option("--describer-actors", type=int, default=0, show_default=True,
                     help="With --engine ray: serve the openai/transformers describer from this many actors."),
        click.option("--describer-gpus", type=float, default=0.0, show_default=True,
                     help="GPUs each describer actor asks Ray for."),
        click.option("--shard-units", type=int, default=1000, show_default=True,
                     help="Input files per work group: each group writes its own shards and is the unit "
                          "of resuming."),
        click.option("--overwrite", is_flag=True, help="Replace a build already in OUT."),
        click.option("--shard-rows", type=int, default=10_000, show_default=True,
                     help="Roll over to a new shard after this many rows."),
        click.option("--shard-mb", type=int, default=500, show_default=True,
                     help="Roll over to a new shard after about this many MiB."),
        click.option("--quiet", is_flag=True, help="No progress output."),
        click.option("--dedup", is_flag=True, help="Drop exact pixel duplicates in every source."),
        click.option("--allow-burned-in", is_flag=True,
                     help="Admit DICOM images that may show burned-in text (BurnedInAnnotation=YES, or flagged by "
                          "deid's rules without a known region to clean)."),
        click.option("--allow-commands", is_flag=True,
                     help="Let the manifest run local commands (roi method command); off: such a manifest is "
                          "refused."),
        click.option("--id-key", envvar="MEDTRI_ID_KEY", show_envvar=True,
                     help="Secret of the pseudonymous ids (default: a key kept in the user's config folder)."),
        click.option("--max-memory", type=float, default=4.0, show_default=True,
                     help="GiB of memory each worker may grow by; an input needing more is a reject (0: no limit)."),
        click.option("--on-error", type=click.Choice(["reject", "raise"]), default="reject", show_default=True,
                     help="A bug of the pipeline (not bad input): a reject line and a failed build, or raise it."),
        click.option("--unit-timeout", type=float, default=300.0, show_default=True,
                     help="Seconds one input file may take before it becomes a reject."),
        click.option("--restore-pixels", is_flag=True,
                     help="Rows of a published release whose ROI outlines were recovered from the pixels also get "
                          "the image with the outlines painted out (column restored); the original is kept."),
        click.option("--png-encoder", type=LazyChoice(_png_encoder_names), default="auto", show_default=True,
                     help="Who writes the PNGs: auto is the fastest installed (ISA-L, OpenCV, imagecodecs, then "
                          "Pillow); the pixels are the same whichever."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return text_options(fn)


def text_options(fn: Any) -> Any:
    """The describer's flags: ``build`` and ``describe`` take the same."""
    options = [
        click.option("--describer", type=LazyChoice(_describer_names), default="template",
                     show_default=True, help="Who writes the descriptions."),
        click.option("--style", type=click.Choice(["attributes", "medtrinity"]), default="attributes",
                     show_default=True, help="attributes: the five attributes joined; medtrinity: the release's "
                                             "one-paragraph form and coarse captions."),
        click.option("--draw-rois", is_flag=True,
                     help="Draw each ROI's box on the image a model describer sees (never on the stored image)."),
        click.option("--llm-base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM)."),
        click.option("--llm-model", help="Model name the server serves."),
        click.option("--llm-concurrency", type=int, default=8, show_default=True, help="Requests in flight."),
        click.option("--llm-timeout", type=float, default=120.0, show_default=True, help="Seconds per request."),
        click.option("--llm-retries", type=int, default=3, show_default=True,
                     help="Further tries after a failed request or an answer that does not parse."),
        click.option("--vlm-model", help="Local vision-language checkpoint folder (--describer transformers)."),
        click.option("--kb", type=click.Path(exists=True, file_okay=False), help="Knowledge base folder."),
        click.option("--kb-k", type=int, default=8, show_default=True, help="Snippets per coarse caption."),
        click.option("--answer-cache/--no-answer-cache", default=True, show_default=True,
                     help="Keep each model answer as it arrives (in the user's cache folder) and never ask the "
                          "model again for a row it answered under the same model and prompt."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _text_options(describer: str, llm_base_url: str | None, llm_model: str | None, llm_concurrency: int,
                  llm_timeout: float, llm_retries: int, vlm_model: str | None, kb: str | None,
                  kb_k: int, style: str = "attributes", draw_rois: bool = False, answer_cache: bool = True) -> Any:
    from builder.llm import LLMConfig
    from builder.pipeline.text.options import TextOptions

    llm = None
    if llm_base_url or llm_model:
        if not (llm_base_url and llm_model):
            raise click.UsageError("--llm-base-url and --llm-model go together")
        llm = LLMConfig(base_url=llm_base_url, model=llm_model, concurrency=llm_concurrency, timeout=llm_timeout,
                        retries=llm_retries)
    return TextOptions(describer=describer, llm=llm, model=vlm_model, kb=kb, k=kb_k, style=style,
                       draw_rois=draw_rois, cache_answers=answer_cache)


ENGINE_FLAGS = ("workers", "ray_address", "describer_actors", "describer_gpus")


def run_build(manifest_path: Path, out: Path, fmt: str, engine: str, shard_units: int, overwrite: bool,
              shard_rows: int, shard_mb: int, quiet: bool, dedup: bool, allow_burned_in: bool, unit_timeout: float,
              allow_commands: bool, id_key: str | None, max_memory: float, on_error: str, repo: str | None = None,
              demo: bool = False, png_encoder: str = "auto", restore_pixels: bool = False,
              **flags: Any) -> dict[str, Any]:
    import dataclasses

    from builder import gcpolicy, pngcodec
    from builder.errors import ManifestError
    from builder.formats import ShardLimits, format_choices
    from builder.formats.parquet import arrow_without_pandas
    from builder.pipeline.build import BuildError, BuildOptions, build
    from builder.pipeline.engines import engine_options
    from builder.pipeline.process import TripletOptions
    from builder.pipeline.sources.manifest import load_manifest

    engine_flags = {k: flags.pop(k) for k in ENGINE_FLAGS}
    engine_flags["workers"] = max(1, engine_flags["workers"])
    try:
        manifest = load_manifest(manifest_path)
        if allow_burned_in:  # every source whose format has the option
            manifest = dataclasses.replace(manifest, sources=tuple(
                dataclasses.replace(s, options=dataclasses.replace(s.options, allow_burned_in=True))
                if hasattr(s.options, "allow_burned_in") else s for s in manifest.sources))
        try:
            encoder = pngcodec.choose(png_encoder)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        triplets = TripletOptions(text=_text_options(**flags), unit_timeout=unit_timeout, dedup=dedup,
                                  memory_limit=int(max(0.0, max_memory) * 2**30), on_error=on_error,
                                  png_encoder=encoder, restore_pixels=restore_pixels)
        options = BuildOptions(
            out=out, formats=format_choices()[fmt], engine=engine_options(engine, engine_flags),
            shard_units=shard_units, overwrite=overwrite, triplets=triplets,
            limits=ShardLimits(max_rows=shard_rows, max_bytes=shard_mb * 2**20), repo=repo or out.resolve().name,
            id_key=id_key, demo=demo, allow_commands=allow_commands,
        )
        arrow_without_pandas()
        gcpolicy.settle()  # the pipeline is imported: freeze it, collect young objects less often
        summary = build(manifest, options, ProgressPrinter(quiet))
    except (ManifestError, BuildError) as exc:
        raise click.ClickException(redact(str(exc))) from None
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: the files done so far are kept in {out}; run the same command again to "
                   "resume where it stopped (or add --overwrite to start over)", err=True)
        raise click.exceptions.Exit(130) from None
    if not quiet:
        print_summary(summary, out)
    _judge(summary, out)
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


@main.command("build")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to write.")
@build_options
def build_cmd(manifest: Path, out: Path, **kwargs: Any) -> None:
    """Build a dataset from a sources MANIFEST (YAML) into OUT."""
    run_build(manifest, out, **kwargs)


@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("medtrinity-25m"),
              show_default=True, help="Dataset folder to write.")
@build_options
def demo_cmd(out: Path, **kwargs: Any) -> None:
    """Build a small demo dataset offline from sample sources it assembles (replacing an earlier demo)."""
    import tempfile

    from builder.pipeline.demo import assemble

    kwargs["overwrite"] = True  # an earlier demo is disposable; any other folder is refused
    with tempfile.TemporaryDirectory(prefix="medtri-demo-") as tmp:
        manifest = assemble(Path(tmp))
        run_build(manifest, out, demo=True, **kwargs)
    click.echo(f'\nopen it:  {shlex.quote(sys.executable)} -c "from datasets import load_dataset; '
               f"print(load_dataset('{out}', 'ct')['train'][0]['caption'])\"")



