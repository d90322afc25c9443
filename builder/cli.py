"""``medtri-build``: the command line of the pipeline."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click

from .engine import BuildError, BuildOptions, Progress, build
from .errors import ManifestError
from .privacy import redact
from .sources.manifest import load_manifest
from .text.llm import LLMConfig
from .text.models import TextOptions
from .triplets import TripletOptions
from .writers import FORMAT_CHOICES, ShardLimits


class ProgressPrinter:
    """A live line on a terminal; a plain log line every ``interval`` seconds otherwise."""

    def __init__(self, quiet: bool, interval: float = 10.0) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.interval = interval if not self.tty else 0.2
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        done = p.units_done == p.units_total
        if self.quiet or (now - self.last < self.interval and not done):
            return
        self.last = now
        elapsed = max(now - p.started, 1e-9)
        rate = p.rows / elapsed
        fresh = p.units_done - p.resumed
        eta = (p.units_total - p.units_done) * elapsed / max(fresh, 1)
        resumed = f" ({p.resumed} done before)" if p.resumed else ""
        line = (f"{p.units_done}/{p.units_total} files{resumed}  {p.rows} rows  {p.rejects} rejected  "
                f"{rate:.1f} rows/s  ETA {eta:.0f}s")
        if self.tty:
            width = 30
            filled = int(width * p.units_done / max(p.units_total, 1))
            click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {line}", err=True, nl=done)
        else:
            click.echo(line, err=True)


def print_summary(summary: dict[str, Any], out: Path) -> None:
    files, rows = summary["files"], summary["rows"]
    click.echo(f"wrote {rows['total']} rows to {out} in {summary['seconds']:.1f}s "
               f"({summary['rows_per_second'] or 0:.1f} rows/s)")
    for modality, count in rows["by_modality"].items():
        click.echo(f"  {modality:<12} {count:>8} rows")
    click.echo(f"files: {files['seen']} seen, {files['accepted']} accepted, {files['rejected']} rejected"
               f"; {summary['rejects']['total']} reject lines in {out / 'rejects.jsonl'} "
               f"(with the real paths: {out / '.private' / 'rejects.jsonl'})")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medtrinity-25m")
def main() -> None:
    """Build MedTrinity-style multigranular medical datasets and publish them."""


def build_options(fn: Any) -> Any:
    options = [
        click.option("--format", "fmt", type=click.Choice(sorted(FORMAT_CHOICES)), default="parquet",
                     show_default=True, help="Shard format(s) to write."),
        click.option("--workers", type=int, default=os.cpu_count() or 1, show_default="all cores",
                     help="Worker processes (with --engine ray: CPUs of a local Ray)."),
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
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
        click.option("--shard-rows", type=int, default=ShardLimits.max_rows, show_default=True,
                     help="Roll over to a new shard after this many rows."),
        click.option("--shard-mb", type=int, default=ShardLimits.max_bytes // 2**20, show_default=True,
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
        click.option("--unit-timeout", type=float, default=300.0, show_default=True,
                     help="Seconds one input file may take before it becomes a reject."),
        click.option("--describer", type=click.Choice(["template", "openai", "transformers"]), default="template",
                     show_default=True, help="Who writes the descriptions."),
        click.option("--llm-base-url", help="OpenAI-compatible server, e.g. http://localhost:8000/v1 (vLLM)."),
        click.option("--llm-model", help="Model name the server serves."),
        click.option("--llm-concurrency", type=int, default=8, show_default=True, help="Requests in flight."),
        click.option("--llm-timeout", type=float, default=120.0, show_default=True, help="Seconds per request."),
        click.option("--llm-retries", type=int, default=3, show_default=True,
                     help="Further tries after a failed request or an answer that does not parse."),
        click.option("--vlm-model", help="Local vision-language checkpoint folder (--describer transformers)."),
        click.option("--kb", type=click.Path(exists=True, file_okay=False), help="Knowledge base folder."),
        click.option("--kb-k", type=int, default=8, show_default=True, help="Snippets per coarse caption."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _text_options(describer: str, llm_base_url: str | None, llm_model: str | None, llm_concurrency: int,
                  llm_timeout: float, llm_retries: int, vlm_model: str | None, kb: str | None,
                  kb_k: int) -> TextOptions:
    llm = None
    if llm_base_url or llm_model:
        if not (llm_base_url and llm_model):
            raise click.UsageError("--llm-base-url and --llm-model go together")
        llm = LLMConfig(base_url=llm_base_url, model=llm_model, concurrency=llm_concurrency, timeout=llm_timeout,
                        retries=llm_retries)
    return TextOptions(describer=describer, llm=llm, model=vlm_model, kb=kb, k=kb_k)


def run_build(manifest_path: Path, out: Path, fmt: str, workers: int, engine: str, ray_address: str | None,
              describer_actors: int, describer_gpus: float, shard_units: int, overwrite: bool, shard_rows: int,
              shard_mb: int, quiet: bool, dedup: bool, allow_burned_in: bool, unit_timeout: float,
              allow_commands: bool, id_key: str | None, max_memory: float, repo: str | None = None,
              demo: bool = False, **text: Any) -> dict[str, Any]:
    try:
        manifest = load_manifest(manifest_path)
        if allow_burned_in:
            manifest = dataclasses.replace(manifest, sources=tuple(
                dataclasses.replace(s, allow_burned_in=True) for s in manifest.sources))
        text_options = _text_options(**text)
        triplets = TripletOptions(describer=text_options.describer, unit_timeout=unit_timeout, dedup=dedup,
                                  memory_limit=int(max(0.0, max_memory) * 2**30))
        options = BuildOptions(
            out=out, formats=FORMAT_CHOICES[fmt], workers=max(1, workers), engine=engine, ray_address=ray_address,
            shard_units=shard_units, overwrite=overwrite, describer_actors=describer_actors,
            describer_gpus=describer_gpus, triplets=triplets, text=text_options,
            limits=ShardLimits(max_rows=shard_rows, max_bytes=shard_mb * 2**20), repo=repo or out.resolve().name,
            id_key=id_key, demo=demo, allow_commands=allow_commands,
        )
        summary = build(manifest, options, ProgressPrinter(quiet))
    except (ManifestError, BuildError) as exc:
        raise click.ClickException(redact(str(exc))) from None
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

    from .demo import assemble

    kwargs["overwrite"] = True  # an earlier demo is disposable; any other folder is refused
    with tempfile.TemporaryDirectory(prefix="medtri-demo-") as tmp:
        manifest = assemble(Path(tmp))
        run_build(manifest, out, demo=True, **kwargs)
    click.echo(f'\nopen it:  {shlex.quote(sys.executable)} -c "from datasets import load_dataset; '
               f"print(load_dataset('{out}', 'ct')['train'][0]['caption'])\"")


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
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("sql", required=False)
@click.option("--where", help="SQL condition on the samples table, e.g. \"modality = 'ct'\".")
@click.option("--field", "fields", multiple=True, metavar="NAME=PATTERN",
              help="Case-insensitive regex filter on one field (repeatable), e.g. organ=brain.")
@click.option("--text", help="Free text searched in captions, disease, organ and references.")
@click.option("--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@click.option("--limit", type=int, default=50, show_default=True, help="Rows shown without SQL.")
def query_cmd(out: Path, sql: str | None, where: str | None, fields: tuple[str, ...], text: str | None,
              output: str, limit: int) -> None:
    """Run SQL over OUT's shards (table `samples`), or filter it like MedPix's GUI."""
    from .catalog import Catalog, CatalogError

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
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (localhost by default).")
@click.option("--port", type=int, default=8765, show_default=True, help="Port (0: any free port).")
def serve_cmd(out: Path, host: str, port: int) -> None:
    """Explore OUT in a web browser: filters, thumbnails, samples with ROI overlays."""
    from .catalog import CatalogError
    from .serve import make_server

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


@main.group("kb")
def kb_group() -> None:
    """Knowledge bases: build one from a corpus, search it."""


@kb_group.command("build")
@click.argument("corpus", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Folder to write.")
@click.option("--encoder", default="minilm", show_default=True,
              help="minilm, medcpt:QUERY_DIR,ARTICLE_DIR, or a local transformers model folder.")
@click.option("--max-chars", type=int, default=800, show_default=True, help="Snippet size, whole sentences.")
@click.option("--overlap", type=int, default=1, show_default=True, help="Sentences shared by neighbours.")
def kb_build_cmd(corpus: tuple[Path, ...], out: Path, encoder: str, max_chars: int, overlap: int) -> None:
    """Chunk, embed and index CORPUS files or folders (.txt, .md, .jsonl, MedPix cases)."""
    from .knowledge import KnowledgeBase, load_encoder, read_corpus
    from .knowledge.corpus import CorpusError
    from .knowledge.encoders import EncoderError
    from .knowledge.index import KnowledgeError

    try:
        kb = KnowledgeBase.build(read_corpus(corpus), load_encoder(encoder), max_chars, overlap)
    except (CorpusError, EncoderError, KnowledgeError) as exc:
        raise click.ClickException(str(exc)) from None
    kb.save(out)
    info = kb.info
    click.echo(f"{info['documents']} documents, {info['snippets']} snippets, {info['index']['type']} index "
               f"of dimension {info['dim']} in {out}")


@kb_group.command("search")
@click.argument("kb", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("query")
@click.option("-k", type=int, default=8, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON (doc_id, score, text, id).")
def kb_search_cmd(kb: Path, query: str, k: int, as_json: bool) -> None:
    """The top K snippets of KB for QUERY."""
    import json

    from .knowledge import KnowledgeBase
    from .knowledge.index import KnowledgeError

    try:
        hits = KnowledgeBase.load(kb).search([query], k)[0]
    except KnowledgeError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps([{"doc_id": h.doc_id, "score": round(h.score, 4), "text": h.text, "id": h.id}
                               for h in hits], indent=2, ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank}. [{hit.doc_id}] {hit.score:.3f}  {hit.text[:160]}")


@main.command("validate")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--judge", type=click.Choice(["rules", "openai"]), default="rules", show_default=True)
@click.option("--llm-base-url", help="OpenAI-compatible server of the openai judge.")
@click.option("--llm-model", help="Model name of the openai judge.")
@click.option("--worst", type=int, default=5, show_default=True, help="Lowest-scored examples to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def validate_cmd(out: Path, judge: str, llm_base_url: str | None, llm_model: str | None, worst: int,
                 as_json: bool) -> None:
    """Score OUT's descriptions against their human references (0-2 per attribute, 10 at most)."""
    import json

    from .errors import Reject
    from .validate import OpenAIJudge, RulesJudge, markdown, validate

    try:
        if judge == "openai":
            if not (llm_base_url and llm_model):
                raise click.UsageError("--judge openai needs --llm-base-url and --llm-model")
            chosen: Any = OpenAIJudge(LLMConfig(base_url=llm_base_url, model=llm_model, temperature=0.0))
        else:
            chosen = RulesJudge()
        report = validate(out, chosen, worst)
    except Reject as exc:
        raise click.ClickException(exc.reason) from None
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else markdown(report))


