"""Publishing's parts: a stream's small staged shards merged into shards of the size the Hub wants.

Each work group writes its own shards, so a group of small images gives small
shards (and WebDataset's lanes split them further): a 25M-row build of 1,000-unit
groups would publish tens of thousands of files of a few MB. At publishing, the
consecutive staged shards of one (format, config, split) and lane are merged,
in group order, up to the build's ``--shard-rows`` and ``--shard-mb``: one
public shard each part. The parts follow from the journal alone (each staged
shard's rows and bytes), so a resumed build, and one run on Ray, publish the
same shards. A part of one shard is renamed; a part of several is written
under a hidden name by its format's ``merge``, renamed, and only then are its
staged shards removed, so a kill at any moment is taken up by the next run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

from builder.formats.base import ShardLimits, finalize, temp_path
from builder.layout import sha256_file

__all__ = ["entry", "parts", "publish_part"]

#: Only a shard of at most a quarter of the limits is merged: larger ones are published as they are (renamed), so
#: publishing copies only the small shards' bytes, never a whole large build again.
SMALL = 4
_LANE = re.compile(r"-l(\d+)-p\d+\.[^/]+$")


def _lane(staged: str) -> str:
    match = _LANE.search(staged)
    return match.group(1) if match else ""


def parts(shards: list[dict[str, Any]], limits: ShardLimits, mergeable: bool = True) -> list[list[dict[str, Any]]]:
    """The staged shards of one stream (in group order) as parts: consecutive small shards of a lane while their
    rows and bytes stay within ``limits``; in the order of each part's first shard. A shard over a quarter of the
    limits, one without its size (a journal of an older version), or of a format that cannot merge, stays alone."""
    found: list[list[dict[str, Any]]] = []
    open_parts: dict[str, list[dict[str, Any]]] = {}
    for shard in shards:
        lane, size = _lane(shard["staged"]), shard.get("bytes", limits.max_bytes)
        current = open_parts.get(lane)
        small = shard["rows"] * SMALL <= limits.max_rows and size * SMALL <= limits.max_bytes
        if mergeable and small and current and (sum(s["rows"] for s in current) + shard["rows"] <= limits.max_rows
                        and sum(s.get("bytes", limits.max_bytes) for s in current) + size <= limits.max_bytes):
            current.append(shard)
            continue
        part = [shard]
        found.append(part)
        open_parts[lane] = part if small else []
    return found


def entry(members: list[dict[str, Any]], final: str, published: Path | None = None) -> dict[str, Any]:
    """build.json's entry of a part published at ``final``; a merged part's checksum and size are read from its
    ``published`` file (before publishing: its size is its shards')."""
    first = members[0]
    found = {"path": final, "format": first["format"], "modality": first["modality"], "split": first["split"],
             "rows": sum(m["rows"] for m in members)}
    if len(members) == 1:
        found.update({k: first[k] for k in ("bytes", "sha256") if k in first})
    elif published is not None:
        found.update(bytes=published.stat().st_size, sha256=sha256_file(published))
    elif "bytes" in first:
        found["bytes"] = sum(m.get("bytes", 0) for m in members)
    return found


def publish_part(root: Path, members: list[dict[str, Any]], final: Path,
                 merge: Callable[[list[Path], Path], None]) -> None:
    """Put one part at ``final``; idempotent. Raise ``FileNotFoundError`` when neither the part nor its shards are
    there."""
    sources = [root / m["staged"] for m in members]
    present = [path for path in sources if path.is_file()]
    if len(sources) == 1:
        if present:  # staged whole and synced already: renamed
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(present[0], final)
        elif not final.is_file():
            raise FileNotFoundError(members[0]["staged"])
        return
    if len(present) == len(sources):
        final.parent.mkdir(parents=True, exist_ok=True)
        merge(sources, temp_path(final))
        finalize(temp_path(final), final)
    elif not final.is_file():  # some staged shards gone, and no part made of them
        raise FileNotFoundError(", ".join(m["staged"] for m in members))
    for path in present:  # the part is published: its staged shards are no longer needed
        path.unlink()
