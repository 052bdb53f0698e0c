"""The spec's second validation pass: what only the registry can check (names, parameters, policy metrics).

The first pass is structural (pydantic, in :mod:`amulet.assess._spec`); this one reads the registry, the
architecture registry and the file system, and returns every problem with its field path, so that
:func:`amulet.assess.load_spec` reports them all at once.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from amulet import registry
from amulet.assess._spec_sweeps import expand_params, expand_row
from amulet.models import architectures, canonical_architecture
from amulet.recipes import Recipe

if TYPE_CHECKING:
    from amulet.assess._spec import AssessmentSpec

__all__ = ["BASELINE", "RegistryProblemsError", "model_problems", "pydantic_problems", "registry_problems"]

#: Name of the undefended row of the matrix; no defense row may use it.
BASELINE = "baseline"


class RegistryProblemsError(ValueError):
    """Raised inside the spec's model validator; carries the problems with their paths."""

    def __init__(self, problems: list[dict[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p['path']}: {p['message']}" for p in problems))


def pydantic_problems(exc: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        out.append({"path": path.lstrip("."), "message": err["msg"]})
    return out


def registry_problems(spec: AssessmentSpec) -> list[dict[str, str]]:
    """Problems that need the registry: unknown keys, bad parameters, policy on unselected metrics."""
    problems: list[dict[str, str]] = []
    problems.extend(model_problems(spec))
    defense_keys = sorted(d.key for d in registry.defenses())
    risk_keys = sorted(r.key for r in registry.risks())
    row_names: list[str] = []
    for i, row in enumerate(spec.defenses):
        stack_ok = True
        for j, entry in enumerate(row.stack):
            path = f"defenses[{i}].stack[{j}]"
            if entry.defense not in defense_keys:
                problems.append(
                    {
                        "path": f"{path}.defense",
                        "message": f"unknown defense {entry.defense!r}; allowed values: {', '.join(defense_keys)}",
                    }
                )
                stack_ok = False
                continue
            info = registry.get_defense(entry.defense)
            for combo in expand_params(info.params, entry.params):
                try:
                    info.params(**combo)
                except ValidationError as exc:
                    problems.extend(pydantic_problems(exc, f"{path}.params"))
                    stack_ok = False
                    break
        if stack_ok:
            try:
                for expanded in expand_row(row):
                    Recipe(
                        spec.training,
                        [
                            registry.get_defense(e["defense"]).make_stage(
                                registry.get_defense(e["defense"]).params(**e["params"])
                            )
                            for e in expanded["stack"]
                        ],
                    )
                    row_names.append(expanded["name"])
            except ValueError as exc:
                problems.append({"path": f"defenses[{i}].stack", "message": str(exc)})
    seen: set[str] = set()
    for name in row_names:
        if name == BASELINE:
            problems.append(
                {"path": "defenses", "message": f"the row name {BASELINE!r} is reserved for the undefended model"}
            )
        elif name in seen:
            problems.append(
                {"path": "defenses", "message": f"two rows are called {name!r}; give each row a distinct 'name'"}
            )
        seen.add(name)

    selected: dict[str, set[str]] = {}
    for i, risk_entry in enumerate(spec.risks):
        path = f"risks[{i}]"
        if risk_entry.risk not in risk_keys:
            problems.append(
                {
                    "path": f"{path}.risk",
                    "message": f"unknown risk {risk_entry.risk!r}; allowed values: {', '.join(risk_keys)}",
                }
            )
            continue
        attack_keys = [a.key for a in registry.attacks(risk_entry.risk)]
        if risk_entry.attack is None:
            if not attack_keys:
                problems.append(
                    {
                        "path": f"{path}.attack",
                        "message": f"no attack is registered for the risk {risk_entry.risk!r} yet",
                    }
                )
                continue
            attack_key = attack_keys[0]
        elif risk_entry.attack not in attack_keys:
            problems.append(
                {
                    "path": f"{path}.attack",
                    "message": f"unknown attack {risk_entry.attack!r} for the risk {risk_entry.risk!r}; "
                    "allowed values: " + (", ".join(attack_keys) or "(none registered)"),
                }
            )
            continue
        else:
            attack_key = risk_entry.attack
        if attack_key in selected.setdefault(risk_entry.risk, set()):
            problems.append(
                {"path": path, "message": f"the attack {attack_key!r} of {risk_entry.risk!r} is listed twice"}
            )
        selected[risk_entry.risk].add(attack_key)
        try:
            registry.get_attack(attack_key).params(**risk_entry.params)
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, f"{path}.params"))

    for i, check in enumerate(spec.policy):
        path = f"policy[{i}]"
        risk_key, _, metric_key = check.metric.partition(".")
        allowed = sorted(f"{r}.{m.key}" for r in selected for m in registry.get_risk(r).headline_metrics)
        if risk_key not in selected or metric_key not in {m.key for m in registry.get_risk(risk_key).headline_metrics}:
            problems.append(
                {
                    "path": f"{path}.metric",
                    "message": f"{check.metric!r} is not a headline metric of a risk in this spec; allowed values: "
                    + ", ".join(allowed),
                }
            )
        elif check.attack is not None and check.attack not in selected[risk_key]:
            problems.append(
                {
                    "path": f"{path}.attack",
                    "message": f"the attack {check.attack!r} is not assessed for {risk_key!r}; allowed values: "
                    + ", ".join(sorted(selected[risk_key])),
                }
            )
        names = [BASELINE, *row_names]
        if check.row != "*" and not fnmatch.filter(names, check.row):
            problems.append(
                {
                    "path": f"{path}.row",
                    "message": f"{check.row!r} matches no row; allowed values: '*', " + ", ".join(map(repr, names)),
                }
            )
        if check.delta and check.row == BASELINE:
            problems.append({"path": f"{path}.delta", "message": "a delta check cannot apply to the baseline row"})
    return problems


def model_problems(spec: AssessmentSpec) -> list[dict[str, str]]:
    problems = []
    known = architectures()
    name = canonical_architecture(spec.model.architecture)
    if spec.model.file is not None:
        if not Path(spec.model.file).is_file():
            problems.append({"path": "model.file", "message": f"the model file {spec.model.file!r} does not exist"})
    elif name not in known:
        problems.append(
            {
                "path": "model.architecture",
                "message": f"unknown architecture {spec.model.architecture!r}; allowed values: {', '.join(known)}",
            }
        )
    if spec.model.weights is not None and not Path(spec.model.weights).is_file():
        problems.append({"path": "model.weights", "message": f"the weights file {spec.model.weights!r} does not exist"})
    if spec.dataset.path is not None and not Path(spec.dataset.path).is_file():
        problems.append({"path": "dataset.path", "message": f"the dataset file {spec.dataset.path!r} does not exist"})
    return problems
