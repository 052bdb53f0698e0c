"""DP-SGD on uploaded graphs (.pt2/.onnx): per-sample gradients through torch.func, handed to Opacus' optimizer,
so sampling, clipping, noise and accounting are Opacus'; a graph with BatchNorm is refused with the reason."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from amulet import registry
from amulet.assess import run_assessment
from amulet.assess._data import GRAPH_ARCHITECTURE, make_model_factory
from amulet.exceptions import NotApplicableError
from amulet.io import GraphModel, export_graph_model, inspect_model_file, load_graph_model
from amulet.membership_inference.defenses import dp_train
from amulet.membership_inference.defenses._stacked_dpsgd import dp_train_stacked
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, derive_seed, get_accuracy, train_population

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class ResidualMLP(nn.Module):
    """Residual MLP with LayerNorm and GELU, as a user would bring it (not in the registry)."""

    def __init__(self, d_in: int, k: int = 2, width: int = 32) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, width)
        self.norm1 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.fc2 = nn.Linear(width, width)
        self.head = nn.Linear(width, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        h = h + nn.functional.gelu(self.fc1(self.norm1(h)))
        h = h + nn.functional.gelu(self.fc2(self.norm2(h)))
        return self.head(h)


class WithBatchNorm(nn.Module):
    def __init__(self, d_in: int, k: int = 2) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, 16)
        self.bn = nn.BatchNorm1d(16)
        self.out = nn.Linear(16, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.bn(self.fc(x))))


@pytest.fixture(scope="module")
def census_rows(census) -> tuple[TensorData, TensorData]:
    """(train pool, test rows) of the real census data, shuffled with a fixed seed."""
    order = np.random.default_rng(0).permutation(len(census.x_train))
    train = TensorData.from_numpy(census.x_train[order], census.y_train[order])
    test = TensorData.from_numpy(census.x_test[:3000], census.y_test[:3000])
    return train, test


def _export(tmp_path: Path, model: nn.Module, name: str) -> Path:
    (path,) = export_graph_model(tmp_path / name, model=model.eval(), dataset="census")
    return path


def _gap(graph: nn.Module, module: nn.Module) -> float:
    """Largest difference between a graph's parameters and the module's (the graph's are under ``graph.``)."""
    g = graph.state_dict()
    return max(float((g[f"graph.{name}"] - value).abs().max()) for name, value in module.state_dict().items())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_graph_dp_sgd_equals_opacus_hooks_on_the_same_module(tmp_path: Path, census_rows, optimizer: str):
    """One-by-one DP-SGD on the uploaded graph (torch.func per-sample gradients, Opacus' optimizer) equals Opacus'
    hooked DP-SGD on the nn.Module the graph was exported from: same seed, same Poisson batches (empty ones
    included), same noise, same epsilon, weights equal to float rounding."""
    train, _ = census_rows
    data = train.subset(np.arange(120))
    torch.manual_seed(0)
    module = ResidualMLP(data.x.shape[1], width=16)
    graph = load_graph_model(_export(tmp_path, module, "resmlp.pt2"))
    assert isinstance(graph, GraphModel)
    module = copy.deepcopy(module).train()
    assert _gap(graph, module) == 0.0

    def make(model: nn.Module) -> torch.optim.Optimizer:
        if optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=0.1)
        return torch.optim.Adam(model.parameters(), lr=0.01)

    options = dict(noise_multiplier=1.0, max_grad_norm=0.5, delta=1e-5, epochs=2, seed=3)
    # expected batch 3 of 120 rows: Poisson sampling draws some empty batches (Opacus adds noise to a zero sum)
    on_graph = dp_train(graph, make(graph), data.loader(3), nn.CrossEntropyLoss(), **options)
    on_module = dp_train(module, make(module), data.loader(3), nn.CrossEntropyLoss(), **options)
    assert on_graph.batch_sizes == on_module.batch_sizes and 0 in on_graph.batch_sizes
    assert on_graph.steps == on_module.steps == 80
    assert on_graph.epsilon == on_module.epsilon > 0
    assert on_graph.replaced_modules == []
    assert isinstance(on_graph.model, GraphModel) and not on_graph.model.training
    assert on_graph.model.privacy_epsilon_ == on_graph.epsilon
    assert not any(hasattr(p, "grad_sample") for p in on_graph.model.parameters())
    assert _gap(on_graph.model, on_module.model) < 1e-6
    assert _gap(on_graph.model, ResidualMLP(data.x.shape[1], width=16)) > 1e-2  # it trained


