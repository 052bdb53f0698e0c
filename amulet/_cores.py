"""How many cores this process may use and how many other work keeps busy now; torch-free, so that a process
that only decides thread counts (``amulet worker``'s supervisor) does not load torch.

:func:`amulet.utils.configure_threads` and :func:`amulet.utils.layer1_threads` apply these counts to torch;
:mod:`amulet.utils._threads` says why the automatic count leaves busy cores alone.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

__all__ = ["automatic_threads", "available_cores", "busy_cores", "thread_count"]

_LOADAVG = Path("/proc/loadavg")
#: Samples of the runnable-task count (their median is used) and the pause between them: one sample is a
#: snapshot that a short burst or pause elsewhere can dominate.
_SAMPLES = 5
_SAMPLE_PAUSE_S = 0.01
#: How long one reading of the load is reused (layer 1 asks before every training and attack).
_CACHE_S = 5.0
_cache: tuple[float, float] | None = None


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform reports it, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _runnable_now() -> int | None:
    """Runnable tasks on the machine now, the caller included (Linux: the 4th field of /proc/loadavg)."""
    try:
        return int(_LOADAVG.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def busy_cores() -> float:
    """Cores kept busy by other work right now: runnable tasks other than the caller (median of a few samples),
    or, where the kernel does not report them, the 1-minute load average; 0 when neither is known."""
    global _cache
    now = time.monotonic()
    if _cache is not None and now - _cache[0] < _CACHE_S:
        return _cache[1]
    samples = []
    for i in range(_SAMPLES):
        runnable = _runnable_now()
        if runnable is None:
            break
        samples.append(max(0, runnable - 1))  # the reading thread is runnable itself
        if i < _SAMPLES - 1:
            time.sleep(_SAMPLE_PAUSE_S)
    if samples:
        busy = float(statistics.median(samples))
    elif hasattr(os, "getloadavg"):
        busy = float(os.getloadavg()[0])
    else:
        busy = 0.0
    _cache = (now, busy)
    return busy


def automatic_threads(processes: int = 1) -> int:
    """The automatic intra-op thread count: this process's share of the cores, capped by the free ones.

    Args:
        processes: How many processes of this kind share the machine (e.g. a worker's concurrency).

    Returns:
        ``max(1, min(available_cores() // processes, available_cores() - busy_cores()))``.
    """
    cores = available_cores()
    share = max(1, cores // processes)
    free = int(cores - busy_cores())
    return max(1, min(share, free))


def thread_count(num_threads: int, processes: int = 1) -> int:
    """The intra-op thread count ``num_threads`` means (0: the cores shared evenly among ``processes``).

    Raises:
        ValueError: ``num_threads`` is negative or ``processes`` is below 1.
    """
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 (0 = automatic). Got {num_threads} instead.")
    if processes < 1:
        raise ValueError(f"processes must be >= 1. Got {processes} instead.")
    return num_threads or max(1, available_cores() // processes)
