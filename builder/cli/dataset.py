"""The read side's commands: query, serve, verify, push, pull, audit, export, validate.

Each imports what it uses when it runs; none imports the build engine.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

from builder.cli.common import LazyChoice, main, report
from builder.cli.flags import OptionsCommand, options_of
from builder.llm import LLMConfig
from builder.options import NoOptions, option


def _emit(result: Any, output: str) -> None:
    import csv
    import json

    if output == "json":
        click.echo(json.dumps(result.records(), indent=2, default=str, ensure_ascii=False))
    elif output == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        cells = [[("" if v is None else str(v)).replace("\n", " ")[:60] for v in row] for row in result.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(result.columns, widths)))
        for row in cells:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


@main.command("query")
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("sql", required=False)
@click.option("--where", help="SQL condition on the samples table, e.g. \"modality = 'ct'\".")
@click.option("--field", "fields", multiple=True, metavar="NAME=PATTERN",
              help="Case-insensitive regex filter on one field (repeatable), e.g. organ=brain.")
@click.option("--text", help="Free text searched in captions, disease, organ and references.")
@click.option("--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True, help="Rows shown without SQL.")
def query_cmd(out: Path, sql: str | None, where: str | None, fields: tuple[str, ...], text: str | None,
              output: str, limit: int) -> None:
    """Run SQL over DATASET's shards (table `samples`), or filter it like MedPix's GUI."""
    from builder.dataset.catalog import Catalog, CatalogError

    try:
        catalog = Catalog(out)
        if sql:
            result = catalog.sql(sql)
        else:
            patterns = dict(f.split("=", 1) for f in fields if "=" in f)
            if len(patterns) != len(fields):
                raise CatalogError("--field takes NAME=PATTERN")
            total, result = catalog.search(
                patterns, where, text, limit=limit,
                columns="id, split, modality, organ, disease, location, source_file, coarse_caption")
            click.echo(f"{total} matching rows" + (f", first {limit}" if total > limit else ""), err=True)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    _emit(result, output)


@main.command("serve")
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (localhost by default).")
@click.option("--port", type=int, default=8765, show_default=True, help="Port (0: any free port).")
def serve_cmd(out: Path, host: str, port: int) -> None:
    """Explore DATASET in a web browser: filters, thumbnails, samples with ROI overlays."""
    from builder.dataset.catalog import CatalogError
    from builder.dataset.serve import make_server

    try:
        server = make_server(out, host, port)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving {out} at http://{host}:{server.server_address[1]}/  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@dataclass(frozen=True)
class ValidateOptions:
    """``medtri-build validate``: who scores, and what the report lists."""

    judge: Literal["rules", "openai"] = option("rules", help="rules: vocabulary matches, offline; openai: a model "
                                                             "behind an OpenAI-compatible server.")
    llm: LLMConfig = field(default_factory=LLMConfig)  # the openai judge's server
    worst: int = option(5, help="Lowest-scored examples to list.")


@main.command("validate", cls=OptionsCommand, options=lambda: ValidateOptions)
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def validate_cmd(ctx: click.Context, out: Path, as_json: bool, **_: Any) -> None:
    """Score DATASET's descriptions against their human references (0-2 per attribute, 10 at most)."""
    import json

    from builder.dataset.validate import OpenAIJudge, RulesJudge, markdown, validate
    from builder.errors import Reject

    options: ValidateOptions = options_of(ctx)
    try:
        if options.judge == "openai":
            if not (options.llm.base_url and options.llm.model):
                raise click.UsageError("--judge openai needs --llm-base-url and --llm-model")
            chosen: Any = OpenAIJudge(dataclasses.replace(options.llm, temperature=0.0))
        else:
            chosen = RulesJudge()
        report = validate(out, chosen, options.worst)
    except Reject as exc:
        raise click.ClickException(exc.reason) from None
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else markdown(report))


def _exporters() -> Any:
    from builder.dataset.export import EXPORTERS

    return EXPORTERS


def _exporter_names() -> list[str]:
    return list(_exporters())


@main.command("verify")
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--config", help="Check only this config's shards (a partial download).")
@click.option("--no-decode", is_flag=True, help="Skip decoding every image (checksums still cover the bytes).")
def verify_cmd(out: Path, config: str | None, no_decode: bool) -> None:
    """Check that DATASET is whole: shards, checksums, row counts, images, ids, card configs."""
    from builder.dataset.verify import verify

    report(verify(out, config=config, decode=not no_decode), out)
    click.echo(f"{out}: OK")


@main.command("push")
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--revision", help="Branch to push to (default: main).")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("--message", help="Commit message.")
@click.option("--dry-run", is_flag=True, help="Print the plan: files, size, commits, configs; upload nothing.")
@click.option("--gated", type=click.Choice(["auto", "manual"]), help="Ask users to request access.")
@click.option("--gate-prompt", help="Text users agree to when requesting access.")
@click.option("--gate-field", "gate_fields", multiple=True, metavar="NAME:TYPE",
              help="A field of the access form (TYPE: text, checkbox, country, date_picker); repeatable.")
@click.option("--against", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A benchmark's test images (a folder of images or a built dataset) that the training rows must "
                   "not copy, beside the manifest's benchmarks; repeatable.")
@click.option("--allow-leakage", is_flag=True, help="Push even when training rows copy benchmark images (the card "
                                                    "says so).")
