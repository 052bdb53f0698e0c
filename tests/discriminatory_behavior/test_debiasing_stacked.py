"""Stacked adversarial debiasing: K models at once, each as the one-at-a-time recipe loop trains it."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from amulet import registry
from amulet.discriminatory_behavior.defenses import debiasing_loop, debiasing_stacked_loop, train_debiased_stacked
from amulet.exceptions import NotApplicableError
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, derive_seed, predict_logits, seeded_init, train_population

PARAMS = dict(
    fairness_weight=5.0,
    pretrain_classifier_epochs=1,
    pretrain_adversary_epochs=1,
    adversary_lr=1e-3,
    adversary_steps=3,
    average_decay=0.9,
)


def _data(seed: int, n: int) -> TensorData:
    # y depends on a feature that also carries the sensitive attribute, so an undefended model is unfair.
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, 2, (n, 2), generator=g)
    x = torch.randn(n, 6, generator=g)
    x[:, 0] += 1.5 * z[:, 0]
    y = (x[:, 0] + x[:, 1] + 0.3 * torch.randn(n, generator=g) > 0.75).long()
    return TensorData(x, y, z)


def _gap(a: nn.Module, b: nn.Module) -> float:
    """Largest weight difference, leaving out what BatchNorm makes arbitrary.

    The bias of a Linear layer followed by BatchNorm has a zero gradient up to rounding, which Adam scales up to
    full steps in a direction set by the rounding; BatchNorm subtracts it again (and its running mean follows
    it), so it does not change the function, but it differs between any two kernels.
    """
    sa, sb = a.state_dict(), b.state_dict()
    free = {k for k in sa if k.endswith("running_mean") or k.endswith("num_batches_tracked")}
    names = list(sa)
    for i, name in enumerate(names[:-1]):
        own_norm = name[: -len("bias")] + "running_mean" in sa  # BatchNorm's own bias is a real parameter
        if name.endswith(".bias") and not own_norm and any(n.endswith("running_mean") for n in names[i + 1 : i + 4]):
            free.add(name)
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if k not in free)


def _parity_gap(model: nn.Module, data: TensorData) -> float:
    pred = predict_logits(model, data.x).argmax(-1).double()
    z = data.z[:, 0].bool()  # type: ignore[index]
    return abs(float(pred[z].mean()) - float(pred[~z].mean()))


@pytest.mark.parametrize("batch_norm", [True, False])
def test_stacked_debiasing_equals_the_one_at_a_time_loop(batch_norm: bool, seed: int) -> None:
    # Unequal sizes: the models' passes, adversary streams and step counts all differ, and one size leaves a
    # final batch of one (skipped with BatchNorm).
    datas = [_data(seed + k, n) for k, n in enumerate([150, 97, 129])]
    seeds = [derive_seed(seed, "debias", k) for k in range(len(datas))]
    config = TrainConfig(epochs=4, batch_size=32)

    def factory() -> nn.Module:
        return LinearNet(6, 2, hidden_layer_sizes=[16, 8], batch_norm=batch_norm)

    stacked = train_debiased_stacked(
        [seeded_init(factory, s) for s in seeds], datas, config=config, seeds=seeds, **PARAMS
    )
    test = _data(seed + 100, 2000)
    for k, (model, data) in enumerate(zip(stacked, datas)):
        single = debiasing_loop(
            seeded_init(factory, seeds[k]), data, config=config, seed=seeds[k], device="cpu", **PARAMS
        )
        assert _gap(model, single) < 1e-4
        assert not model.training
        torch.testing.assert_close(predict_logits(model, test.x), predict_logits(single, test.x), rtol=0, atol=5e-3)
        acc_stacked = float((predict_logits(model, test.x).argmax(-1) == test.y).double().mean())
        acc_single = float((predict_logits(single, test.x).argmax(-1) == test.y).double().mean())
        assert abs(acc_stacked - acc_single) < 0.01
        assert abs(_parity_gap(model, test) - _parity_gap(single, test)) < 0.01


def test_stage_binding_and_missing_attributes(seed: int) -> None:
    loop = debiasing_stacked_loop(**PARAMS)
    assert isinstance(loop, functools.partial) and loop.keywords["fairness_weight"] == 5.0
    data = _data(seed, 64)
    no_z = TensorData(data.x, data.y)
    models = [seeded_init(lambda: LinearNet(6, 2, hidden_layer_sizes=[8]), s) for s in (1, 2)]
    with pytest.raises(NotApplicableError, match="sensitive attributes"):
        loop(models, [no_z, no_z], config=TrainConfig(epochs=2, batch_size=16), seeds=[1, 2])


def test_a_debiasing_recipe_trains_its_populations_stacked(seed: int) -> None:
    """The registered stage carries the stacked trainer: a debiasing row's populations (distribution inference)
    train as one ensemble, each model as the recipe trains it alone."""
    info = registry.get_defense("adversarial_debiasing")
    recipe = Recipe(TrainConfig(epochs=3, batch_size=32), [info.make_stage(info.params(**PARAMS))])
    assert recipe.stacking_reason() == ""
    pool = _data(seed, 300)
    subsets = [torch.arange(0, 200), torch.arange(100, 300)]
    seeds = [derive_seed(seed, "population", k) for k in range(2)]
    factory = functools.partial(LinearNet, 6, 2, hidden_layer_sizes=[16], batch_norm=False)
    stacked = train_population(factory, pool, subsets, recipe=recipe, seeds=seeds, mode="auto")
    alone = train_population(factory, pool, subsets, recipe=recipe, seeds=seeds, mode="sequential")
    assert (stacked.mode, alone.mode) == ("batched", "sequential")
    for a, b in zip(stacked.models, alone.models):
        torch.testing.assert_close(predict_logits(a, pool.x), predict_logits(b, pool.x), rtol=0, atol=5e-3)
