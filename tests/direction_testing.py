"""The one assertion of the direction tests (``*_direction.py``): a deliberately vulnerable target scores as more
susceptible than a safer one, in the direction the risk's headline metric declares (``higher_is_riskier``), so a
flipped sign, a swapped tail or a wrong threshold in an attack breaks the test instead of passing it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from amulet import registry
from amulet.progress import SilentProgress
from amulet.registry import CellContext


def assert_riskier(risk: str, metric: str, riskier: float, safer: float, margin: float) -> None:
    """``riskier`` is more susceptible than ``safer`` by more than ``margin``, as ``risk.metric`` declares."""
    higher = registry.get_risk(risk).metric(metric).higher_is_riskier
    gap = riskier - safer if higher else safer - riskier
    assert gap > margin, f"{risk}.{metric}: riskier={riskier:.4f} safer={safer:.4f} (higher_is_riskier={higher})"


def riskier_in(risk: str) -> Callable[[str, float, float, float], None]:
    """:func:`assert_riskier` for one risk: ``assert_riskier = riskier_in("evasion")``."""

    def check(metric: str, riskier: float, safer: float, margin: float) -> None:
        assert_riskier(risk, metric, riskier, safer, margin)

    return check


def cell_context(**fields: Any) -> CellContext:
    """A layer-2 :class:`~amulet.registry.CellContext` on the CPU with silent progress (the direction tests'
    common case); ``fields`` are CellContext's own fields (target, model_factory, recipe, dataset, ...)."""
    return CellContext(**{"device": torch.device("cpu"), "progress": SilentProgress(), **fields})