def push_cmd(out: Path, repo_id: str, private: bool, revision: str | None, create_pr: bool, message: str | None,
             dry_run: bool, gated: str | None, gate_prompt: str | None, gate_fields: tuple[str, ...],
             against: tuple[Path, ...], allow_leakage: bool) -> None:
    """Verify DATASET, then upload it to the Hub as dataset REPO_ID (HF_TOKEN, HF_ENDPOINT honoured)."""
    from builder.dataset.hub import Gate, HubError, PushOptions, push

    gate = None
    if gated:
        fields = dict((f.rsplit(":", 1)[0], f.rsplit(":", 1)[1]) if ":" in f else (f, "text") for f in gate_fields)
        gate = Gate(mode=gated, prompt=gate_prompt or "", fields=fields)
    options = PushOptions(private=private, revision=revision, create_pr=create_pr, message=message,
                          dry_run=dry_run, gate=gate, against=against, allow_leakage=allow_leakage)
    try:
        plan = push(out, repo_id, options)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    size = plan["bytes"] / 2**20
    if dry_run:
        click.echo(f"would upload {plan['files']} files ({size:.1f} MiB) to {repo_id} in {plan['commits']} "
                   f"commit(s); configs: {', '.join(plan['configs'])}")
    else:
        click.echo(f"uploaded {plan['sent']} of {plan['files']} files ({size:.1f} MiB; {plan['skipped']} were on "
                   f"the Hub already) to {repo_id} in {plan['commits']} commit(s); configs: "
                   f"{', '.join(plan['configs'])}")
    for checked in plan["leakage"]:
        click.echo(f"leakage against {checked['benchmark']} ({checked['images']} images): {checked['exact']} exact "
                   f"and {checked['near']} near copies in training rows")
    if dry_run:
        for path in plan["paths"]:
            click.echo(f"  {path}")
    elif plan.get("pr_url"):
        click.echo(f"pull request: {plan['pr_url']}")


@main.command("pull")
@click.argument("repo_id")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--config", help="Download only this config.")
@click.option("--revision", help="Branch, tag or commit.")
def pull_cmd(repo_id: str, out: Path, config: str | None, revision: str | None) -> None:
    """Download dataset REPO_ID (or one config of it) into the folder OUT, then verify it."""
    from builder.dataset.hub import pull

    report(pull(repo_id, out, config, revision), out)
    click.echo(f"{repo_id} -> {out}: OK")


@main.command("audit")
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--against", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another dataset folder, or a folder of images (an evaluation benchmark).")
@click.option("--threshold", type=int, default=8, show_default=True,
              help="Near-duplicates: at most this many of 64 DCT-hash bits differ.")
@click.option("--json", "as_json", is_flag=True, help="JSON: {exact: [[ids...]], near: [[ids...]]}.")
def audit_cmd(out: Path, against: Path | None, threshold: int, as_json: bool) -> None:
    """Find exact and near-duplicate images in DATASET, across its splits, or against another set."""
    import json

    from builder.dataset.audit import audit, ids_only, markdown
    from builder.dataset.shards import LayoutError

    try:
        report = audit(out, against, threshold)
    except LayoutError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(ids_only(report), indent=2) if as_json else markdown(report))


@dataclass(frozen=True)
class ExportOptions:
    """``medtri-build export FORMAT``: the chosen exporter and its own options."""

    format: str = option("folder", flag=False, help="The exporter.")
    exporter_options: Any = option(default_factory=NoOptions, registry=_exporters, chosen_by="format",
                                   help="The chosen exporter's own options.")


@main.command("export", cls=OptionsCommand, options=lambda: ExportOptions)
@click.argument("fmt", type=LazyChoice(_exporter_names))
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write.")
@click.option("--config", help="One modality (default: all).")
@click.pass_context
def export_cmd(ctx: click.Context, fmt: str, out: Path, dest: Path, config: str | None, **_: Any) -> None:
    """Export DATASET for training: LLaVA conversations, COCO detection, an imagefolder, or MedPix 2.0's files."""
    from builder.dataset.export import EXPORTERS, ExportError

    options = options_of(ctx, format=fmt)
    exporter = EXPORTERS[fmt]
    dest.mkdir(parents=True, exist_ok=True)
    try:
        count = exporter.run(out, dest, config, options.exporter_options)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {count} {exporter.counts} as {fmt} to {dest}")


def _text_options() -> type:
    from builder.pipeline.text.options import TextOptions

    return TextOptions


@main.command("describe", cls=OptionsCommand, options=_text_options)
@click.argument("out", metavar="DATASET", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--export-batch", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the model requests as an OpenAI Batch API JSONL file (for vllm run-batch or OpenAI's "
                   "Batch API) instead of asking the model.")
@click.option("--import-batch", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Merge a batch results JSONL file (OpenAI Batch API or vllm run-batch output).")
@click.pass_context
def describe_cmd(ctx: click.Context, out: Path, export_batch: Path | None, import_batch: Path | None,
                 **_: Any) -> None:
    """Describe the rows of a finished build again and publish the new version of the folder, verified."""
    from builder.pipeline.redescribe import DescribeError, DescribeJob, describe_dataset

    if export_batch and import_batch:
        raise click.UsageError("--export-batch and --import-batch are two steps: give one")
    try:
        done = describe_dataset(DescribeJob(out, options_of(ctx), export_batch, import_batch))
    except DescribeError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(done, indent=2))
