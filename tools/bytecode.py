"""Compile the project's bytecode before a benchmark times whole processes.

``pip install`` of a wheel compiles every module; a source checkout compiles each
on its first import and caches it, unless ``PYTHONDONTWRITEBYTECODE`` is set (as on
some CI machines), when every process compiles the project's ~75 modules again
(about 0.2 s each time). Benchmarks call :func:`compile_project` so a timed build
starts as an installed one does; the cached files are what Python itself would write.
"""

from __future__ import annotations

import compileall
from pathlib import Path

__all__ = ["compile_project"]

ROOT = Path(__file__).resolve().parent.parent


def compile_project() -> None:
    compileall.compile_dir(ROOT / "builder", quiet=1)
    compileall.compile_file(ROOT / "medtrinity_25m.py", quiet=1)
