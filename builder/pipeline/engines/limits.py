"""Bounded memory per worker: an address-space limit on top of what the worker already holds.

Readers check declared sizes before inflating and compute in narrow types; what
still slips through (a codec that allocates from a lying header) meets this
limit: the allocation fails, a ``MemoryError`` becomes a reject line, or the
worker dies and the pool rejects the file after one retry alone. The limit is
the worker's address space after start-up plus ``TripletOptions.memory_limit``
(default 4 GiB: two workers and the main process fit a 24 GiB machine).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

__all__ = ["address_space", "limit_memory", "memory_limit"]


def address_space() -> int:
    """This process's virtual memory size in bytes (0 where /proc is absent)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def limit_memory(extra: int) -> tuple[int, int] | None:
    """Cap this process's address space at its current size plus ``extra``; return the previous limits."""
    try:
        import resource
    except ImportError:
        return None
    current = address_space()
    if extra <= 0 or current == 0:
        return None
    previous = resource.getrlimit(resource.RLIMIT_AS)
    soft = current + extra
    hard = previous[1]
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return previous


@contextmanager
def memory_limit(extra: int) -> Iterator[None]:
    """The limit for the duration of a block (a build run in this process), then the previous one."""
    previous = limit_memory(extra)
    try:
        yield
    finally:
        if previous is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, previous)
