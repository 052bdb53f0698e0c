"""One source for each parameter: an assessment's parameters model is checked against its class.

A layer-1 class declares each parameter twice by design, once in its constructor's signature (the name and
the default) and once in ``_parameter_constraints`` (the allowed values); the constructor's signature and its
constraints are the source. The pydantic model of the parameters an assessment may set (``AttackInfo.params``,
``DefenseInfo.params``) restates some of them, with help text and tighter bounds for forms. It names its
class with :func:`derived_from`, and :func:`params_problems` reports every way it drifted from it:

* a field that is not a constructor argument (under its own name or the one ``renamed`` gives) and is not
  declared ``engine_only``, with the reason the engine needs it;
* a default that differs from the constructor's without an entry in ``overrides`` (the reason the
  assessment engine deliberately uses another default: the one place where such a default is stated),
  or an override whose default no longer differs;
* a value the model accepts (its default, either end of its bounds, each of its ``Literal`` values, ``None``)
  that the class's constraints refuse, or a bound the class has and the model lacks (the model's bounds may be
  tighter than the class's, as limits of the forms the service shows, never looser); fields whose value the
  adapter converts before it reaches the class (``adapted``, with how) are exempt from these value checks,
  not from the default check.

``tests/test_common.py`` runs it on every registered attack and defense.

Example:
    >>> from pydantic import BaseModel, Field
    >>> from amulet._validation import Interval
    >>> class Blur:
    ...     _parameter_constraints = {"radius": [Interval(float, 0, None)], "passes": [Interval(int, 1, None)]}
    ...     def __init__(self, radius: float = 1.0, passes: int = 3):
    ...         self.radius, self.passes = radius, passes
    >>> @derived_from(Blur, overrides={"passes": "one pass keeps assessments fast"})
    ... class BlurParams(BaseModel):
    ...     radius: float = Field(default=1.0, ge=0, le=10)
    ...     passes: int = Field(default=1, ge=1, le=10)
    >>> params_problems(BlurParams)
    []
    >>> @derived_from(Blur)
    ... class DriftedParams(BaseModel):
    ...     radius: float = Field(default=2.0, ge=-1)
    >>> for problem in params_problems(DriftedParams):
    ...     print(problem)
    DriftedParams.radius: default 2.0 differs from Blur's 1.0; state the reason in derived_from(overrides=...)
    DriftedParams.radius: accepts -1.0, which Blur's constraints refuse
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from amulet._validation import SEED_ALIASES, Constraint, constraints_accept, seed_keyword

__all__ = ["SEED_ALIASES", "ParamSource", "derived_from", "param_source", "params_problems", "seed_keyword"]

M = TypeVar("M", bound=type[BaseModel])

_ATTRIBUTE = "__amulet_param_source__"
_EMPTY = inspect.Parameter.empty


@dataclass(frozen=True)
class ParamSource:
    """Where a parameters model comes from (see :func:`derived_from`).

    Attributes:
        cls: The layer-1 class whose constructor the model's fields set.
        overrides: Field -> why the assessment's default differs from the constructor's.
        engine_only: Field -> what the engine uses it for (it sets no constructor argument).
        renamed: Field -> the constructor argument it sets, when the names differ.
        adapted: Field -> how the adapter converts its value before the constructor gets it.
    """

    cls: type
    overrides: Mapping[str, str] = field(default_factory=dict)
    engine_only: Mapping[str, str] = field(default_factory=dict)
    renamed: Mapping[str, str] = field(default_factory=dict)
    adapted: Mapping[str, str] = field(default_factory=dict)

    def argument(self, name: str) -> str:
        """The constructor argument the field ``name`` sets."""
        return self.renamed.get(name, name)


def derived_from(
    cls: type,
    *,
    overrides: Mapping[str, str] | None = None,
    engine_only: Mapping[str, str] | None = None,
    renamed: Mapping[str, str] | None = None,
    adapted: Mapping[str, str] | None = None,
) -> Callable[[M], M]:
    """Class decorator: the parameters model restates arguments of ``cls`` (see the module docstring).

    Args:
        cls: The class whose constructor signature and ``_parameter_constraints`` are the source.
        overrides: Field -> the reason its default deliberately differs from the constructor's.
        engine_only: Field -> what the engine uses it for, for fields that set no constructor argument.
        renamed: Field -> the constructor argument it sets, when the names differ.
        adapted: Field -> how the adapter converts the value before passing it to the constructor.

    Returns:
        A decorator that records the :class:`ParamSource` on the model and returns the model unchanged.
    """
    source = ParamSource(cls, dict(overrides or {}), dict(engine_only or {}), dict(renamed or {}), dict(adapted or {}))

    def decorate(model: M) -> M:
        setattr(model, _ATTRIBUTE, source)
        return model

    return decorate


def param_source(model: type[BaseModel]) -> ParamSource | None:
    """The :class:`ParamSource` recorded by :func:`derived_from` on ``model`` (``None`` when there is none)."""
    source = model.__dict__.get(_ATTRIBUTE)
    return source if isinstance(source, ParamSource) else None


def _bounds(info: FieldInfo) -> dict[str, float]:
    found: dict[str, float] = {}
    for item in info.metadata:
        for kind in ("ge", "gt", "le", "lt"):
            if isinstance(item, getattr(annotated_types, kind.capitalize())):
                found[kind] = getattr(item, kind)
    return found


def _kinds(annotation: Any) -> tuple[set[type], list[Any], bool]:
    """(number types, literal values, accepts None) of a field's annotation."""
    numbers: set[type] = set()
    literals: list[Any] = []
    allows_none = False
    stack = [annotation]
    while stack:
        tp = stack.pop()
        origin = typing.get_origin(tp)
        if tp is type(None) or tp is None:
            allows_none = True
        elif origin is typing.Literal:
            literals.extend(typing.get_args(tp))
        elif origin is not None and typing.get_args(tp) and origin not in (list, dict, tuple, set):
            stack.extend(typing.get_args(tp))
        elif tp in (int, float):
            numbers.add(tp)
    return numbers, literals, allows_none


