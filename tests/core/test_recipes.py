"""Recipes: stage composition, cache keys and determinism (on a real small census-like tensor problem)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.recipes import BatchStage, DataStage, LoopStage, PostStage, Recipe
from amulet.utils import TensorData, TrainConfig, get_accuracy, train_model


def _data(n: int = 400, seed: int = 0) -> TensorData:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorData(x, y)


def _factory() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))


CONFIG = TrainConfig(epochs=5, batch_size=32, lr=1e-2)


def test_baseline_recipe_learns_and_is_deterministic():
    data = _data()
    a = Recipe(CONFIG).train(_factory, data, seed=3)
    b = Recipe(CONFIG).train(_factory, data, seed=3)
    c = Recipe(CONFIG).train(_factory, data, seed=4)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    assert get_accuracy(a, data.loader(128), "cpu") > 90
    assert not a.training


def test_stages_run_in_their_places():
    calls: list[str] = []

    def drop_half(model_factory, data, *, config, seed, device, progress):
        calls.append("data")
        return data.subset(torch.arange(len(data) // 2))

    def flip_sign(model, x, y, gen):
        calls.append("batch")
        return -x, y

    def loop(model, data, *, config, seed, device, batch_transform, progress):
        calls.append(f"loop:{len(data)}")
        assert batch_transform is not None
        x, _ = batch_transform(model, data.x[:2], data.y[:2], torch.Generator())
        assert torch.equal(x, -data.x[:2])
        return model

    def post(model, data, *, config, seed, device, progress):
        calls.append("post")
        return model

    recipe = Recipe(
        CONFIG,
        [
            DataStage("d", apply=drop_half),
            BatchStage("b", transform=flip_sign),
            LoopStage("l", train=loop),
            PostStage("p", apply=post),
        ],
    )
    recipe.train(_factory, _data(100), seed=0)
    assert calls == ["data", "loop:50", "batch", "post"]
    assert recipe.defense_keys == ("d", "b", "l", "p")
    assert recipe.name == "d+b+l+p"
    assert not recipe.is_plain
    assert recipe.stage("l") is recipe.stages[2]
    assert recipe.stage("missing") is None


def test_batch_transform_is_applied_by_default_loop():
    seen = []

    def record(model, x, y, gen):
        seen.append(len(x))
        return x, y

    Recipe(TrainConfig(epochs=1, batch_size=40), [BatchStage("b", transform=record)]).train(
        _factory, _data(100), seed=0
    )
    assert seen == [40, 40, 20]


def test_two_loop_stages_are_rejected_with_names():
    with pytest.raises(ValueError, match=r"'dp'.*'debias'"):
        Recipe(CONFIG, [LoopStage("dp"), LoopStage("debias")])


def test_key_changes_with_everything_that_determines_the_model():
    base = Recipe(CONFIG).key
    assert Recipe(CONFIG).key == base
    assert Recipe(TrainConfig(epochs=6, batch_size=32, lr=1e-2)).key != base
    assert (
        Recipe(CONFIG, [BatchStage("adv", params={"epsilon": 0.1})]).key
        != Recipe(CONFIG, [BatchStage("adv", params={"epsilon": 0.2})]).key
    )


def test_train_model_skips_a_final_batch_of_one_with_batchnorm():
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    before = [p.detach().clone() for p in model.parameters()]
    batches: list[int] = []
    model[1].register_forward_pre_hook(lambda module, args: batches.append(len(args[0])) if module.training else None)
    # 33 rows in batches of 32: BatchNorm cannot train on the final batch of one, so that batch alone is skipped.
    train_model(model, _data(33), config=TrainConfig(epochs=1, batch_size=32), seed=0)
    assert batches == [32]
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_train_config_rejects_bad_values_naming_the_field():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValidationError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
