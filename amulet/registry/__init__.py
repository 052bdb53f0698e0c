"""The one registry of risks, attacks, defenses and metrics.

Everything that lists what Amulet can do reads this module: assessment specs (which names and parameters
are valid), the REST catalog, the dashboard's forms and the CLI's help. Each risk package registers its
own modules in its ``_register.py`` file; adding a module means writing it and adding one
``register_attack``/``register_defense``/``register_metric`` call there (``CONTRIBUTING.md`` walks through
each kind). A new built-in risk package is listed once, in :data:`BUILTIN_RISK_PACKAGES`; an installed
package adds one through the ``amulet.risks`` entry-point group.

Entries carry:
  * ``key`` (stable identifier used in specs), ``code`` (S1, SD1, P1...: the entry's code in the interaction
    matrix; S security, P privacy, F fairness, a D after the letter for a defense), human ``name``;
  * ``params``: a pydantic model of the parameters an assessment may set, with types, defaults, bounds and
    help text (its JSON Schema is what the API and the dashboard show);
  * for risks, the headline metrics with their direction (does a higher value mean more susceptible?);
  * for attacks, the threat model (attacker knowledge, data, budget) and ``run``: the layer-2 adapter
    ``run(ctx: CellContext, params) -> dict[metric_key, float]`` (or an :class:`AttackOutput` when the attack
    also yields a ROC curve or per-record scores);
  * for defenses, ``make_stage(params) -> Stage``: the training-recipe stage it contributes
    (see :mod:`amulet.recipes`).

The parameters model restates arguments of the entry's class; :func:`derived_from` names the class, and
:func:`params_problems` checks that the two have not drifted apart (defaults the engine changes on purpose
are listed, with the reason, in ``overrides``). Seeds are called ``seed`` in new code; the upstream names
``random_seed`` and ``exp_id`` are accepted where Amulet keeps upstream's signatures (:data:`SEED_ALIASES`).

The package's modules each do one thing: ``_info`` (the entries), ``_outputs`` (what an attack may return),
``_store`` (registering and looking up), ``_catalog`` (the JSON view), ``_params`` (parameters models
against their classes) and ``_keys`` (metric keys).

Example:
    >>> from amulet import registry
    >>> sorted(r.code for r in registry.risks())[:3]
    ['F', 'P1', 'P2']
"""

from __future__ import annotations

from amulet.registry._catalog import catalog
from amulet.registry._info import (
    AttackInfo,
    CellContext,
    DefenseInfo,
    HeadlineMetric,
    MetricInfo,
    NoParams,
    RiskInfo,
    ThreatModel,
)
from amulet.registry._keys import attribute_key
from amulet.registry._outputs import AttackOutput, RocCurve, VulnerableRecord
from amulet.registry._params import SEED_ALIASES, ParamSource, derived_from, param_source, params_problems, seed_keyword

# The tables themselves are re-exported (redundant aliases) for tests that swap an entry for a while.
from amulet.registry._store import _ATTACKS as _ATTACKS
from amulet.registry._store import _DEFENSES as _DEFENSES
from amulet.registry._store import _METRICS as _METRICS
from amulet.registry._store import _RISKS as _RISKS
from amulet.registry._store import (
    BUILTIN_RISK_PACKAGES,
    ENTRY_POINT_GROUP,
    attacks,
    defenses,
    get_attack,
    get_defense,
    get_metric,
    get_risk,
    load_builtins,
    metrics,
    register_attack,
    register_defense,
    register_metric,
    register_risk,
    risks,
    unregister,
)

__all__ = [
    "BUILTIN_RISK_PACKAGES",
    "ENTRY_POINT_GROUP",
    "SEED_ALIASES",
    "AttackInfo",
    "AttackOutput",
    "CellContext",
    "DefenseInfo",
    "HeadlineMetric",
    "MetricInfo",
    "NoParams",
    "ParamSource",
    "RiskInfo",
    "RocCurve",
    "ThreatModel",
    "VulnerableRecord",
    "attacks",
    "attribute_key",
    "catalog",
    "defenses",
    "derived_from",
    "get_attack",
    "get_defense",
    "get_metric",
    "get_risk",
    "load_builtins",
    "metrics",
    "param_source",
    "params_problems",
    "register_attack",
    "register_defense",
    "register_metric",
    "register_risk",
    "risks",
    "seed_keyword",
    "unregister",
]
