"""One capacity table and one alias map, read by initialize_model, the registry and the assessment engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from torch import nn

from amulet.assess import load_spec
from amulet.assess._data import DataBundle, architecture_spec
from amulet.models import ALIASES, BUILTIN_CAPACITIES, canonical_architecture, get_architecture, register_architecture
from amulet.models._registry import _REGISTRY
from amulet.utils import CAPACITY_CONFIG, initialize_model


def test_the_capacity_table_is_the_registry_s():
    assert CAPACITY_CONFIG is BUILTIN_CAPACITIES
    for name, capacities in BUILTIN_CAPACITIES.items():
        assert get_architecture(name).capacities == capacities
        assert sorted(capacities) == ["m1", "m2", "m3", "m4"]


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_every_alias_resolves_everywhere(alias: str, name: str):
    assert canonical_architecture(alias.upper()) == name
    assert get_architecture(alias).name == name
    kind = type(initialize_model(alias, "m1", 12 if name == "linearnet" else (1, 28, 28), 2))
    assert kind is type(initialize_model(name, "m1", 12 if name == "linearnet" else (1, 28, 28), 2))


def _bundle(input_shape: tuple[int, ...]) -> DataBundle:
    return DataBundle(None, None, None, "", "tabular", input_shape, 2, None)  # type: ignore[arg-type]


@pytest.fixture
def toynet() -> Iterator[str]:
    def build(*, num_classes: int, input_shape: tuple[int, ...], width: int = 2) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], width), nn.Linear(width, num_classes))

    register_architecture("toynet", build, capacities={"m1": {"width": 4}, "m2": {"width": 8}})
    yield "toynet"
    _REGISTRY.pop("toynet")


def test_a_spec_capacity_reads_the_architecture_s_own_table(toynet: str):
    spec = load_spec(
        {
            "dataset": {"name": "census"},
            "model": {"architecture": toynet, "capacity": "m2"},
            "risks": [{"risk": "evasion"}],
        }
    )
    arch = architecture_spec(spec.model, _bundle((5,)))
    assert arch["config"] == {"width": 8}
    cnn = load_spec(
        {
            "dataset": {"name": "census"},
            "model": {"architecture": "cnn", "capacity": "m1"},
            "risks": [{"risk": "evasion"}],
        }
    )
    arch = architecture_spec(cnn.model, _bundle((1, 28, 28)))
    assert arch["architecture"] == "simplecnn"
    assert arch["config"] == BUILTIN_CAPACITIES["simplecnn"]["m1"]
