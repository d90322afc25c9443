"""Publishing to the Hugging Face Hub: ``push`` and ``pull``.

``push`` verifies the folder first and refuses one that fails, then creates the
dataset repo (``exist_ok``) and uploads in commits of at most a hundred files,
the card last; run again after an interruption, it sends only what had not
landed (:mod:`builder.dataset.commits`). The token is ``huggingface_hub``'s:
``HF_TOKEN`` or the login cache; it is never printed, logged or written.
``HF_ENDPOINT`` is honoured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder.dataset import leakage
from builder.dataset.commits import Pushed, batches, commit_all
from builder.dataset.shards import LayoutError, iter_rows
from builder.dataset.verify import Problem, card_configs, verify
from builder.formats import FORMATS
from builder.layout import BUILD_JSON, FILES_PER_FOLDER, NAME, listed_files, read_build_json
from builder.privacy import redact
from builder.yamlsafe import load_yaml


class HubError(RuntimeError):
    """A push or pull that cannot go on; the message says why."""


@dataclass(frozen=True)
class Gate:
    """Access requests for a gated dataset (a data use agreement)."""

    mode: str = "manual"  # "auto" accepts every request, "manual" waits for a person
    prompt: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # name -> text | checkbox | country | date_picker


@dataclass(frozen=True)
class PushOptions:
    private: bool = False
    revision: str | None = None
    create_pr: bool = False
    message: str | None = None
    dry_run: bool = False
    gate: Gate | None = None
    against: tuple[Path, ...] = ()  # benchmark folders checked for leakage, beside the manifest's
    allow_leakage: bool = False  # push even when training rows copy benchmark images


def refuse_withheld_pixels(out: Path) -> None:
    """A :class:`HubError` naming each source whose terms forbid sharing its pixels (build.json ``sources``:
    ``redistribute`` false) while some of its rows were built with them: rows not marked ``pixels_withheld``
    (``verify``, run first, refuses a marked row that holds pixels). Two small columns are read, no image."""
    doc = read_build_json(out) or {}
    withheld = {s["name"] for s in doc.get("sources", []) if s.get("redistribute") is False}
    if not withheld:
        return
    found: dict[str, int] = {}
    try:
        for _, row in iter_rows(out, ["source", "pixels_withheld"], batch_size=4096):
            if row["source"] in withheld and not row["pixels_withheld"]:
                found[row["source"]] = found.get(row["source"], 0) + 1
    except LayoutError:  # no Parquet shards: WebDataset samples carry an all-zero image for withheld rows
        return
    if found:
        listed = "; ".join(f"{name!r}: {n} rows" for name, n in sorted(found.items()))
        raise HubError(f"sources whose terms do not allow their pixels to be shared hold pixels ({listed}): "
                       "nothing was pushed. Build them again with redistribute: false, which publishes their "
                       "annotations without pixels")


def with_leakage(card: str, found: list[leakage.Leakage], allowed: bool) -> str:
    """The card with its leakage section: what this push checked and found, replacing an earlier push's."""
    if leakage.MARK in card:
        head, _, rest = card.partition(leakage.MARK)
        card = head.rstrip("\n") + "\n" + rest.partition(leakage.MARK)[2].lstrip("\n")
    section = leakage.card_section(found, allowed)
    if not section:
        return card
    before, marker, after = card.partition("\n## Provenance")
    return f"{before.rstrip()}\n\n{section}\n{marker}{after}" if marker else f"{card.rstrip()}\n\n{section}\n"


def crowded_folders(paths: list[str], limit: int = FILES_PER_FOLDER) -> dict[str, int]:
    """Folders of a repository that would hold more than ``limit`` entries (files and folders), and how many."""
    entries: dict[str, set[str]] = {}
    for path in paths:
        parts = path.split("/")
        for depth in range(len(parts)):
            entries.setdefault("/".join(parts[:depth]) or ".", set()).add(parts[depth])
    return {folder: len(held) for folder, held in sorted(entries.items()) if len(held) > limit}


def upload_plan(out: Path) -> list[tuple[str, int]]:
    """(path in repo, bytes) of every file a push uploads: what build.json lists as published, nothing else."""
    doc = read_build_json(out) or {}
    published, _ = listed_files(doc)
    return [(rel, (out / rel).stat().st_size) for rel in sorted(published)
            if not rel.startswith(".") and not rel.endswith(".py") and (out / rel).is_file()]


