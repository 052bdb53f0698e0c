"""Models that are not in the registry, uploaded as graphs, through `amulet assess`: the baseline is the
uploaded model as deployed, every other row retrains the graph from a fresh initialisation, and the report
says which is which. The fast test runs a tiny matrix; the slow ones run every risk on three models."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from amulet import registry
from amulet.assess import run_assessment
from amulet.assess._results import ACCURACY_KEY
from amulet.io import export_graph_model, load_graph_model
from amulet.utils import TensorData, train_population

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# --------------------------------------------------------------------------------------------------------------
# three architectures the registry does not know


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + nn.functional.gelu(self.fc(self.norm(x)))


class ResidualMLP(nn.Module):
    """Residual MLP with LayerNorm and GELU (census)."""

    def __init__(self, d_in: int, k: int, width: int = 32) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.blocks = nn.Sequential(ResidualBlock(width), ResidualBlock(width))
        self.head = nn.Linear(width, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.inp(x)))


class Swish(nn.Module):
    """A custom activation: x * sigmoid(beta * x), beta learned."""

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


class DepthwiseCNN(nn.Module):
    """A small CNN with depthwise-separable convolutions and a custom activation (fmnist)."""

    def __init__(self, k: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pointwise = nn.Conv2d(8, 16, 1)
        self.act = Swish()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(16 * 4 * 4, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.stem(x))
        h = self.act(self.pointwise(self.depthwise(h)))
        return self.head(self.pool(h).flatten(1))


def _trained(model: nn.Module, dataset: str, *, rows: int, epochs: int, seed: int = 0) -> nn.Module:
    """The user's own training in a notebook: a few epochs on the dataset's train split."""
    from amulet.assess._data import load_bundle
    from amulet.assess._spec import DatasetSpec

    bundle = load_bundle(DatasetSpec(name=dataset, training_size=rows, test_size=200))
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = bundle.train.x, bundle.train.y
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            optimizer.step()
    return model.eval()


@functools.cache
def _census_width() -> int:
    """Features of the census data as assessments encode it (what a user's model must take)."""
    from amulet.assess._data import load_bundle
    from amulet.assess._spec import DatasetSpec

    return int(load_bundle(DatasetSpec(name="census", training_size=100, test_size=100)).input_shape[0])


def _export(tmp_path: Path, model: nn.Module, dataset: str, name: str) -> Path:
    return export_graph_model(tmp_path / name, model=model, dataset=dataset)[0]


#: Small settings of the slowest attacks and defenses (applied to the fields that exist).
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "model_extraction": {"epochs": 3},
    "fredrikson_ccs_2015": {"alpha": 30, "beta": 10},
    "lira": {"num_shadow": 2, "max_members": 300},
    "suri_evans_2022": {"num_models": 3, "num_victim_models": 2, "train_subsample": 200, "test_subsample": 100},
    "whitebox_pim": {"num_models": 3, "num_victim_models": 2, "train_subsample": 200, "test_subsample": 100,
                     "meta_epochs": 10},
    "pgd": {"iterations": 3, "max_samples": 200},
    "duddu_cikm_2022": {"max_iter": 50},
    "watermark": {"epochs": 2},
    "dp_sgd": {"epochs": 10},
}  # fmt: skip


def _fast(params_model: type, key: str) -> dict[str, Any]:
    return {k: v for k, v in FAST_PARAMS.get(key, {}).items() if k in params_model.model_fields}  # type: ignore[attr-defined]


def _risks(dataset: str, *, fast: bool) -> list[dict[str, Any]]:
    """Every registered risk's attacks (with small parameters); cells that cannot apply report not-run."""
    out = []
    for risk in registry.risks():
        for attack in registry.attacks(risk.key):
            out.append({"risk": risk.key, "attack": attack.key, "params": _fast(attack.params, attack.key)})
    return out if not fast else out[:2]