def test_graph_trains_under_dp_sgd_one_by_one_and_stacked_above_the_majority_rate(tmp_path: Path, census_rows):
    """The dp_sgd stage (its default training: 10 epochs, batch 64, Adam at lr 0.01) on a .pt2 residual MLP of
    census, re-initialised as the engine does: one by one and as a stacked population, equal to each other,
    above the majority rate, with the spent epsilon on each model."""
    train, test = census_rows
    torch.manual_seed(0)
    path = _export(tmp_path, ResidualMLP(train.x.shape[1]), "resmlp.pt2")
    config = {"format": "pt2", "sha256": inspect_model_file(path).sha256}
    factory = make_model_factory(
        {
            "architecture": GRAPH_ARCHITECTURE,
            "file": str(path),
            "config": config,
            "input_shape": [train.x.shape[1]],
            "num_classes": 2,
        }
    )
    info = registry.get_defense("dp_sgd")
    recipe = Recipe(TrainConfig(epochs=2, batch_size=256, lr=1e-3), [info.make_stage(info.params())])
    assert recipe.stacking_reason() == ""
    subsets = [np.arange(0, 1200), np.arange(1200, 2400)]
    seeds = [derive_seed(0, "graph-dp", k) for k in range(2)]
    stacked = train_population(factory, train, subsets, recipe=recipe, seeds=seeds)
    one_by_one = train_population(factory, train, subsets, recipe=recipe, seeds=seeds, mode="sequential")
    assert stacked.mode == "batched" and one_by_one.mode == "sequential"
    majority = 100 * max(float(test.y.double().mean()), 1 - float(test.y.double().mean()))
    for a, b in zip(stacked.models, one_by_one.models):
        assert isinstance(a, GraphModel) and isinstance(b, GraphModel)
        gap = max(float((a.state_dict()[k] - v).abs().max()) for k, v in b.state_dict().items())
        assert gap < 1e-5
        assert a.privacy_epsilon_ == b.privacy_epsilon_ and 0 < b.privacy_epsilon_ <= 8
        assert b.privacy_delta_ == 1e-5 and b.privacy_noise_multiplier_ == 1.0
        accuracy = get_accuracy(b, test.loader(3000), "cpu")
        print(f"graph DP-SGD: accuracy {accuracy:.2f}% (majority {majority:.2f}%) at epsilon {b.privacy_epsilon_:.2f}")
        # 3,000 test rows: 2 points above the majority rate is far beyond sampling noise (std ~0.8 points)
        assert accuracy > majority + 2.0, (accuracy, majority)
    # recipe.train (the engine's one-by-one path for a row) gives the same model as the population's member
    single = recipe.train(factory, train.subset(subsets[0]), seed=seeds[0])
    reference = one_by_one.models[0].state_dict()
    assert max(float((single.state_dict()[k] - v).abs().max()) for k, v in reference.items()) < 1e-6


def test_graph_with_batchnorm_is_refused_with_the_reason(tmp_path: Path, census_rows):
    train, _ = census_rows
    data = train.subset(np.arange(64))
    graph = load_graph_model(_export(tmp_path, WithBatchNorm(data.x.shape[1]), "bn.pt2"))
    with pytest.raises(NotApplicableError, match=r"BatchNorm.*per-sample gradient.*GroupNorm.*LayerNorm"):
        dp_train(
            graph,
            torch.optim.SGD(graph.parameters(), lr=0.1),
            data.loader(16),
            nn.CrossEntropyLoss(),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            delta=1e-5,
            epochs=1,
        )
    with pytest.raises(NotApplicableError, match="BatchNorm"):
        dp_train_stacked(
            [graph, copy.deepcopy(graph)],
            [data, data],
            config=TrainConfig(epochs=1, batch_size=16),
            seeds=[0, 1],
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            delta=1e-5,
        )
    # never converted: the dp_sgd stage's structure for a graph is the graph itself
    info = registry.get_defense("dp_sgd")
    recipe = Recipe(TrainConfig(), [info.make_stage(info.params())])
    assert recipe.architecture(lambda: graph)() is graph