def _report(problems: list[Any], out: Path) -> None:
    if problems:
        for problem in problems:
            click.echo(f"FAIL {problem}", err=True)
        raise click.ClickException(f"{out}: {len(problems)} problem(s)")


@main.command("verify")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--config", help="Check only this config's shards (a partial download).")
@click.option("--no-decode", is_flag=True, help="Skip decoding every image (checksums still cover the bytes).")
def verify_cmd(out: Path, config: str | None, no_decode: bool) -> None:
    """Check that OUT is whole: shards, checksums, row counts, images, ids, card configs."""
    from .verify import verify

    _report(verify(out, config=config, decode=not no_decode), out)
    click.echo(f"{out}: OK")


@main.command("push")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
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
def push_cmd(out: Path, repo_id: str, private: bool, revision: str | None, create_pr: bool, message: str | None,
             dry_run: bool, gated: str | None, gate_prompt: str | None, gate_fields: tuple[str, ...]) -> None:
    """Verify OUT, then upload it to the Hub as dataset REPO_ID (HF_TOKEN, HF_ENDPOINT honoured)."""
    from .hub import Gate, HubError, PushOptions, push

    gate = None
    if gated:
        fields = dict(f.rsplit(":", 1) if ":" in f else (f, "text") for f in gate_fields)
        gate = Gate(mode=gated, prompt=gate_prompt or "", fields=fields)
    options = PushOptions(private=private, revision=revision, create_pr=create_pr, message=message,
                          dry_run=dry_run, gate=gate)
    try:
        plan = push(out, repo_id, options)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    size = plan["bytes"] / 2**20
    verb = "would upload" if dry_run else "uploaded"
    click.echo(f"{verb} {plan['files']} files ({size:.1f} MiB) to {repo_id} in about {plan['commits']} commit(s); "
               f"configs: {', '.join(plan['configs'])}")
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
    """Download dataset REPO_ID (or one config of it) into OUT, then verify it."""
    from .hub import pull

    _report(pull(repo_id, out, config, revision), out)
    click.echo(f"{repo_id} -> {out}: OK")