def _probes(info: FieldInfo) -> list[Any]:
    """Values the field accepts at its edges: both bounds (or far beyond them when it has none)."""
    numbers, literals, allows_none = _kinds(info.annotation)
    probes: list[Any] = list(literals)
    if allows_none:
        probes.append(None)
    if not numbers:
        return probes
    kind = float if float in numbers else int
    bounds = _bounds(info)

    def step(value: float, up: bool) -> Any:
        if kind is int:
            return math.floor(value) + 1 if up else math.ceil(value) - 1
        return math.nextafter(float(value), math.inf if up else -math.inf)

    far = 10**12
    low = bounds["ge"] if "ge" in bounds else step(bounds["gt"], True) if "gt" in bounds else kind(-far)
    high = bounds["le"] if "le" in bounds else step(bounds["lt"], False) if "lt" in bounds else kind(far)
    probes += [kind(low), kind(high)]
    return probes


def params_problems(model: type[BaseModel], cls: type | None = None) -> list[str]:
    """Every way ``model`` drifted from its class's signature and constraints (empty: none).

    Args:
        model: A parameters model decorated with :func:`derived_from`.
        cls: The class it should derive from (``AttackInfo.cls``); ``None`` accepts the one it names.

    Returns:
        One line per problem, each starting with ``<Model>.<field>``.
    """
    name = model.__name__
    if not model.model_fields:
        return []  # nothing to drift (NoParams)
    source = param_source(model)
    if source is None:
        return [f"{name}: names no class; decorate it with @derived_from(<class>, ...)"]
    if cls is not None and source.cls is not cls:
        return [f"{name}: derived from {source.cls.__name__}, but it is registered for {cls.__name__}"]
    owner = source.cls.__name__
    signature = inspect.signature(source.cls).parameters
    constraints: Mapping[str, list[Constraint]] = getattr(source.cls, "_parameter_constraints", {})
    fields = model.model_fields
    problems: list[str] = []
    for table in ("overrides", "engine_only", "renamed", "adapted"):
        problems += [
            f"{name}.{key}: listed in {table} but not a field" for key in getattr(source, table) if key not in fields
        ]
    for field_name, info in fields.items():
        where = f"{name}.{field_name}"
        argument = source.argument(field_name)
        if field_name in source.engine_only:
            if argument in signature:
                problems.append(f"{where}: is an argument of {owner}, so it cannot be engine_only")
            continue
        if argument not in signature or argument == "self":
            problems.append(
                f"{where}: is no argument of {owner}; rename it (renamed=...) or state its use in engine_only=..."
            )
            continue
        ctor_default = signature[argument].default
        if ctor_default is not _EMPTY:
            differs = info.default != ctor_default
            if differs and field_name not in source.overrides:
                problems.append(
                    f"{where}: default {info.default!r} differs from {owner}'s {ctor_default!r}; "
                    "state the reason in derived_from(overrides=...)"
                )
            if not differs and field_name in source.overrides:
                problems.append(f"{where}: listed in overrides but its default equals {owner}'s {ctor_default!r}")
        allowed = constraints.get(argument)
        if allowed is None or field_name in source.adapted:
            continue  # an unconstrained argument: tests/test_common.py reports it for the class
        for value in [info.default, *_probes(info)]:
            if not constraints_accept(allowed, value):
                problems.append(f"{where}: accepts {value!r}, which {owner}'s constraints refuse")
                break
    return problems
