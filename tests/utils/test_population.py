"""The batched population trainer: same models as sequential training, fallbacks, caching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.recipes import BatchStage, LoopStage, PostStage, Recipe
from amulet.utils import (
    StackedOptimizer,
    TensorData,
    TrainConfig,
    derive_seed,
    population_logits,
    predict_logits,
    train_population,
)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


@pytest.fixture
def toy(seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] - x[:, 1] + 0.3 * torch.randn(300, generator=g) > 0).long()
    return TensorData(x, y)


def _max_weight_gap(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_batched_equals_sequential_weights(toy: TensorData, optimizer: str, seed: int) -> None:
    # Unequal subset sizes: some models run out of batches before others, and one ends on a batch of one
    # (skipped with BatchNorm), so the per-model masks and step counts are exercised.
    g = torch.Generator().manual_seed(seed)
    sizes = [120, 120, 97, 161, 33]
    subsets = [torch.randperm(len(toy), generator=g)[:n] for n in sizes]
    seeds = [derive_seed(seed, "pop", k) for k in range(len(sizes))]
    recipe = Recipe(TrainConfig(epochs=3, batch_size=32, optimizer=optimizer, weight_decay=1e-3))
    batched = train_population(_mlp, toy, subsets, recipe=recipe, seeds=seeds)
    sequential = train_population(_mlp, toy, subsets, recipe=recipe, seeds=seeds, mode="sequential")
    assert batched.mode == "batched" and sequential.mode == "sequential"
    for a, b in zip(batched.models, sequential.models):
        assert _max_weight_gap(a, b) < 1e-4
        assert not a.training
    # the models really differ from each other (own data, own seed)
    assert _max_weight_gap(batched.models[0], batched.models[1]) > 1e-2


def test_sequential_path_is_recipe_train(toy: TensorData, seed: int) -> None:
    recipe = Recipe(TrainConfig(epochs=2, batch_size=50))
    idx = torch.arange(0, 200)
    pop = train_population(_mlp, toy, [idx], recipe=recipe, seeds=[seed], mode="sequential")
    direct = recipe.train(_mlp, toy.subset(idx), seed=seed)
    assert _max_weight_gap(pop.models[0], direct) == 0.0


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_stacked_optimizer_matches_torch_optim_with_masks(optimizer: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    K = 6
    config = TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=0.01, momentum=0.8)
    init = torch.randn(K, 4, 5, generator=g)
    stacked = {"w": init.clone().requires_grad_(True)}
    opt = StackedOptimizer(stacked, config, K)
    singles = [init[k].clone().requires_grad_(True) for k in range(K)]
    if optimizer == "adam":
        torch_opts = [torch.optim.Adam([w], lr=0.05, weight_decay=0.01) for w in singles]
    else:
        torch_opts = [torch.optim.SGD([w], lr=0.05, weight_decay=0.01, momentum=0.8) for w in singles]
    # step counts drift apart in runs of models (as populations of different sizes do) and per model
    masks = [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [0, 1, 1, 1, 1, 0],
        [1, 0, 1, 1, 0, 1],
        [1, 1, 1, 1, 1, 1],
        [0, 0, 1, 0, 0, 1],
    ]
    for mask in masks:
        grads = torch.randn(K, 4, 5, generator=g)
        stacked["w"].grad = grads.clone()
        opt.step(torch.tensor(mask, dtype=torch.bool))
        for k in range(K):
            if mask[k]:
                singles[k].grad = grads[k].clone()
                torch_opts[k].step()
    for k in range(K):
        torch.testing.assert_close(stacked["w"][k].detach(), singles[k].detach(), rtol=1e-5, atol=1e-6)


def test_batch_stage_without_stacked_transform_falls_back_to_recipe_train(toy: TensorData, seed: int) -> None:
    calls = []

    def identity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):
        calls.append(len(x))
        return x, y

    recipe = Recipe(TrainConfig(epochs=1, batch_size=100), [BatchStage(defense="identity", transform=identity)])
    pop = train_population(_mlp, toy, [torch.arange(100), torch.arange(100, 300)], recipe=recipe, seeds=[1, 2])
    assert pop.mode == "sequential" and "no stacked_transform" in pop.reason
    assert calls == [100, 100, 100]  # the stage really ran, for each model
    with pytest.raises(ValueError, match="cannot batch"):
        train_population(_mlp, toy, [torch.arange(100)], recipe=recipe, seeds=[1], mode="batched")


def test_loop_stage_recipes_train_one_model_at_a_time(toy: TensorData) -> None:
    calls = []

    def loop(model: nn.Module, data: TensorData, **kwargs) -> nn.Module:
        calls.append(len(data))
        return model

    recipe = Recipe(TrainConfig(epochs=1), [LoopStage(defense="own_loop", train=loop)])
    pop = train_population(_mlp, toy, [torch.arange(50), torch.arange(80)], recipe=recipe, seeds=[1, 2])
    assert pop.mode == "sequential" and "'own_loop' replaces the training loop" in pop.reason
    assert calls == [50, 80]


def _plain_mlp() -> nn.Module:
    # No BatchNorm: a Linear bias feeding BatchNorm has a zero gradient up to float noise, which Adam scales
    # up to full steps, so only models without that layout can be compared weight by weight.
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))


def _adversarial_stage(mix_clean: float = 0.25) -> BatchStage:
    from amulet import registry

    info = registry.get_defense("adversarial_training")
    # the toy features are standard normal, not in [0, 1]: unbounded PGD
    params = info.params(epsilon=0.1, iterations=3, mix_clean=mix_clean, clip_min=None, clip_max=None)
    stage = info.make_stage(params)
    assert isinstance(stage, BatchStage) and stage.stacked_transform is not None
    return stage


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_adversarially_trained_population_is_batched_and_equals_sequential(
    toy: TensorData, optimizer: str, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    sizes = [120, 97, 161, 33]  # unequal: models stop at different steps, one ends on a batch of one
    subsets = [torch.randperm(len(toy), generator=g)[:n] for n in sizes]
    seeds = [derive_seed(seed, "adv-pop", k) for k in range(len(sizes))]
    recipe = Recipe(TrainConfig(epochs=3, batch_size=32, optimizer=optimizer), [_adversarial_stage()])
    batched = train_population(_plain_mlp, toy, subsets, recipe=recipe, seeds=seeds)
    sequential = train_population(_plain_mlp, toy, subsets, recipe=recipe, seeds=seeds, mode="sequential")
    assert batched.mode == "batched" and sequential.mode == "sequential"
    for a, b in zip(batched.models, sequential.models):
        assert _max_weight_gap(a, b) < 1e-5
    # the PGD batches mattered: plain training from the same seeds gives other weights
    plain = train_population(_plain_mlp, toy, subsets, recipe=Recipe(recipe.config), seeds=seeds)
    assert _max_weight_gap(plain.models[0], batched.models[0]) > 1e-4


def test_adversarially_trained_batchnorm_population_predicts_like_sequential(toy: TensorData, seed: int) -> None:
    subsets = [torch.arange(0, 150), torch.arange(150, 300)]
    recipe = Recipe(TrainConfig(epochs=3, batch_size=32), [_adversarial_stage(mix_clean=0.0)])
    batched = train_population(_mlp, toy, subsets, recipe=recipe, seeds=[seed, seed + 1])
    sequential = train_population(_mlp, toy, subsets, recipe=recipe, seeds=[seed, seed + 1], mode="sequential")
    assert batched.mode == "batched"
    agree = population_logits(batched.models, toy.x).argmax(-1) == population_logits(sequential.models, toy.x).argmax(
        -1
    )
    assert float(agree.double().mean()) > 0.98


def test_data_and_post_stages_run_per_model_around_the_batched_training(toy: TensorData, seed: int) -> None:
    from amulet import registry

    info = registry.get_defense("outlier_removal")
    removal = info.make_stage(info.params(percent=20, k=3))
    seen: list[tuple[int, int]] = []

    def record(model: nn.Module, data: TensorData, *, seed: int, **kwargs) -> nn.Module:
        seen.append((seed, len(data)))
        with torch.no_grad():
            model[-1].bias.add_(1.0)  # a visible, deterministic post-training change
        return model

    recipe = Recipe(
        TrainConfig(epochs=2, batch_size=32),
        [removal, _adversarial_stage(), PostStage(defense="record", apply=record)],
    )
    subsets = [torch.arange(0, 100), torch.arange(100, 250), torch.arange(250, 300)]
    seeds = [seed, seed + 1, seed + 2]
    batched = train_population(_plain_mlp, toy, subsets, recipe=recipe, seeds=seeds)
    assert batched.mode == "batched"
    assert seen == [(seeds[0], 80), (seeds[1], 120), (seeds[2], 40)]  # 20 % of each model's rows removed
    seen.clear()
    sequential = train_population(_plain_mlp, toy, subsets, recipe=recipe, seeds=seeds, mode="sequential")
    assert seen == [(seeds[0], 80), (seeds[1], 120), (seeds[2], 40)]
    for a, b in zip(batched.models, sequential.models):
        assert _max_weight_gap(a, b) < 1e-5


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(6, 8, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x.unsqueeze(1))
        return self.head(out[:, -1])


def test_unknown_modules_fall_back(toy: TensorData) -> None:
    pop = train_population(_Recurrent, toy, [torch.arange(64)] * 2, recipe=TrainConfig(epochs=1), seeds=[1, 2])
    assert pop.mode == "sequential" and "GRU" in pop.reason


def test_dropout_and_cnn_models_are_batched(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    data = TensorData(torch.rand(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g))

    def cnn() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(36, 3),
        )

    pop = train_population(
        cnn, data, [torch.arange(32), torch.arange(32, 64)], recipe=TrainConfig(epochs=2, batch_size=8), seeds=[1, 2]
    )
    assert pop.mode == "batched"
    logits = population_logits(pop.models, data.x)
    assert logits.shape == (2, 64, 3)
    torch.testing.assert_close(logits[1], predict_logits(pop.models[1], data.x), rtol=1e-5, atol=1e-5)


def test_cache_is_reused_only_when_everything_matches(toy: TensorData, tmp_path, seed: int) -> None:
    subsets = [torch.arange(0, 150), torch.arange(150, 300)]
    seeds = [seed, seed + 1]
    recipe = Recipe(TrainConfig(epochs=1, batch_size=64))
    first = train_population(_mlp, toy, subsets, recipe=recipe, seeds=seeds, cache_dir=tmp_path)
    again = train_population(_mlp, toy, subsets, recipe=recipe, seeds=seeds, cache_dir=tmp_path)
    assert first.n_cached == 0 and again.n_cached == 2 and again.mode == "cached"
    for a, b in zip(first.models, again.models):
        assert _max_weight_gap(a, b) == 0.0

    def wider() -> nn.Module:
        return nn.Sequential(nn.Linear(6, 17), nn.BatchNorm1d(17), nn.ReLU(), nn.Linear(17, 2))

    changed = {
        "architecture": dict(model_factory=wider),
        "epochs": dict(recipe=Recipe(TrainConfig(epochs=2, batch_size=64))),
        "recipe": dict(recipe=Recipe(TrainConfig(epochs=1, batch_size=64, lr=0.01))),
        "data": dict(subsets=[torch.arange(1, 151), torch.arange(150, 300)]),
        "seed": dict(seeds=[seed + 5, seed + 1]),
    }
    for what, override in changed.items():
        kwargs = dict(model_factory=_mlp, subsets=subsets, recipe=recipe, seeds=seeds) | override
        pop = train_population(kwargs.pop("model_factory"), toy, kwargs.pop("subsets"), cache_dir=tmp_path, **kwargs)
        expected = 1 if what in ("data", "seed") else 0  # only the untouched second model may be reused
        assert pop.n_cached == expected, what


def test_length_mismatch_is_rejected(toy: TensorData) -> None:
    with pytest.raises(ValueError, match="one seed per subset"):
        train_population(_mlp, toy, [torch.arange(10)], recipe=TrainConfig(), seeds=[1, 2])


def test_linearnet_population_on_census_matches_sequential_accuracy(census, seed: int) -> None:
    from amulet.models import LinearNet

    train = TensorData.from_numpy(census.x_train, census.y_train)
    test = TensorData.from_numpy(census.x_test[:4000], census.y_test[:4000])
    K = 16
    g = torch.Generator().manual_seed(seed)
    subsets = [torch.randperm(len(train), generator=g)[:600] for _ in range(K)]
    seeds = [derive_seed(seed, "census-pop", k) for k in range(K)]
    recipe = Recipe(TrainConfig(epochs=3, batch_size=64))

    def factory() -> nn.Module:
        return LinearNet(census.num_features, census.num_classes)

    batched = train_population(factory, train, subsets, recipe=recipe, seeds=seeds)
    sequential = train_population(factory, train, subsets, recipe=recipe, seeds=seeds, mode="sequential")
    assert batched.mode == "batched"

    def accuracies(models: list[nn.Module]) -> torch.Tensor:
        return (population_logits(models, test.x).argmax(-1) == test.y).double().mean(1) * 100

    acc_b, acc_s = accuracies(batched.models), accuracies(sequential.models)
    majority = 100 * max(float(test.y.double().mean()), 1 - float(test.y.double().mean()))
    assert abs(float(acc_b.mean()) - float(acc_s.mean())) < 1.0
    assert float(acc_b.mean()) > majority + 2


def test_the_population_mode_setting_applies_when_no_mode_is_given(
    toy: TensorData, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amulet.settings import get_settings

    subsets, recipe = [torch.arange(100), torch.arange(100, 200)], Recipe(TrainConfig(epochs=1))
    assert train_population(_mlp, toy, subsets, recipe=recipe, seeds=[1, 2]).mode == "batched"
    monkeypatch.setenv("AMULET_POPULATION_MODE", "sequential")
    get_settings.cache_clear()
    try:
        pop = train_population(_mlp, toy, subsets, recipe=recipe, seeds=[1, 2])
        assert pop.mode == "sequential" and pop.reason == "sequential mode requested"
        assert train_population(_mlp, toy, subsets, recipe=recipe, seeds=[1, 2], mode="auto").mode == "batched"
    finally:
        monkeypatch.delenv("AMULET_POPULATION_MODE")
        get_settings.cache_clear()


def test_stacked_training_gives_the_same_weights_at_any_thread_count(
    toy: TensorData, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stacked populations use the free cores (layer1_threads) although single models keep one thread: that is
    # only sound because the stacked kernels give the same numbers at any thread count
    from amulet.settings import get_settings

    g = torch.Generator().manual_seed(seed)
    subsets = [torch.randperm(len(toy), generator=g)[:150] for _ in range(6)]
    seeds = [derive_seed(seed, "threads", k) for k in range(6)]
    recipe = Recipe(TrainConfig(epochs=2, batch_size=32))

    def wide() -> nn.Module:  # wide enough for torch to split its products and reductions over threads
        return nn.Sequential(nn.Linear(6, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 2))

    runs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("AMULET_NUM_THREADS", threads)
        get_settings.cache_clear()
        population = train_population(wide, toy, subsets, recipe=recipe, seeds=seeds, mode="batched")
        runs.append([m.state_dict() for m in population.models])
    get_settings.cache_clear()
    for one, two in zip(*runs):
        assert all(torch.equal(one[k], two[k]) for k in one)
