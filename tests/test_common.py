"""Common checks of every registered attack, defense and metric (as scikit-learn's ``check_estimator``).

For each registered class: every constructor argument is constrained in ``_parameter_constraints``;
construction stores each argument unchanged under its own name; a value no constraint accepts is refused
at construction with the standard message (:data:`amulet.exceptions.PARAM_MESSAGE`) naming the argument;
the registry's parameters model agrees with the class (``params_problems``: defaults, bounds, every
deliberate override stated once with its reason). For each registered metric: its risk exists, it is
exported by its risk's ``metrics`` package and its docstring documents every argument.

The valid values a constructor gets are built from its constraints (a tiny model, loader, optimizer,
arrays...), so a new class is covered without adding anything here; only an argument whose valid value
depends on another one (a column name the data must have) is given in ``SAMPLE_ARGUMENTS``.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from amulet import registry
from amulet._validation import InstanceOf, Interval, IsCallable, Options, constraints_accept
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.registry import derived_from, params_problems

ENTRIES = [("attack", a) for a in registry.attacks()] + [("defense", d) for d in registry.defenses()]
CLASSES = sorted({info.cls for _, info in ENTRIES if info.cls is not None}, key=lambda c: c.__name__)

#: Arguments whose valid value depends on other arguments (the constraints describe each argument alone): per
#: class, the values its construction gets instead of the ones built from the constraints, as scikit-learn's
#: ``_construct_instance`` does for estimators with required arguments. Every other argument still comes from
#: its constraints, each value given here must satisfy them (test_the_generated_values_satisfy_their_constraints),
#: and the bad-value test still tries a refused value for every constrained argument.
_DISTRIBUTION_INFERENCE_SAMPLES: dict[str, Any] = {
    # the kit's z arrays have one column, which sensitive_columns must name; filter_column is one of those names
    "sensitive_columns": ["sex"],
    "filter_column": "sex",
    # an architecture initialize_model builds (the constraints say only "a string": the set grows at run time)
    "model_arch": "linearnet",
    "model_capacity": "m1",
}
SAMPLE_ARGUMENTS: dict[str, dict[str, Any]] = {
    "SuriEvans2022": _DISTRIBUTION_INFERENCE_SAMPLES,
    "WhiteBoxPIM": _DISTRIBUTION_INFERENCE_SAMPLES,
}


def _ids(entry: tuple[str, Any]) -> str:
    return f"{entry[0]}:{entry[1].key}"


def _arguments(cls: type) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


# --- valid values, built from the constraints ------------------------------------------------------------


class _Kit:
    """One tiny model, loader, optimizer... shared by every argument of one construction."""

    def __init__(self, tmp_path: Path):
        gen = torch.Generator().manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        x = torch.rand(8, 4, generator=gen)
        y = torch.tensor([0, 1] * 4)
        z = torch.tensor([[0], [1]] * 4)
        self.dataset = TensorDataset(x, y, z)
        self.loader = DataLoader(self.dataset, batch_size=4)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.tmp_path = tmp_path

    def instance_of(self, types: tuple[type, ...]) -> Any:
        samples: list[Any] = [
            self.model,
            self.loader,
            self.optimizer,
            self.dataset,
            "cpu",
            self.tmp_path,
            np.array([[0.0], [1.0]] * 4),
            torch.tensor([[0.0], [1.0]] * 4),
            (1, 4),
            [1, 4],
            True,
            nn.CrossEntropyLoss(),
        ]
        for sample in samples:
            if isinstance(sample, types):
                return sample
        for tp in types:
            try:
                return tp()  # a dataclass or a plain type with defaults (e.g. a layout)
            except TypeError:
                continue
        raise LookupError(f"no sample value of {types}")


def _valid(kit: _Kit, constraints: list[Any], default: Any) -> Any:
    if default is not inspect.Parameter.empty and constraints_accept(constraints, default):
        return default
    for c in constraints:
        if c is None:
            return None
        if isinstance(c, Interval):
            low = 0 if c.low is None else c.low
            value = low if c.closed in ("both", "left") else (low + 1 if c.high is None else (low + c.high) / 2)
            return int(value) if c.kind is int else float(value)
        if isinstance(c, Options):
            return sorted(c.values, key=str)[0]
        if isinstance(c, IsCallable):
            return lambda *args, **kwargs: None
        if isinstance(c, InstanceOf):
            try:
                return kit.instance_of(c.types if isinstance(c.types, tuple) else (c.types,))
            except LookupError:
                continue
    raise LookupError(f"no valid value for constraints {constraints}")


class _Unknown:
    """A value of a type no constraint names."""

    def __repr__(self) -> str:
        return "<unknown>"


_BAD_CANDIDATES: list[Any] = [_Unknown(), "not a valid value", -(10**9), 10**12, 0.5, math.nan]


def _bad(constraints: list[Any]) -> Any:
    for candidate in _BAD_CANDIDATES:
        if not constraints_accept(constraints, candidate):
            return candidate
    return inspect.Parameter.empty


def _valid_kwargs(cls: type, kit: _Kit) -> dict[str, Any]:
    constraints = cls._parameter_constraints  # type: ignore[attr-defined]
    samples = SAMPLE_ARGUMENTS.get(cls.__name__, {})
    return {
        name: samples[name] if name in samples else _valid(kit, constraints[name], p.default)
        for name, p in _arguments(cls).items()
    }


# --- the checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_constructor_argument_is_constrained(cls: type):
    constraints = getattr(cls, "_parameter_constraints", None)
    assert constraints is not None, f"{cls.__name__} declares no _parameter_constraints"
    missing = [name for name in _arguments(cls) if name not in constraints]
    assert not missing, f"{cls.__name__}: constructor arguments without constraints: {missing}"
    unknown = [name for name in constraints if name not in _arguments(cls)]
    assert not unknown, f"{cls.__name__}: constraints for arguments it does not take: {unknown}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_construction_stores_every_argument_unchanged(cls: type, tmp_path: Path):
    kwargs = _valid_kwargs(cls, _Kit(tmp_path))
    obj = cls(**kwargs)
    for name, value in kwargs.items():
        assert hasattr(obj, name), f"{cls.__name__} does not store {name!r}"
        stored = getattr(obj, name)
        assert stored is value or (type(stored) is type(value) and stored == value), (
            f"{cls.__name__}.{name} is {stored!r}, not the {value!r} it was given"
        )


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_a_bad_value_is_refused_with_the_standard_message(cls: type, tmp_path: Path):
    kit = _Kit(tmp_path)
    valid = _valid_kwargs(cls, kit)
    checked = 0
    for name, constraints in cls._parameter_constraints.items():  # type: ignore[attr-defined]
        bad = _bad(constraints)
        if bad is inspect.Parameter.empty:
            continue  # every candidate is acceptable (e.g. an unbounded float or None)
        expected = PARAM_MESSAGE.format(name=name, owner=cls.__name__, expected="", value=bad)
        head, tail = expected.split(" must be ")
        with pytest.raises(InvalidParameterError) as info:
            cls(**{**valid, name: bad})
        message = str(info.value)
        assert message.startswith(head + " must be "), f"{cls.__name__}({name}=...): {message}"
        assert message.endswith(tail.split(". ", 1)[1]), f"{cls.__name__}({name}=...): {message}"
        checked += 1
    assert checked, f"{cls.__name__}: no argument has a value its constraints refuse"


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_parameters_model_agrees_with_its_class(entry: tuple[str, Any]):
    _, info = entry
    assert info.cls is not None, f"{info.key} is registered without its layer-1 class"
    assert params_problems(info.params, info.cls) == []


@pytest.mark.parametrize("entry", ENTRIES, ids=_ids)
def test_every_override_is_explained_and_shown_in_the_catalog(entry: tuple[str, Any]):
    kind, info = entry
    source = registry.param_source(info.params)
    if source is None:
        assert not info.params.model_fields
        return
    for table in (source.overrides, source.engine_only, source.adapted):
        for field, reason in table.items():
            assert len(reason.split()) >= 4, f"{info.key}.{field}: give the reason in a sentence"
    listed = {e["key"]: e for e in registry.catalog()[f"{kind}s"]}[info.key]
    assert listed["param_overrides"] == dict(source.overrides)


@pytest.mark.parametrize("metric", registry.metrics(), ids=lambda m: m.key)
def test_every_metric_is_exported_and_documents_its_arguments(metric: registry.MetricInfo):
    registry.get_risk(metric.risk)
    package = importlib.import_module(f"amulet.{metric.risk}.metrics")
    owner = metric.func.__qualname__.split(".")[0]
    assert owner in package.__all__, f"{metric.key}: amulet.{metric.risk}.metrics does not export {owner}"
    doc = inspect.getdoc(metric.func) or ""
    assert doc, f"{metric.key} has no docstring"
    target = metric.func.__init__ if inspect.isclass(metric.func) else metric.func  # type: ignore[misc]
    args = [n for n, p in inspect.signature(target).parameters.items() if n != "self" and p.kind != p.VAR_KEYWORD]
    undocumented = [n for n in args if not re.search(rf"^\s+{n}( \(|:)", doc, re.M)]
    assert not undocumented, f"{metric.key}: arguments missing from the docstring's Args: {undocumented}"


# --- the checks themselves catch drift ---------------------------------------------------------------------


class _Toy:
    _parameter_constraints = {"steps": [Interval(int, 1, None)], "rate": [Interval(float, 0, 1, closed="right")]}

    def __init__(self, steps: int = 40, rate: float = 0.5):
        self.steps = steps
        self.rate = rate


def test_params_problems_catches_an_unstated_default_a_loose_bound_and_a_stray_field():
    @derived_from(_Toy)
    class Drifted(BaseModel):
        steps: int = Field(default=10, ge=0)
        rate: float = Field(default=0.5, ge=0, le=1)
        extra: int = 3

    problems = params_problems(Drifted)
    assert any("Drifted.steps: default 10 differs from _Toy's 40" in p for p in problems)
    assert any(p.startswith("Drifted.steps: accepts 0") for p in problems)
    assert any(p.startswith("Drifted.rate: accepts 0.0") for p in problems)
    assert any(p.startswith("Drifted.extra: is no argument of _Toy") for p in problems)


def test_params_problems_accepts_stated_overrides_and_refuses_stale_ones():
    @derived_from(_Toy, overrides={"steps": "ten steps suffice for the toy"}, engine_only={"extra": "the adapter's"})
    class Stated(BaseModel):
        steps: int = Field(default=10, ge=1, le=100)
        rate: float = Field(default=0.5, gt=0, le=1)
        extra: int = 3

    assert params_problems(Stated) == []

    @derived_from(_Toy, overrides={"rate": "no longer differs"})
    class Stale(BaseModel):
        rate: float = Field(default=0.5, gt=0, le=1)

    assert params_problems(Stale) == ["Stale.rate: listed in overrides but its default equals _Toy's 0.5"]
    assert params_problems(Stated, cls=int) == ["Stated: derived from _Toy, but it is registered for int"]


def test_the_generated_values_satisfy_their_constraints(tmp_path: Path):
    kit = _Kit(tmp_path)
    by_name = {cls.__name__: cls for cls in CLASSES}
    for owner, samples in SAMPLE_ARGUMENTS.items():  # no sample outlives its class or argument
        assert owner in by_name, f"SAMPLE_ARGUMENTS names {owner}, which is no registered class"
        assert set(samples) <= set(_arguments(by_name[owner])), (owner, set(samples) - set(_arguments(by_name[owner])))
    for cls in CLASSES:
        for name, value in _valid_kwargs(cls, kit).items():
            assert constraints_accept(cls._parameter_constraints[name], value), (cls.__name__, name, value)  # type: ignore[attr-defined]
    assert isinstance(kit.instance_of((Dataset,)), Dataset)
