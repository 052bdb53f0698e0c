"""CONTRIBUTING.md's walkthrough, followed literally: its code blocks are written to a scratch package,
registered as it says, and must appear in the registry, the CLI catalog and the API's listings, pass the
common checks, and run in an assessment.

Every ``python`` block of CONTRIBUTING.md whose first line is ``# file: <path>`` is written to ``<path>`` under
a temporary directory, unchanged; the risk package is loaded through the ``amulet.risks`` entry point the
walkthrough declares, the dataset and the architecture by importing their modules (which register them).
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from amulet import registry
from amulet.assess import run_assessment
from amulet.cli import app
from amulet.datasets import dataset_names, unregister_dataset
from amulet.exceptions import PARAM_MESSAGE, InvalidParameterError
from amulet.models import architectures, create_model
from amulet.models._registry import _REGISTRY as ARCHITECTURES
from amulet.registry import _store
from amulet.settings import get_settings
from backend.api.routes import catalog as catalog_route
from backend.api.routes import datasets as datasets_route

GUIDE = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
BLOCK = re.compile(r"```python\n# file: (?P<path>\S+)\n(?P<code>.*?)```", re.S)


def _blocks() -> dict[str, str]:
    return {m["path"]: m["code"] for m in BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))}


def _entry_point_value() -> str:
    match = re.search(r'\[project\.entry-points\."amulet\.risks"\]\s*\n\s*(\w+) = "([\w.]+)"', GUIDE.read_text())
    assert match, "CONTRIBUTING.md declares no amulet.risks entry point"
    return match[2]


def _spec() -> dict[str, Any]:
    match = re.search(r"### Running it.*?```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    assert match, "CONTRIBUTING.md has no example spec"
    return yaml.safe_load(match[1])


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("walkthrough")
    blocks = _blocks()
    for path, code in blocks.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(code, encoding="utf-8")
    value = _entry_point_value()
    point = metadata.EntryPoint("noise_robustness", value, _store.ENTRY_POINT_GROUP)
    sys.path.insert(0, str(root))
    patch = pytest.MonkeyPatch()
    real = metadata.entry_points

    def entry_points(**selection: Any) -> Any:
        # Only the risk group is replaced; other libraries (triton...) read their own groups as usual.
        return [point] if selection.get("group") == _store.ENTRY_POINT_GROUP else real(**selection)

    patch.setattr(_store.metadata, "entry_points", entry_points)
    patch.setattr(_store, "_LOADED", False)
    modules = {"points": importlib.import_module("points"), "tinymlp": importlib.import_module("tinymlp")}
    catalog_route._catalog.cache_clear()
    try:
        registry.load_builtins()
        yield {"root": root, "blocks": blocks, "modules": modules}
    finally:
        patch.undo()
        for kind, key in (
            ("metric", "noisy_accuracy"),
            ("defense", "gaussian_augmentation"),
            ("attack", "gaussian_noise"),
            ("risk", "noise_robustness"),
        ):
            registry.unregister(kind, key)
        unregister_dataset("points")
        ARCHITECTURES.pop("tinymlp")
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.split(".")[0] in ("noise_robustness", "points", "tinymlp")]:
            del sys.modules[name]
        catalog_route._catalog.cache_clear()


def test_the_guide_has_a_walkthrough_for_every_kind():
    text = GUIDE.read_text()
    for kind in ("risk", "attack", "defense", "metric", "dataset", "architecture"):
        assert f"### How to add a{'n' if kind[0] in 'aeiou' else ''} {kind}" in text
    assert {"noise_robustness/_register.py", "points.py", "tinymlp.py"} <= set(_blocks())


def test_everything_is_in_the_registries(walkthrough: dict[str, Any]):
    risk = registry.get_risk("noise_robustness")
    assert (risk.code, risk.metric("noisy_accuracy").higher_is_riskier) == ("S4", False)
    attack = registry.get_attack("gaussian_noise")
    assert attack.risk == "noise_robustness" and attack.cls.__name__ == "GaussianNoise"
    assert attack.reference and registry.get_defense("gaussian_augmentation").reference
    assert registry.get_defense("gaussian_augmentation").targets == ("noise_robustness",)
    assert registry.get_metric("noisy_accuracy").risk == "noise_robustness"
    assert "points" in dataset_names() and "tinymlp" in architectures()


def test_the_new_modules_pass_the_common_checks(walkthrough: dict[str, Any]):
    for info in (registry.get_attack("gaussian_noise"), registry.get_defense("gaussian_augmentation")):
        cls = info.cls
        assert registry.params_problems(info.params, cls) == []
        arguments = [n for n in inspect.signature(cls).parameters]
        assert sorted(arguments) == sorted(cls._parameter_constraints)
        _construct_with(cls, sigma=0.5)
        with pytest.raises(InvalidParameterError) as error:
            _construct_with(cls, sigma=-1.0)
        assert str(error.value).startswith(
            PARAM_MESSAGE.format(name="sigma", owner=cls.__name__, expected="", value=-1.0).split(" must be ")[0]
        )


def _construct_with(cls: type, **bad: Any) -> Any:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    loader = DataLoader(TensorDataset(torch.rand(4, 2), torch.tensor([0, 1, 0, 1])), batch_size=2)
    if cls.__name__ == "GaussianNoise":
        return cls(model, loader, **bad)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return cls(model, nn.CrossEntropyLoss(), optimizer, loader, "cpu", **bad)


def test_the_cli_catalog_and_the_api_list_them(walkthrough: dict[str, Any]):
    result = CliRunner().invoke(app, ["catalog", "--json"])
    assert result.exit_code == 0, result.output
    for listing in (json.loads(result.output), catalog_route.catalog()):
        assert "noise_robustness" in {r["key"] for r in listing["risks"]}
        assert "gaussian_noise" in {a["key"] for a in listing["attacks"]}
        assert "gaussian_augmentation" in {d["key"] for d in listing["defenses"]}
        assert "noisy_accuracy" in {m["key"] for m in listing["metrics"]}
        assert "points" in {d["name"] for d in listing["datasets"]}
        tiny = {a["name"]: a for a in listing["architectures"]}["tinymlp"]
        assert tiny["capacities"]["m2"] == {"width": 16}
    builtins = {d.name: d for d in datasets_route.builtin_datasets(None)}  # type: ignore[arg-type]
    assert builtins["points"].modality == "tabular"
    model = create_model("tinymlp", num_classes=2, input_shape=(3,), width=4)
    assert model.get_hidden(torch.ones(1, 3)).shape == (1, 4)


def test_the_example_assessment_runs(walkthrough: dict[str, Any], tmp_path: Path):
    folder = get_settings().resolved_data_dir / "points"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y = np.arange(240) % 2
    x = np.clip(0.5 + (y[:, None] - 0.5) * 0.5 + rng.normal(scale=0.12, size=(240, 3)), 0, 1)
    np.savetxt(folder / "points.csv", np.c_[x, y], delimiter=",", header="a,b,c,label", comments="", fmt="%.5f")
    spec = {**_spec(), "training": {"epochs": 3, "batch_size": 32, "lr": 0.05}}
    results = run_assessment(spec, cache_dir=tmp_path / "cache", device="cpu", formats=())
    cells = {c.row: c for c in results.cells}
    assert sorted(cells) == ["baseline", "gaussian_augmentation"]
    defended = next(r for r in results.rows if r.name == "gaussian_augmentation")
    assert defended.stack == [{"defense": "gaussian_augmentation", "params": {"sigma": 0.2}}]
    assert defended.targets == ["noise_robustness"]
    column = next(c for c in results.columns if c.risk == "noise_robustness")
    assert (column.attack, column.params) == ("gaussian_noise", {"sigma": 0.3})
    for cell in results.cells:
        assert cell.status == "ok", cell.reason
        assert 0 <= cell.metrics["noisy_accuracy"] <= 100
    # The blobs are far apart relative to the noise: the baseline keeps most of its accuracy.
    baseline = next(c for c in results.cells if c.row == "baseline")
    assert baseline.metrics["noisy_accuracy"] > 60
