"""Adversarial debiasing: parameters, per-batch updates, epochs, and the recipe stage."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amulet import registry
from amulet.discriminatory_behavior.defenses import AdversarialDebiasing
from amulet.exceptions import InvalidParameterError, NotApplicableError, NotRunError
from amulet.recipes import BatchStage, LoopStage, Recipe
from amulet.utils import TensorData, TrainConfig


def _data(n: int = 96, seed: int = 0) -> TensorData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen)
    z = torch.stack([(x[:, 0] > 0), (x[:, 1] > 0)], 1).long()
    y = ((x[:, 0] + x[:, 2]) > 0).long()
    return TensorData(x, y, z)


def _defense(data: TensorData, *, epochs: int = 3, pre: int = 2, lambdas=(1.0, 1.0), n_attrs: int = 2, bs: int = 16):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    loader = data.loader(bs, with_z=True)
    return AdversarialDebiasing(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-2),
        loader,
        loader,
        n_attrs,
        2,
        torch.tensor(lambdas) if isinstance(lambdas, tuple) else lambdas,
        "cpu",
        epochs=epochs,
        pretrain_adversary_epochs=pre,
    )


@pytest.mark.parametrize(("epochs", "pre"), [(1, 0), (3, 2), (4, 5)])
def test_epochs_and_pretraining_respected_per_batch(epochs: int, pre: int) -> None:
    data = _data()
    defense = _defense(data, epochs=epochs, pre=pre)
    defense.train_fair()
    n_batches = 96 // 16
    assert defense.n_classifier_steps_ == epochs * n_batches
    # every classifier step follows adversary_steps (default 10) adversary steps
    assert defense.n_adversary_steps_ == pre * n_batches + 10 * epochs * n_batches


def test_training_changes_model_and_returns_it_in_eval_mode() -> None:
    data = _data()
    defense = _defense(data)
    before = [p.detach().clone() for p in defense.model.parameters()]
    model = defense.train_fair()
    assert model is defense.model and not model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    aucs = defense.adversary_report()
    assert len(aucs) == 2 and all(0.0 <= a <= 1.0 for a in aucs)


def test_same_seed_same_result() -> None:
    data = _data()
    a, b = _defense(data), _defense(data)
    a.train_fair(), b.train_fair()
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("lambdas", [(1.0,), (1.0, 2.0, 3.0), (1.0, -1.0), (float("nan"), 1.0), "x"])
def test_lambdas_validated_against_attributes(lambdas) -> None:
    with pytest.raises(InvalidParameterError, match="'lambdas' parameter of AdversarialDebiasing"):
        _defense(_data(), lambdas=lambdas).train_fair()


def _trained(lambdas) -> list[torch.Tensor]:
    return [p.detach() for p in _defense(_data(), epochs=1, pre=0, lambdas=lambdas).train_fair().parameters()]


@pytest.mark.parametrize(
    ("lambdas", "per_attribute"), [(0.5, (0.5, 0.5)), (torch.tensor(0.5), (0.5, 0.5)), ([0.5, 0.0], (0.5, 0.0))]
)
def test_scalar_or_per_attribute_lambdas_accepted(lambdas, per_attribute) -> None:
    """A number weighs every attribute alike; a sequence gives one weight per attribute (same model as the tensor)."""
    for got, want in zip(_trained(lambdas), _trained(per_attribute), strict=True):
        torch.testing.assert_close(got, want)


def test_per_attribute_lambdas_change_the_model() -> None:
    """The weights enter the loss: dropping the second attribute's weight gives another model."""
    assert any(not torch.equal(a, b) for a, b in zip(_trained((0.5, 0.5)), _trained((0.5, 0.0))))


def test_attribute_count_mismatch_named() -> None:
    with pytest.raises(InvalidParameterError, match="'n_sensitive_attrs' parameter"):
        _defense(_data(), n_attrs=3, lambdas=(1.0, 1.0, 1.0)).train_fair()


def test_loader_without_z_named() -> None:
    data = _data()
    defense = _defense(data)
    defense.train_loader = DataLoader(TensorDataset(data.x, data.y), batch_size=16)
    with pytest.raises(InvalidParameterError, match="'train_loader' parameter"):
        defense.train_fair()


def test_discmodel_before_training() -> None:
    with pytest.raises(NotRunError, match="train_fair"):
        _ = _defense(_data()).discmodel


def _stage(**params) -> LoopStage:
    info = registry.get_defense("adversarial_debiasing")
    stage = info.make_stage(info.params(**params))
    assert isinstance(stage, LoopStage) and stage.defense == "adversarial_debiasing"
    return stage


def test_stage_requires_sensitive_attributes() -> None:
    data = _data()
    recipe = Recipe(TrainConfig(epochs=2, batch_size=32), [_stage()])
    with pytest.raises(NotApplicableError, match="sensitive attributes"):
        recipe.train(lambda: nn.Linear(5, 2), TensorData(data.x, data.y), seed=0)


def test_stage_applies_batch_transforms_of_stacked_defenses() -> None:
    """A stacked batch stage (here a counting transform) runs on every batch of the debiasing loop."""
    calls: list[int] = []

    def transform(model, x, y, gen):
        calls.append(len(x))
        return x + 0.0 * torch.rand(x.shape, generator=gen), y

    data = _data()
    stages = [BatchStage(defense="counting", transform=transform), _stage(pretrain_classifier_epochs=1)]
    model = Recipe(TrainConfig(epochs=3, batch_size=32), stages).train(lambda: nn.Linear(5, 2), data, seed=3)
    assert not model.training
    # 1 plain epoch + 2 debiasing epochs, 3 batches each (the adversary learns on clean inputs)
    assert len(calls) == (1 + 2) * 3
    assert _stage(fairness_weight=3.0).params["fairness_weight"] == 3.0  # the stage records its parameters


def test_stage_is_deterministic() -> None:
    data = _data()
    recipe = Recipe(TrainConfig(epochs=2, batch_size=32), [_stage()])
    a = recipe.train(lambda: nn.Linear(5, 2), data, seed=11)
    b = recipe.train(lambda: nn.Linear(5, 2), data, seed=11)
    torch.testing.assert_close(a.weight, b.weight)