def _spec(model_file: Path, dataset: str, risks: list[dict[str, Any]], defenses: list[str], size: int) -> dict:
    return {
        "name": f"own model on {dataset}",
        "dataset": {"name": dataset, "training_size": size, "test_size": size // 2},
        "model": {"file": str(model_file)},
        "training": {"epochs": 2, "batch_size": 64, "lr": 0.01},
        "defenses": [{"defense": d, "params": _fast(registry.get_defense(d).params, d)} for d in defenses],
        "risks": risks,
        "seeds": [0],
    }


# --------------------------------------------------------------------------------------------------------------


def test_uploaded_graph_is_the_baseline_and_other_rows_retrain_it(tmp_path: Path):
    """Tiny matrix through the CLI: census residual MLP (.pt2), baseline + outlier removal, two risks."""
    from amulet.cli import app

    torch.manual_seed(0)
    model = _trained(ResidualMLP(_census_width(), 2), "census", rows=600, epochs=3)
    path = _export(tmp_path, model, "census", "resmlp.pt2")
    risks = [
        {"risk": "evasion", "attack": "pgd", "params": {"iterations": 3, "max_samples": 100}},
        {"risk": "discriminatory_behavior"},
    ]
    spec = _spec(path, "census", risks, ["outlier_removal"], 600)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({**spec, "model": {"file": "resmlp.pt2"}}))  # relative to the spec
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["assess", str(spec_file), "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--format", "json"]
    )
    assert result.exit_code in (0, 1), result.output  # 1: a policy/warning exit, never a crash
    results = json.loads((out / "results.json").read_text())
    cells = results["cells"]
    assert {c["status"] for c in cells} == {"ok"}, [c["reason"] for c in cells]
    assert results["reproducibility"]["trainings"] == {"trained": 1, "reused": 0, "imported": 1}
    # The baseline's accuracy is the uploaded model's own, measured on the same test rows; the retrained row is
    # another model (a fresh initialisation, 2 epochs): other weights. Its accuracy may still round to the same
    # count of 300 test rows, so the weights' hashes tell them apart, not the accuracy.
    from amulet.assess._data import load_bundle
    from amulet.assess._spec import DatasetSpec

    test = load_bundle(DatasetSpec(name="census", training_size=600, test_size=300)).test
    uploaded = load_graph_model(path)
    with torch.no_grad():
        accuracy = 100 * int((uploaded(test.x).argmax(1) == test.y).sum()) / len(test.y)
    by_row = {c["row"]: c["metrics"][ACCURACY_KEY] for c in cells}
    assert by_row["baseline"] == pytest.approx(accuracy, abs=1e-6)
    hashes = {c["row"]: c["model_sha256"] for c in cells}
    assert hashes["outlier_removal"] and hashes["outlier_removal"] != hashes["baseline"]
    text = results["threat_model"]["model"]
    assert "'baseline' row is the uploaded model" in text and "'outlier_removal'" in text
    assert "fresh initialisation" in text and "2 epochs" in text


def test_population_of_an_uploaded_graph_trains_stacked_and_matches_one_by_one(tmp_path: Path):
    torch.manual_seed(0)
    path = _export(tmp_path, ResidualMLP(_census_width(), 2), "census", "resmlp.pt2")
    from amulet.assess._data import load_bundle, make_model_factory
    from amulet.assess._spec import DatasetSpec, ModelSpec

    bundle = load_bundle(DatasetSpec(name="census", training_size=300, test_size=100))
    from amulet.assess._data import architecture_spec

    factory = make_model_factory(architecture_spec(ModelSpec(file=str(path)), bundle))
    data = TensorData(bundle.train.x, bundle.train.y)
    subsets = [torch.arange(0, 150), torch.arange(150, 300)]
    from amulet.utils import TrainConfig

    config = TrainConfig(epochs=1, batch_size=50, lr=0.01)
    stacked = train_population(factory, data, subsets, recipe=config, seeds=[1, 2], mode="batched")
    single = train_population(factory, data, subsets, recipe=config, seeds=[1, 2], mode="sequential")
    assert stacked.mode == "batched" and single.mode == "sequential"
    for a, b in zip(stacked.models, single.models):
        for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.allclose(pa, pb, atol=1e-5), name


