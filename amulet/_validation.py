"""Declarative parameter validation.

Every attack, defense and metric class declares ``_parameter_constraints``: a mapping from each
constructor argument to a list of constraints, any of which may accept the value. Its ``__init__`` calls
:func:`validate_params` (upstream Amulet refuses bad arguments at construction), and its run method calls it
again (an attribute may have been changed since), so bad input fails before any work with a message that
names the parameter, the allowed values and the value given (see :data:`amulet.exceptions.PARAM_MESSAGE`).

Example:
    >>> from amulet._validation import Interval, validate_params
    >>> class Thing:
    ...     _parameter_constraints = {"portion": [Interval(float, 0, 1, closed="right")]}
    ...     def __init__(self, portion): self.portion = portion
    >>> validate_params(Thing(0.5))
    >>> try:
    ...     validate_params(Thing(2.0))
    ... except ValueError as error:
    ...     print(error)
    The 'portion' parameter of Thing must be a float in the range (0, 1]. Got 2.0 instead.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError

__all__ = [
    "SEED_ALIASES",
    "Constraint",
    "InstanceOf",
    "Interval",
    "IsCallable",
    "Options",
    "check_param",
    "constraints_accept",
    "seed_keyword",
    "validate_params",
]


@dataclass(frozen=True)
class Interval:
    """A real or integer interval; ``closed`` says which ends are included."""

    kind: type
    low: float | None
    high: float | None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if self.kind is float and not isinstance(value, numbers.Real):
            return False
        if value != value:  # NaN
            return False
        low_open = self.closed in ("right", "neither")
        high_open = self.closed in ("left", "neither")
        if self.low is not None and (value < self.low or (value == self.low and low_open)):
            return False
        return not (self.high is not None and (value > self.high or (value == self.high and high_open)))

    def describe(self) -> str:
        name = "an int" if self.kind is int else "a float"
        if self.low is None and self.high is None:
            return name
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{name} in the range {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: Collection[Any]

    def accepts(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:
            return False

    def describe(self) -> str:
        return "one of {" + ", ".join(repr(v) for v in sorted(self.values, key=str)) + "}"


@dataclass(frozen=True)
class InstanceOf:
    """An instance of the given type(s)."""

    types: type | tuple[type, ...]
    label: str = ""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types)

    def describe(self) -> str:
        if self.label:
            return self.label
        types = self.types if isinstance(self.types, tuple) else (self.types,)
        return "an instance of " + " or ".join(t.__name__ for t in types)


@dataclass(frozen=True)
class IsCallable:
    """Any callable."""

    def accepts(self, value: Any) -> bool:
        return callable(value)

    def describe(self) -> str:
        return "a callable"


Constraint = Interval | Options | InstanceOf | IsCallable | None


def _accepts(constraint: Constraint, value: Any) -> bool:
    if constraint is None:
        return value is None
    return constraint.accepts(value)


def _describe(constraints: list[Constraint]) -> str:
    parts = ["None" if c is None else c.describe() for c in constraints]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


#: The names a seed goes by: ``seed`` in new code; ``random_seed`` (upstream's dataset loaders) and ``exp_id``
#: (upstream's ``load_data`` and LiRA) where Amulet keeps upstream's signatures.
SEED_ALIASES = ("seed", "random_seed", "exp_id")


def seed_keyword(func: Callable[..., Any]) -> str | None:
    """Which of :data:`SEED_ALIASES` the callable ``func`` takes (``seed`` first), or ``None``.

    Example:
        >>> def load(path, random_seed=7): ...
        >>> seed_keyword(load)
        'random_seed'
    """
    params = inspect.signature(func).parameters
    return next((name for name in SEED_ALIASES if name in params), None)


def constraints_accept(constraints: list[Constraint], value: Any) -> bool:
    """True when one of ``constraints`` accepts ``value`` (``None`` in the list accepts ``None``)."""
    return any(_accepts(c, value) for c in constraints)


def check_param(owner: str, name: str, value: Any, constraints: list[Constraint]) -> None:
    """Raise :class:`InvalidParameterError` unless one of ``constraints`` accepts ``value``."""
    if not constraints_accept(constraints, value):
        raise InvalidParameterError(
            PARAM_MESSAGE.format(name=name, owner=owner, expected=_describe(constraints), value=value)
        )


def validate_params(obj: Any, extra: Mapping[str, list[Constraint]] | None = None) -> None:
    """Check every attribute named in ``type(obj)._parameter_constraints`` (plus ``extra``).

    Raises:
        InvalidParameterError: naming the first parameter whose value no constraint accepts.
    """
    constraints: dict[str, list[Constraint]] = dict(getattr(type(obj), "_parameter_constraints", {}))
    constraints.update(extra or {})
    owner = type(obj).__name__
    for name, allowed in constraints.items():
        check_param(owner, name, getattr(obj, name), allowed)
