"""How many threads torch uses inside one operation (intra-op threads), from the settings and the machine's load.

Amulet's work is mostly many small models (shadow populations, attack models, tabular MLPs): their
operations are too small to gain much from several threads, and on a machine whose cores are busy
(a Celery worker running several tasks, a shared CI runner, the API and dashboard next to the worker)
OpenMP threads that wait for each other waste the cores. ``benchmarks/bench_threads.py`` measures it: on
the project's 2-core machine with two competing busy processes, a census assessment ran several times
faster with one intra-op thread than with two, and equally fast when the machine was idle.

The automatic setting (``AMULET_NUM_THREADS=0``, the default) therefore uses the cores that are free when the
work starts: the machine's cores (those this process may run on) shared among ``processes``, but never more
than the cores not already running someone else's work, counted from the kernel's count of runnable tasks at
that moment (``/proc/loadavg``; the 1-minute load average elsewhere), and never fewer than one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch

from amulet._cores import automatic_threads, available_cores, busy_cores, thread_count
from amulet.settings import get_settings

__all__ = [
    "automatic_threads",
    "available_cores",
    "busy_cores",
    "configure_threads",
    "layer1_threads",
    "single_thread",
    "thread_count",
]

logger = logging.getLogger(__name__)


def configure_threads(num_threads: int | None = None, *, processes: int = 1) -> int:
    """Set torch's intra-op thread count for this process and return it.

    Args:
        num_threads: Threads to use; ``None`` reads the ``num_threads`` setting (``AMULET_NUM_THREADS``);
            0 means automatic (:func:`automatic_threads`): the machine's cores shared evenly among ``processes``,
            capped by the cores other work leaves free now.
        processes: How many processes (or tasks) of this kind run at once on the machine, e.g. a worker's
            concurrency; only used when ``num_threads`` is 0.

    Returns:
        The thread count now in effect.

    Raises:
        ValueError: ``num_threads`` is negative or ``processes`` is below 1.
    """
    if num_threads is None:
        num_threads = get_settings().num_threads
    threads = thread_count(num_threads, processes)
    if num_threads == 0:
        threads = min(threads, automatic_threads(processes))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        logger.info("torch intra-op threads: %d", threads)
    return threads


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread, then restore the previous count.

    For work made of many tiny operations (an attack MLP of a few thousand weights), where waking other
    threads costs more than they save, and far more on a busy machine.
    """
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


#: Largest model (parameters) that layer 1 trains with one thread when the setting is automatic.
SMALL_MODEL_PARAMETERS = 2_000_000


@contextlib.contextmanager
def layer1_threads(model: Any = None) -> Iterator[int]:
    """Torch threads for a layer-1 training or attack, restored afterwards; yields the count in effect.

    Layer 1 runs inside the user's own process, so the count is only changed for the block: an explicit
    ``num_threads`` setting (``AMULET_NUM_THREADS=N``) applies N, as the engine does; the automatic setting
    (0, the default) uses one thread when ``model`` is small (at most :data:`SMALL_MODEL_PARAMETERS`
    parameters: tabular MLPs, attack models). Always one, not "the free cores": a second thread slows training
    several-fold on a busy machine (DP-SGD on census: 74 s with 2 threads, 14-30 s with 1, load average 8 on 2
    cores), and although on an idle machine it makes the layer-1 matrix's cells 1.05-1.6x faster, two threads
    round differently from one (census LinearNet m1: 82.0 % test accuracy instead of 81.9 %), so a count that
    followed the load would give the same seed different numbers on a busy and an idle machine. Otherwise (a
    larger model, or none given) the caller's count capped by :func:`automatic_threads` (the cores other work
    leaves free now): never more threads than the caller chose, and fewer on a busy machine, where torch's
    default of one thread per core waits on the busiest core.
    """
    before = torch.get_num_threads()
    wanted = get_settings().num_threads
    if not wanted:
        small = model is not None and sum(p.numel() for p in model.parameters()) <= SMALL_MODEL_PARAMETERS
        wanted = 1 if small else min(before, automatic_threads())
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