# --------------------------------------------------------------------------------------------------------------
# the three models through every risk that applies to their data (slow)


def _run_full(tmp_path: Path, model_file: Path, dataset: str, size: int) -> None:
    defenses = ["outlier_removal", "adversarial_training", "dp_sgd"]
    spec = _spec(model_file, dataset, _risks(dataset, fast=False), defenses, size)
    results = run_assessment(spec, cache_dir=tmp_path / "cache")
    errors = [f"{c.row} x {c.attack}: {c.reason}" for c in results.cells if c.status == "error"]
    assert not errors, "\n".join(errors)
    ok = [c for c in results.cells if c.status == "ok"]
    assert ok and all(c.reason for c in results.cells if c.status == "not_run")
    # "not run" is structural (the risk cannot apply to this model or data), so it cannot depend on the row:
    # each attack either runs in every row or in none
    by_attack: dict[str, set[str]] = {}
    for cell in results.cells:
        by_attack.setdefault(cell.attack, set()).add(cell.status)
    mixed = {attack: statuses for attack, statuses in by_attack.items() if len(statuses) > 1}
    assert not mixed, f"attacks that ran in some rows and not in others: {mixed}"
    # DP-SGD trained the uploaded graph (torch.func per-sample gradients) and its cells carry the spent epsilon
    dp_ok = [c for c in ok if c.row == "dp_sgd"]
    assert dp_ok and all(c.metrics["model.privacy_epsilon"] > 0 for c in dp_ok)


@pytest.mark.slow
def test_residual_mlp_pt2_on_census_every_risk(tmp_path: Path):
    model = _trained(ResidualMLP(_census_width(), 2), "census", rows=1000, epochs=3)
    _run_full(tmp_path, _export(tmp_path, model, "census", "resmlp.pt2"), "census", 800)


@pytest.mark.slow
def test_depthwise_cnn_pt2_on_fmnist_every_risk(tmp_path: Path):
    model = _trained(DepthwiseCNN(10), "fmnist", rows=1000, epochs=2)
    _run_full(tmp_path, _export(tmp_path, model, "fmnist", "dwcnn.pt2"), "fmnist", 600)


@pytest.mark.slow
def test_onnx_model_on_census_every_risk(tmp_path: Path):
    model = _trained(
        nn.Sequential(nn.Linear(_census_width(), 64), nn.LayerNorm(64), nn.ReLU(), nn.Linear(64, 2)),
        "census",
        rows=1000,
        epochs=3,
    )
    _run_full(tmp_path, _export(tmp_path, model, "census", "mlp.onnx"), "census", 800)


def test_spec_model_file_is_exclusive_and_checked(tmp_path: Path):
    from amulet.assess import SpecError, load_spec

    model_file = tmp_path / "m.pt2"
    model_file.write_bytes(b"PK")
    base = {"dataset": {"name": "census"}, "risks": [{"risk": "evasion"}]}
    spec = load_spec({**base, "model": {"file": str(model_file)}})
    assert spec.model.file == str(model_file)
    # a dumped spec (defaults written out) loads back unchanged: the worker re-reads the specs it stored
    assert load_spec(spec.model_dump(mode="json")) == spec
    with pytest.raises(SpecError, match=r"model: .*remove 'architecture', 'weights'"):
        load_spec({**base, "model": {"file": str(model_file), "architecture": "simplecnn", "weights": "w"}})
    with pytest.raises(SpecError, match=r"\.pt2 \(torch\.export\) or \.onnx"):
        load_spec({**base, "model": {"file": str(tmp_path / "m.pkl")}})
    with pytest.raises(SpecError, match=r"model\.file: the model file .* does not exist"):
        load_spec({**base, "model": {"file": str(tmp_path / "missing.onnx")}})
