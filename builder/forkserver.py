"""Start the local engine's forkserver early, with what every worker uses loaded once in it.

Importing the pipeline (numpy, Pillow, nibabel, the codecs, ...) takes most of a second. Without this, every
worker process imports it again after the build has started; with it, the forkserver imports it once, beside
the main process's own start-up (on another core), and each worker is a fork of that loaded process. The
first units wait for the forkserver, so it loads what every worker uses and no more (:func:`load`): pydicom
(a third of a second) loads in the workers that read DICOM.

It sits at the top of the package, outside the engines package (whose registry imports the pipeline), and
imports nothing heavy, so the CLI can call it first.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing
import os
import sys
from multiprocessing import forkserver

__all__ = ["PRELOAD", "leave_at_exit", "load", "start_forkserver"]

#: the forkserver's one preload: :mod:`builder.preload` calls :func:`load` and :func:`leave_at_exit`
PRELOAD = ["builder.preload"]
#: used where installed (ISA-L gzip and PNG deflate; OpenCV is imported through builder.imaging)
OPTIONAL = ("isal.igzip",)


def start_forkserver() -> None:
    """Start the forkserver now (idempotent); it preloads the pipeline while the caller goes on."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()


def load() -> None:
    """Import what every worker uses, then settle the collector (cheap once done).

    The pipeline (numpy, Pillow, the readers' registry), nibabel without pydicom (:func:`builder.imaging.nibabel`),
    OpenCV and ISA-L where installed. Settling (:func:`builder.gcpolicy.settle`) freezes what is loaded: the
    standard library's advice for a process that forks, so the children's collections never touch (and copy)
    the parent's pages.
    """
    importlib.import_module("builder.pipeline.process")
    from builder.gcpolicy import settle
    from builder.imaging import nibabel, opencv

    nibabel()
    opencv()
    for name in OPTIONAL:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    settle()


def leave_at_exit() -> None:
    """The forkserver's exit skips the interpreter's teardown (only ever called in the forkserver).

    It holds nothing to save, yet tearing down every module it loaded took a fifth of a second after the
    build's last row, while whatever reads the build's output (a pipe, ``subprocess.run``) waited for the
    forkserver to close its copy of it. Registered last, this handler runs first: it flushes and exits.
    """
    atexit.register(_leave)


def _leave() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no stream, or a closed one
            stream.flush()
    os._exit(0)
