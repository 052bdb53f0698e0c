from __future__ import annotations

import pytest

from amulet.progress import CallbackProgress, Progress, ProgressEvent, SilentProgress, TqdmProgress, resolve_progress


def test_track_emits_start_advance_finish_in_order():
    events: list[ProgressEvent] = []
    progress = CallbackProgress(events.append)
    assert list(progress.track(["a", "b"], "task", description="two items")) == ["a", "b"]
    assert [(e.kind, e.completed, e.total) for e in events] == [
        ("start", 0, 2),
        ("advance", 1, 2),
        ("advance", 2, 2),
        ("finish", 2, 2),
    ]
    assert events[0].description == "two items"


def test_eta_is_computed_from_rate_and_reaches_zero():
    events: list[ProgressEvent] = []
    progress = CallbackProgress(events.append)
    progress.start("t", total=4)
    progress.advance("t", 2, loss=0.5)
    advance = events[-1]
    # half done after `elapsed` seconds: the other half takes as long again at the same rate
    assert advance.eta == pytest.approx(advance.elapsed)
    assert advance.info == {"loss": 0.5}
    progress.finish("t")
    assert events[-1].eta == 0.0


def test_advance_without_start_starts_the_task():
    events: list[ProgressEvent] = []
    CallbackProgress(events.append).advance("implicit")
    assert [e.kind for e in events] == ["start", "advance"]
    assert events[-1].total is None and events[-1].eta is None


def test_track_finishes_even_when_the_loop_breaks():
    events: list[ProgressEvent] = []
    progress = CallbackProgress(events.append)
    for _ in progress.track(range(10), "t"):
        break
    assert events[-1].kind == "finish"


def test_resolve_progress_defaults_to_silent(capsys: pytest.CaptureFixture[str]):
    progress = resolve_progress(None)
    assert isinstance(progress, SilentProgress)
    list(progress.track(range(3), "t"))
    assert capsys.readouterr() == ("", "")
    explicit = Progress()
    assert resolve_progress(explicit) is explicit


def test_tqdm_progress_writes_a_bar_to_stderr(capsys: pytest.CaptureFixture[str]):
    list(TqdmProgress().track(range(3), "t", description="bar"))
    assert "bar" in capsys.readouterr().err
