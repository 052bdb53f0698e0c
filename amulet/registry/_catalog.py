"""The registry as JSON: what the REST ``/catalog``, ``amulet catalog --json`` and the dashboard's forms show.

Besides the risks, attacks, defenses and metrics, it lists the datasets a spec can name
(:func:`amulet.datasets.datasets`) and the architectures it can build (:func:`amulet.models.architectures`),
each with its capacities, so that one document describes everything an assessment can use.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from amulet.datasets import datasets
from amulet.models import architectures, get_architecture
from amulet.registry._info import HeadlineMetric
from amulet.registry._params import param_source
from amulet.registry._store import attacks, defenses, load_builtins, metrics, risks

__all__ = ["catalog"]


def _overrides(model: type[BaseModel]) -> dict[str, str]:
    """Field -> why the assessment's default differs from the layer-1 class's (see ``derived_from``)."""
    source = param_source(model)
    return dict(source.overrides) if source is not None else {}


def catalog() -> dict[str, Any]:
    """A JSON-serialisable description of everything registered (the REST ``/catalog``)."""
    load_builtins()

    def metric_dict(m: HeadlineMetric) -> dict[str, Any]:
        return {
            "key": m.key,
            "name": m.name,
            "higher_is_riskier": m.higher_is_riskier,
            "unit": m.unit,
            "description": m.description,
            "bounds": list(m.value_range) if m.value_range else None,
        }

    return {
        "risks": [
            {
                "key": r.key,
                "code": r.code,
                "name": r.name,
                "category": r.category,
                "description": r.description,
                "headline_metrics": [metric_dict(m) for m in r.headline_metrics],
                "attacks": [a.key for a in attacks(r.key)],
            }
            for r in risks()
        ],
        "attacks": [
            {
                "key": a.key,
                "code": a.code,
                "name": a.name,
                "risk": a.risk,
                "summary": a.summary,
                "reference": a.reference,
                "modalities": list(a.modalities),
                "threat_model": vars(a.threat_model),
                "params_schema": a.params.model_json_schema(),
                "param_overrides": _overrides(a.params),
            }
            for a in attacks()
        ],
        "defenses": [
            {
                "key": d.key,
                "code": d.code,
                "name": d.name,
                "targets": list(d.targets),
                "summary": d.summary,
                "reference": d.reference,
                "modalities": list(d.modalities),
                "params_schema": d.params.model_json_schema(),
                "param_overrides": _overrides(d.params),
            }
            for d in defenses()
        ],
        "metrics": [{"key": m.key, "name": m.name, "risk": m.risk, "summary": m.summary} for m in metrics()],
        "datasets": [{"name": d.name, "modality": d.modality, "description": d.description} for d in datasets()],
        "architectures": [
            {
                "name": a.name,
                "description": a.description,
                "capacities": {k: dict(v) for k, v in a.capacities.items()},
            }
            for a in (get_architecture(name) for name in architectures())
        ],
    }