@main.command("audit")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--against", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another dataset folder, or a folder of images (an evaluation benchmark).")
@click.option("--threshold", type=int, default=8, show_default=True,
              help="Near-duplicates: at most this many of 64 DCT-hash bits differ.")
@click.option("--json", "as_json", is_flag=True, help="JSON: {exact: [[ids...]], near: [[ids...]]}.")
def audit_cmd(out: Path, against: Path | None, threshold: int, as_json: bool) -> None:
    """Find exact and near-duplicate images in OUT, across its splits, or against another set."""
    import json

    from .audit import audit, ids_only, markdown
    from .shards import LayoutError

    try:
        report = audit(out, against, threshold)
    except LayoutError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(ids_only(report), indent=2) if as_json else markdown(report))


@main.command("export")
@click.argument("fmt", metavar="FORMAT", type=click.Choice(["llava", "coco", "folder"]))
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "dest", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write.")
@click.option("--config", help="One modality (default: all).")
@click.option("--vqa", is_flag=True, help="llava: add a question-answer record per attribute.")
@click.option("--jsonl", is_flag=True, help="llava: write JSON lines instead of one JSON list.")
def export_cmd(fmt: str, out: Path, dest: Path, config: str | None, vqa: bool, jsonl: bool) -> None:
    """Export OUT for training: LLaVA conversations, COCO detection, or an imagefolder."""
    from .export import EXPORTERS, ExportError

    dest.mkdir(parents=True, exist_ok=True)
    extra = {"vqa": vqa, "jsonl": jsonl} if fmt == "llava" else {}
    try:
        count = EXPORTERS[fmt](out, dest, config, **extra)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {count} {'records' if fmt == 'llava' else 'images'} as {fmt} to {dest}")
