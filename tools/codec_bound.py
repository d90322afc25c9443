"""The codec bound of a build: its inputs decoded as the build decodes them and PNG-encoded, nothing else.

    from codec_bound import codec_bound
    rows_per_second = codec_bound(manifest, processes=2)

For every unit of the manifest, each record the source yields (the file read and decoded, sliced, windowed:
the source's own ``records``) has its image, and its stored mask where it has a label map, encoded with the
PNG encoder a build picks. No ROIs, measurements, text, rows or Parquet. The processes are started and have
imported the pipeline before the clock starts, so the figure is steady-state work, comparable with the rows/s
a build reports in ``build.json``. Used by ``bench_atlas.py`` and ``bench_build.py``.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

__all__ = ["codec_bound"]


def _warm() -> None:
    from builder import forkserver

    forkserver.load()  # what a build's workers have loaded before their first unit


def _unit_codecs(unit: Any) -> int:
    from builder import pngcodec
    from builder.pipeline.roi import as_labels, stored_mask
    from builder.pipeline.sources import ADAPTERS

    encoder = pngcodec.choose("auto")
    rows = 0
    for record in ADAPTERS[unit.spec.format].records(unit):
        if record.reject is not None:
            continue
        pngcodec.encode(record.pixels, 1, encoder)
        if record.labelmap is not None:
            labels = as_labels(record.labelmap)
            present = np.unique(labels[labels > 0])
            if present.size:
                pngcodec.encode(stored_mask(labels, present), 1, encoder)
        rows += 1
    return rows


def codec_bound(manifest: Path, processes: int) -> float:
    """Rows/s of decoding + PNG encoding alone, in ``processes`` processes."""
    from builder.pipeline.build.collect import collect
    from builder.pipeline.sources.manifest import load_manifest
    from builder.privacy import load_id_key

    units, _ = collect(load_manifest(manifest), load_id_key(None))
    with multiprocessing.get_context("forkserver").Pool(processes, initializer=_warm) as pool:
        pool.map(time.sleep, [0.5] * processes, chunksize=1)  # every process is up and has imported
        start = time.perf_counter()
        rows = sum(pool.imap_unordered(_unit_codecs, units, chunksize=max(1, len(units) // (40 * processes))))
        return rows / (time.perf_counter() - start)
