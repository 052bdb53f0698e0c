"""The one progress interface of Amulet.

Long-running engine code (training loops, attacks, whole assessments) reports progress through a
:class:`Progress` object passed as the keyword-only ``progress=`` argument. The default is
:class:`SilentProgress`: library calls print nothing. The CLI passes a :class:`TqdmProgress`; the worker
passes a :class:`CallbackProgress` that writes events to SQL.

A task is identified by a key (``"train"``, ``"pgd"``, ``"cell/adv_training/evasion"``...). Code reports
``start`` (with a total when known), ``advance`` and ``finish``; :meth:`Progress.track` wraps an iterable.

Example:
    >>> from amulet.progress import CallbackProgress
    >>> events = []
    >>> progress = CallbackProgress(events.append)
    >>> for _ in progress.track(range(3), "epochs", description="training"):
    ...     pass
    >>> [(e.kind, e.completed) for e in events]
    [('start', 0), ('advance', 1), ('advance', 2), ('advance', 3), ('finish', 3)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

__all__ = ["CallbackProgress", "Progress", "ProgressEvent", "SilentProgress", "TqdmProgress", "resolve_progress"]

T = TypeVar("T")


@dataclass(frozen=True)
class ProgressEvent:
    """One progress update.

    Attributes:
        kind: ``"start"``, ``"advance"`` or ``"finish"``.
        key: The task key.
        completed: Units done so far.
        total: Units expected, or None when unknown.
        description: Human text for the task.
        info: Extra values (e.g. the current loss), JSON-serialisable.
        elapsed: Seconds since the task started.
        eta: Estimated seconds left (None when unknown).
    """

    kind: Literal["start", "advance", "finish"]
    key: str
    completed: int
    total: int | None
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0
    eta: float | None = None


@dataclass
class _TaskState:
    total: int | None
    description: str
    started: float
    completed: int = 0


class Progress:
    """Base progress reporter: keeps task state and turns calls into :class:`ProgressEvent` objects.

    Subclasses override :meth:`emit`. The base class itself is usable and silent.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, _TaskState] = {}

    def emit(self, event: ProgressEvent) -> None:
        """Receive one event. The base implementation ignores it."""

    def start(self, key: str, total: int | None = None, description: str = "") -> None:
        """Begin (or restart) task ``key`` with ``total`` units."""
        self._tasks[key] = _TaskState(total=total, description=description or key, started=time.monotonic())
        self.emit(ProgressEvent("start", key, 0, total, description or key))

    def advance(self, key: str, n: int = 1, **info: Any) -> None:
        """Record ``n`` more units done for ``key`` (``info`` travels with the event)."""
        state = self._tasks.get(key)
        if state is None:
            self.start(key)
            state = self._tasks[key]
        state.completed += n
        elapsed = time.monotonic() - state.started
        eta = None
        if state.total and state.completed:
            eta = max(0.0, elapsed / state.completed * (state.total - state.completed))
        self.emit(ProgressEvent("advance", key, state.completed, state.total, state.description, info, elapsed, eta))

    def finish(self, key: str, **info: Any) -> None:
        """Mark ``key`` done."""
        state = self._tasks.pop(key, None)
        completed = state.completed if state else 0
        total = state.total if state else None
        elapsed = time.monotonic() - state.started if state else 0.0
        self.emit(
            ProgressEvent("finish", key, completed, total, state.description if state else key, info, elapsed, 0.0)
        )

    def track(self, iterable: Iterable[T], key: str, total: int | None = None, description: str = "") -> Iterator[T]:
        """Yield from ``iterable``, advancing ``key`` after each item and finishing at the end."""
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.start(key, total, description)
        try:
            for item in iterable:
                yield item
                self.advance(key)
        finally:
            self.finish(key)


class SilentProgress(Progress):
    """Reports nothing; the default for library calls."""


class CallbackProgress(Progress):
    """Forwards every event to ``callback`` (used by the worker to write progress to SQL)."""

    def __init__(self, callback: Callable[[ProgressEvent], None]) -> None:
        super().__init__()
        self.callback = callback

    def emit(self, event: ProgressEvent) -> None:
        self.callback(event)


class TqdmProgress(Progress):
    """One tqdm bar per task, for terminals."""

    def __init__(self, *, leave: bool = False) -> None:
        super().__init__()
        self.leave = leave
        self._bars: dict[str, Any] = {}

    def emit(self, event: ProgressEvent) -> None:
        from tqdm.auto import tqdm

        if event.kind == "start":
            old = self._bars.pop(event.key, None)
            if old is not None:
                old.close()
            self._bars[event.key] = tqdm(total=event.total, desc=event.description, leave=self.leave)
        elif event.kind == "advance":
            bar = self._bars.get(event.key)
            if bar is not None:
                bar.n = event.completed
                if event.info:
                    bar.set_postfix(
                        {k: v for k, v in event.info.items() if isinstance(v, (int, float, str))}, refresh=False
                    )
                bar.refresh()
        else:
            bar = self._bars.pop(event.key, None)
            if bar is not None:
                bar.close()


def resolve_progress(progress: Progress | None) -> Progress:
    """Return ``progress`` or a :class:`SilentProgress` when it is None."""
    return progress if progress is not None else SilentProgress()
