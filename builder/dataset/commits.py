"""``push``'s commits: a dataset's files in batches, what the Hub already holds skipped, the card last.

A build of 25M rows is thousands of shards: one commit of them all is one that the
Hub may refuse and that a lost connection loses whole. The files go in commits of
at most :data:`FILES_PER_COMMIT` files and :data:`BYTES_PER_COMMIT` bytes, shards
first and ``README.md`` with ``build.json`` in the last one, so the repository
shows a dataset (configs, viewer) only once every file it names is there. Before
each commit the Hub is asked what it holds of the batch (``get_paths_info``): a
file whose content is there already (an LFS file by the sha256 ``build.json``
gives for it, a small file by its git blob id) is not sent again. A push killed
at any moment, run again, sends only what had not landed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from builder.layout import BUILD_JSON, read_build_json, sha256_file

__all__ = ["BYTES_PER_COMMIT", "FILES_PER_COMMIT", "LAST", "Pushed", "batches", "commit_all"]

FILES_PER_COMMIT = 100  # the Hub's advice for large uploads: commits of about a hundred files
BYTES_PER_COMMIT = 8 * 2**30  # what one lost commit costs to send again, at most
LAST = ("README.md", BUILD_JSON)  # the card and the listing: once the files they name are all there


@dataclass
class Pushed:
    """What a push did: commits made, files sent, files the Hub held already, the last commit."""

    commits: int = 0
    sent: int = 0
    skipped: int = 0
    info: Any = None
    pr_url: str | None = None


def batches(files: list[tuple[str, int]], max_files: int = FILES_PER_COMMIT,
            max_bytes: int = BYTES_PER_COMMIT) -> list[list[str]]:
    """The commits of a push: (path, bytes) in order, cut by count and size; the card and build.json last."""
    found: list[list[str]] = []
    batch: list[str] = []
    size = 0
    for path, nbytes in files:
        if path in LAST:
            continue
        if batch and (len(batch) >= max_files or size + nbytes > max_bytes):
            found.append(batch)
            batch, size = [], 0
        batch.append(path)
        size += nbytes
    last = [path for path, _ in files if path in LAST]
    return [b for b in (*found, batch, last) if b]


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _landed(entry: Any, local: Path, sha256: str | None, content: bytes | None) -> bool:
    """Whether the Hub's ``entry`` (a ``RepoFile``) holds ``content``, or else the content of ``local``."""
    lfs = getattr(entry, "lfs", None)
    if lfs is not None:
        remote = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        local_sha = hashlib.sha256(content).hexdigest() if content is not None else sha256 or sha256_file(local)
        return bool(remote == local_sha)
    return getattr(entry, "blob_id", None) == _git_oid(content if content is not None else local.read_bytes())


def _missing(api: Any, repo_id: str, revision: str | None, out: Path, paths: list[str],
             shas: dict[str, str], contents: dict[str, bytes]) -> list[str]:
    """The paths of a batch whose content the Hub does not hold yet."""
    from huggingface_hub.errors import RevisionNotFoundError

    try:
        remote = {e.path: e for e in api.get_paths_info(repo_id, paths, revision=revision, repo_type="dataset")}
    except RevisionNotFoundError:  # a branch that does not exist yet holds nothing
        return paths
    return [p for p in paths if p not in remote or not _landed(remote[p], out / p, shas.get(p), contents.get(p))]


def _operations(out: Path, paths: list[str], contents: dict[str, bytes]) -> Iterator[Any]:
    from huggingface_hub import CommitOperationAdd

    for path in paths:
        source: Any = contents[path] if path in contents else str(out / path)
        yield CommitOperationAdd(path_in_repo=path, path_or_fileobj=source)


def commit_all(api: Any, repo_id: str, out: Path, files: list[tuple[str, int]], contents: dict[str, bytes],
               message: str, revision: str | None = None, create_pr: bool = False) -> Pushed:
    """Commit ``files`` of ``out`` in batches (``contents``: files sent as these bytes instead, the card).

    ``create_pr``: a pull request is opened first and every commit goes to its branch."""
    shas = {s["path"]: s["sha256"] for s in (read_build_json(out) or {}).get("shards", []) if "sha256" in s}
    planned = batches(files)
    pushed = Pushed()
    if create_pr:
        pr = api.create_pull_request(repo_id, title=message, repo_type="dataset")
        pushed.pr_url, revision = pr.url, pr.git_reference
    for number, paths in enumerate(planned, 1):
        todo = _missing(api, repo_id, revision, out, paths, shas, contents)
        pushed.skipped += len(paths) - len(todo)
        if not todo:
            continue
        title = message if len(planned) == 1 else f"{message} (part {number} of {len(planned)})"
        pushed.info = api.create_commit(repo_id, list(_operations(out, todo, contents)), commit_message=title,
                                        repo_type="dataset", revision=revision)
        pushed.commits += 1
        pushed.sent += len(todo)
    return pushed