def retarget_card(text: str, repo_id: str, gate: Gate | None) -> str:
    """The card with its examples loading ``repo_id`` and, if gated, the request form."""
    text = re.sub(r'load_dataset\("[^"]*"', f'load_dataset("{repo_id}"', text)
    if gate is None:
        return text
    _, header, body = text.split("---", 2)
    meta = load_yaml(header, "README.md") or {}
    meta["extra_gated_prompt"] = gate.prompt or (
        "This dataset holds medical images. Agree to use it for research only, never to re-identify anyone, "
        "and to follow the licenses of its sources.")
    if gate.fields:
        meta["extra_gated_fields"] = dict(gate.fields)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---" + body


def push(out: Path, repo_id: str, options: PushOptions) -> dict[str, Any]:
    """Verify, then upload; with ``dry_run`` only say what would be uploaded."""
    problems = verify(out)
    if problems:
        raise HubError("the folder fails verify, nothing was pushed:\n" + "\n".join(f"  {p}" for p in problems))
    refuse_withheld_pixels(out)
    found = leakage.check(out, leakage.benchmarks_of(out, options.against))
    leaked = [f for f in found if f.found]
    if leaked and not options.allow_leakage:
        listed = "; ".join(f"{f.name}: {len(f.exact)} exact and {len(f.near)} near copies (e.g. "
                           f"{', '.join((f.exact + f.near)[:3])})" for f in leaked)
        raise HubError(f"benchmark images are in the training rows ({listed}): nothing was pushed. Remove them "
                       "(medtri-build audit --against names them all), or push with --allow-leakage, which the "
                       "card then states")
    files = upload_plan(out)
    crowded = crowded_folders([path for path, _ in files])
    if crowded:
        listed = ", ".join(f"{folder} ({n})" for folder, n in list(crowded.items())[:5])
        raise HubError(f"the Hub takes at most {FILES_PER_FOLDER:,} entries in a folder, and these hold more: "
                       f"{listed}; nothing was pushed. Build again with --files-per-folder {FILES_PER_FOLDER} "
                       "(the default), which puts the shards into sub-folders")
    plan = {"repo_id": repo_id, "files": len(files), "bytes": sum(size for _, size in files),
            "commits": len(batches(files)), "configs": [c["config_name"] for c in card_configs(out)],
            "paths": [p for p, _ in files]}
    plan["leakage"] = [{"benchmark": f.name, "images": f.images, "exact": len(f.exact), "near": len(f.near)}
                       for f in found]
    if options.dry_run:
        return plan
    card = out / "README.md"
    pushed_card = with_leakage(retarget_card(card.read_text(encoding="utf-8"), repo_id, options.gate), found,
                               options.allow_leakage)
    try:  # the card is sent as it is pushed; the local one becomes it only once the push is complete
        done = _upload(out, repo_id, options, files, pushed_card.encode("utf-8"))
    except Exception as exc:
        raise HubError(f"the push failed, the local card is unchanged; run it again to send what had not landed: "
                       f"{redact(str(exc))}") from None
    card.write_text(pushed_card, encoding="utf-8")  # the folder and the repo end byte-identical
    info = done.info
    plan.update(commits=done.commits, sent=done.sent, skipped=done.skipped, commit=getattr(info, "oid", None),
                url=getattr(info, "commit_url", None), pr_url=done.pr_url)
    return plan


def _upload(out: Path, repo_id: str, options: PushOptions, files: list[tuple[str, int]], card: bytes) -> Pushed:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=options.private or None, exist_ok=True)
    if options.gate is not None:
        api.update_repo_settings(repo_id, gated=options.gate.mode, repo_type="dataset")  # type: ignore[arg-type]
    return commit_all(api, repo_id, out, files, {"README.md": card}, options.message or f"Upload {out.name}",
                      revision=options.revision, create_pr=options.create_pr)


def pull(repo_id: str, out: Path, config: str | None = None, revision: str | None = None) -> list[Problem]:
    """Download a pushed dataset (or one config of it), then verify it."""
    from huggingface_hub import snapshot_download

    if config not in (None, "all") and not NAME.match(config):
        raise HubError(f"config {config!r} is not a plain name ([A-Za-z0-9_]+)")
    patterns = ["README.md", BUILD_JSON, "rejects.jsonl"]
    patterns += [f"{spec.folder}/**" if config in (None, "all") else f"{spec.folder}/{config}/*"
                 for spec in FORMATS.values()]
    snapshot_download(repo_id, repo_type="dataset", local_dir=out, revision=revision, allow_patterns=patterns)
    return verify(out, config=config)
