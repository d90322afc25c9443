"""Start the local engine's forkserver early, with the pipeline imported once in it.

Importing the pipeline (numpy, pyarrow, nibabel, pydicom, deid, datasets, ...) takes
seconds. Without this, every worker process imports it again after the build has
started; with it, the forkserver imports it once, beside the main process's own
start-up (on another core), and each worker is a fork of that loaded process.
It sits at the top of the package, outside the engines package (whose registry imports the
pipeline), and imports nothing heavy, so the CLI can call it first.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver

__all__ = ["PRELOAD", "start_forkserver"]

#: what workers import: the pipeline, the readers' libraries (imported lazily by the pipeline itself) and the
#: fastest PNG encoder; one not installed is skipped (the forkserver ignores an ImportError). Last, the
#: collector is settled (:mod:`builder.settled`) before the first fork.
PRELOAD = ["builder.pipeline.process", "nibabel", "pydicom", "isal.igzip", "cv2", "builder.settled"]


def start_forkserver() -> None:
    """Start the forkserver now (idempotent); it preloads the pipeline while the caller goes on."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
