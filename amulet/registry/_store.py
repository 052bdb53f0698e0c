"""The registry's tables: adding, listing and looking up risks, attacks, defenses and metrics.

A risk is registered in one place: its package's ``_register`` module, which :func:`load_builtins` imports
the first time anything reads the registry. Built-in risk packages are listed once, in
:data:`BUILTIN_RISK_PACKAGES` (the order of the matrix's columns); an installed package adds a risk
through the :data:`ENTRY_POINT_GROUP` entry-point group instead, without touching Amulet.
"""

from __future__ import annotations

import importlib
import logging
from importlib import metadata
from typing import Any

from amulet.registry._info import AttackInfo, DefenseInfo, MetricInfo, RiskInfo

__all__ = [
    "BUILTIN_RISK_PACKAGES",
    "ENTRY_POINT_GROUP",
    "attacks",
    "defenses",
    "get_attack",
    "get_defense",
    "get_metric",
    "get_risk",
    "load_builtins",
    "metrics",
    "register_attack",
    "register_defense",
    "register_metric",
    "register_risk",
    "risks",
    "unregister",
]

logger = logging.getLogger(__name__)

#: The built-in risk packages, in the order of the interaction matrix's columns; each one's ``_register``
#: module is imported when the registry is first read. The one list a new built-in risk is added to.
BUILTIN_RISK_PACKAGES = (
    "amulet.evasion",
    "amulet.poisoning",
    "amulet.unauth_model_ownership",
    "amulet.membership_inference",
    "amulet.attribute_inference",
    "amulet.distribution_inference",
    "amulet.data_reconstruction",
    "amulet.discriminatory_behavior",
)

#: Entry-point group of out-of-tree risks: ``[project.entry-points."amulet.risks"] my_risk =
#: "my_package.my_risk._register"`` (the module that calls :func:`register_risk` and the others).
ENTRY_POINT_GROUP = "amulet.risks"

_RISKS: dict[str, RiskInfo] = {}
_ATTACKS: dict[str, AttackInfo] = {}
_DEFENSES: dict[str, DefenseInfo] = {}
_METRICS: dict[str, MetricInfo] = {}
_LOADED = False


def _store(table: dict[str, Any], kind: str, key: str, value: Any, force: bool) -> Any:
    if key in table and not force and table[key] != value:
        raise ValueError(f"A {kind} called {key!r} is already registered; pass force=True to replace it.")
    table[key] = value
    return value


def register_risk(info: RiskInfo, *, force: bool = False) -> RiskInfo:
    """Add a risk (a column of the interaction matrix)."""
    return _store(_RISKS, "risk", info.key, info, force)


def register_attack(info: AttackInfo, *, force: bool = False) -> AttackInfo:
    """Add an attack; its ``risk`` must be registered first."""
    if info.risk not in _RISKS:
        raise ValueError(f"Attack {info.key!r} names the unknown risk {info.risk!r}; register the risk first.")
    return _store(_ATTACKS, "attack", info.key, info, force)


def register_defense(info: DefenseInfo, *, force: bool = False) -> DefenseInfo:
    """Add a defense."""
    return _store(_DEFENSES, "defense", info.key, info, force)


def register_metric(info: MetricInfo, *, force: bool = False) -> MetricInfo:
    """Add a layer-1 metric function."""
    return _store(_METRICS, "metric", info.key, info, force)


def load_builtins() -> None:
    """Import every risk package's ``_register`` module once: the built-ins, then the entry points.

    A built-in package without a ``_register`` module is skipped; an entry point of the
    :data:`ENTRY_POINT_GROUP` group names the module that registers an out-of-tree risk (its value, e.g.
    ``"my_package.my_risk._register"``), and one that fails to import is logged and skipped, so that an
    operator's broken plugin does not hide the built-in risks.
    """
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for package in BUILTIN_RISK_PACKAGES:
        try:
            importlib.import_module(package + "._register")
        except ModuleNotFoundError as exc:
            if exc.name != package + "._register":
                raise
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            importlib.import_module(entry_point.value)
        except Exception:  # an operator's broken plugin must not break the built-in risks
            logger.exception("risk entry point %s=%s failed to import; skipped", entry_point.name, entry_point.value)


def risks() -> list[RiskInfo]:
    """All registered risks: the built-in ones in the matrix's column order, then the others as registered.

    Importing a risk package registers its risk, so registration order follows whatever the program imported
    first; the order of :data:`BUILTIN_RISK_PACKAGES` is the one the API, the CLI and the reports show.
    """
    load_builtins()
    columns = {package.rsplit(".", 1)[1]: i for i, package in enumerate(BUILTIN_RISK_PACKAGES)}
    return sorted(_RISKS.values(), key=lambda risk: columns.get(risk.key, len(columns)))  # stable: others keep theirs


def attacks(risk: str | None = None) -> list[AttackInfo]:
    """All registered attacks (of one risk when given)."""
    load_builtins()
    return [a for a in _ATTACKS.values() if risk is None or a.risk == risk]


def defenses() -> list[DefenseInfo]:
    """All registered defenses."""
    load_builtins()
    return list(_DEFENSES.values())


def metrics(risk: str | None = None) -> list[MetricInfo]:
    """All registered layer-1 metric functions (of one risk when given)."""
    load_builtins()
    return [m for m in _METRICS.values() if risk is None or m.risk == risk]


def _lookup(table: dict[str, Any], kind: str, key: str) -> Any:
    load_builtins()
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"Unknown {kind} {key!r}. Registered {kind}s: {sorted(table)}.") from None


def get_risk(key: str) -> RiskInfo:
    """The risk registered as ``key`` (KeyError listing the known keys otherwise)."""
    return _lookup(_RISKS, "risk", key)


def get_attack(key: str) -> AttackInfo:
    """The attack registered as ``key``."""
    return _lookup(_ATTACKS, "attack", key)


def get_defense(key: str) -> DefenseInfo:
    """The defense registered as ``key``."""
    return _lookup(_DEFENSES, "defense", key)


def get_metric(key: str) -> MetricInfo:
    """The layer-1 metric registered as ``key``."""
    return _lookup(_METRICS, "metric", key)


_TABLES: dict[str, dict[str, Any]] = {"risk": _RISKS, "attack": _ATTACKS, "defense": _DEFENSES, "metric": _METRICS}


def unregister(kind: str, key: str) -> None:
    """Remove the ``kind`` (``"risk"``, ``"attack"``, ``"defense"`` or ``"metric"``) registered as ``key``.

    For tests and notebooks that register a module for a while; removing a risk leaves its attacks registered.

    Raises:
        KeyError: nothing of that kind is registered as ``key``.
    """
    table = _TABLES[kind]
    if key not in table:
        raise KeyError(f"No {kind} {key!r} is registered.")
    del table[key]