def test_assessment_reports_the_batchnorm_graph_dp_row_as_not_run(tmp_path: Path, census):
    """Through the engine: the dp_sgd row of a BatchNorm graph is not_run with the reason; the baseline runs."""
    torch.manual_seed(0)
    path = _export(tmp_path, WithBatchNorm(census.x_train.shape[1]), "bn.pt2")
    spec = {
        "name": "batchnorm graph under dp_sgd",
        "dataset": {"name": "census", "training_size": 300, "test_size": 150},
        "model": {"file": str(path)},
        "training": {"epochs": 1, "batch_size": 64},
        "defenses": [{"defense": "dp_sgd", "params": {"epochs": 1}}],
        "risks": [{"risk": "evasion", "attack": "pgd", "params": {"iterations": 2, "max_samples": 50}}],
        "seeds": [0],
    }
    results = run_assessment(spec, cache_dir=tmp_path / "cache")
    by_row = {c.row: c for c in results.cells}
    assert by_row["baseline"].status == "ok", by_row["baseline"].reason
    assert by_row["dp_sgd"].status == "not_run"
    assert "BatchNorm" in by_row["dp_sgd"].reason and "GroupNorm" in by_row["dp_sgd"].reason


def test_graph_dp_sgd_with_physical_batches_and_batch_transforms(tmp_path: Path, census_rows):
    """Opacus' physical batch splitting accumulates the torch.func per-sample gradients to the same step; a
    batch stage (adversarial training) next to DP-SGD transforms the graph's batches before its private step."""
    train, _ = census_rows
    data = train.subset(np.arange(200))
    torch.manual_seed(0)
    path = _export(tmp_path, ResidualMLP(data.x.shape[1], width=16), "resmlp.pt2")
    results = []
    for physical in (None, 7):
        graph = load_graph_model(path)
        results.append(
            dp_train(
                graph,
                torch.optim.SGD(graph.parameters(), lr=0.1),
                data.loader(20),
                nn.CrossEntropyLoss(),
                noise_multiplier=1.0,
                max_grad_norm=0.5,
                delta=1e-5,
                epochs=1,
                seed=3,
                max_physical_batch_size=physical,
            )
        )
    whole, split = results
    assert whole.steps == split.steps == 10 and whole.epsilon == split.epsilon
    gap = max(float((whole.model.state_dict()[k] - v).abs().max()) for k, v in split.model.state_dict().items())
    assert gap < 1e-6

    dp, adversarial = registry.get_defense("dp_sgd"), registry.get_defense("adversarial_training")
    stages = [dp.make_stage(dp.params(epochs=1)), adversarial.make_stage(adversarial.params(iterations=1))]
    plain = Recipe(TrainConfig(epochs=1, batch_size=64), stages[:1]).train(lambda: load_graph_model(path), data, seed=0)
    robust = Recipe(TrainConfig(epochs=1, batch_size=64), stages).train(lambda: load_graph_model(path), data, seed=0)
    assert isinstance(robust, GraphModel) and robust.privacy_epsilon_ == plain.privacy_epsilon_ > 0
    gap = max(float((robust.state_dict()[k] - v).abs().max()) for k, v in plain.state_dict().items())
    assert gap > 1e-4  # trained on the perturbed batches


class Scaled(nn.Module):
    """An MLP that scales its input by a constant buffer (a graph whose buffers DP-SGD must carry, not train)."""

    def __init__(self, d_in: int, k: int = 2) -> None:
        super().__init__()
        self.register_buffer("scale", torch.linspace(0.5, 1.5, d_in))
        self.fc = nn.Linear(d_in, 16)
        self.norm = nn.LayerNorm(16)
        self.out = nn.Linear(16, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.norm(self.fc(x * self.scale))))


def test_graph_with_constant_buffers_trains_stacked_like_one_by_one(tmp_path: Path, census_rows):
    train, _ = census_rows
    torch.manual_seed(0)
    path = _export(tmp_path, Scaled(train.x.shape[1]), "scaled.pt2")
    assert [name for name, _ in load_graph_model(path).named_buffers()] == ["graph.scale"]
    info = registry.get_defense("dp_sgd")
    recipe = Recipe(TrainConfig(), [info.make_stage(info.params(epochs=2, batch_size=32))])
    subsets = [np.arange(0, 150), np.arange(150, 280)]
    stacked = train_population(lambda: load_graph_model(path), train, subsets, recipe=recipe, seeds=[1, 2])
    one_by_one = train_population(
        lambda: load_graph_model(path), train, subsets, recipe=recipe, seeds=[1, 2], mode="sequential"
    )
    assert stacked.mode == "batched"
    for a, b in zip(stacked.models, one_by_one.models):
        assert max(float((a.state_dict()[k] - v).abs().max()) for k, v in b.state_dict().items()) < 1e-5
        assert torch.equal(a.state_dict()["graph.scale"], torch.linspace(0.5, 1.5, train.x.shape[1]))
        assert a.privacy_epsilon_ == b.privacy_epsilon_ > 0
