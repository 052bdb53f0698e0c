"""Upstream Amulet 0.6's evasion defaults on real census data, and the engine's explicit choices.

Layer 1 follows upstream: EvasionPGD raises the loss of the model's own predictions (cleverhans' ``y=None``),
and AdversarialTrainingPGD takes a clean step and then an adversarial step per batch. The engine's evasion
cell and adversarial-training stage keep their documented meaning (true labels, one adversarial step) by
passing it explicitly.
"""

from __future__ import annotations

import copy

import pytest
import torch
from direction_testing import cell_context
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from amulet import registry
from amulet.evasion._register import AdversarialTrainingParams, madry_step_size, make_adversarial_training_stage
from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.defenses import AdversarialTrainingPGD, pgd_batch_transform, pgd_stacked_batch_transform
from amulet.evasion.metrics import robust_accuracy
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, derive_seed, make_generator, seeded_init, train_model

# Census features are not all in [0, 1] under every encoding: these tests attack without a clip range.
UNBOUNDED = {"clip_min": None, "clip_max": None}
PGD = {"epsilon": 0.5, "iterations": 10, "step_size": 0.125, **UNBOUNDED}


@pytest.fixture(scope="module")
def census_target(census_tensors):
    member, _, test = census_tensors
    factory = _sized_factory(member.x.shape[1])
    model = train_model(seeded_init(factory, 3), member, config=TrainConfig(epochs=2, batch_size=128), seed=3)
    return model.eval(), test, factory


def _sized_factory(n_features: int):
    def factory() -> nn.Module:
        return LinearNet(n_features, 2, hidden_layer_sizes=[32, 16], batch_norm=False)

    return factory


def _examples(model: nn.Module, test: TensorData, **kwargs) -> torch.Tensor:
    attack = EvasionPGD(model, test.loader(500), "cpu", 500, seed=4, **PGD, **kwargs)
    attack.attack()
    return attack.adversarial_examples_


def test_pgd_attacks_the_models_own_predictions_by_default(census_target):
    model, test, _ = census_target
    with torch.no_grad():
        clean_pred = model(test.x).argmax(1)
    wrong = clean_pred != test.y
    assert 50 < int(wrong.sum()) < len(test) // 2, "the target must misclassify some census rows"

    default = _examples(model, test)
    predicted = _examples(model, test, label_source="predicted")
    true = _examples(model, test, label_source="true")
    assert torch.equal(default, predicted)
    # Where the model is right both label sources are the same labels: the same examples.
    assert torch.equal(default[~wrong], true[~wrong])
    with torch.no_grad():
        pred_default, pred_true = model(default).argmax(1), model(true).argmax(1)
    # Pushing a misclassified row away from its (wrong) prediction often lands on the true class; pushing it
    # away from its true class never does.
    fixed_default = float((pred_default[wrong] == test.y[wrong]).float().mean())
    fixed_true = float((pred_true[wrong] == test.y[wrong]).float().mean())
    assert fixed_default > 0.5, fixed_default
    assert fixed_true == 0.0, fixed_true


def _train_mode_inputs(model: nn.Module) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if module.training:  # the PGD and prediction passes run in eval mode; the updates in train mode
            seen.append(args[0].detach().clone())

    return seen, model.register_forward_pre_hook(hook)


@pytest.mark.parametrize("clean_step", [True, False])
def test_adversarial_training_takes_a_clean_then_an_adversarial_step_by_default(census_tensors, clean_step):
    member, _, _ = census_tensors
    rows = member.subset(torch.arange(200))
    model = seeded_init(_sized_factory(rows.x.shape[1]), 5)
    seen, handle = _train_mode_inputs(model)
    kwargs = {} if clean_step else {"clean_step": False}
    defense = AdversarialTrainingPGD(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-3),
        rows.loader(50),
        "cpu",
        epochs=1,
        epsilon=0.2,
        iterations=3,
        step_size=0.1,
        **UNBOUNDED,
        **kwargs,
    )
    assert defense.clean_step is clean_step
    assert defense.label_source == "predicted"
    defense.train_robust()
    handle.remove()
    batches = list(torch.split(rows.x, 50))
    if clean_step:
        assert len(seen) == 2 * len(batches), "one clean and one adversarial update per batch"
        for i, clean in enumerate(batches):
            assert torch.equal(seen[2 * i], clean), "the clean step comes first"
            moved = (seen[2 * i + 1] - clean).abs()
            assert 0 < float(moved.max()) <= 0.2 + 1e-6, "then a step on PGD examples of the same batch"
    else:
        assert len(seen) == len(batches)
        assert all(float((x - clean).abs().max()) > 0 for x, clean in zip(seen, batches, strict=True))
    assert len(defense.losses_) == 1


def test_stacked_transform_equals_the_per_model_transform_with_predicted_labels(census_tensors):
    member, _, _ = census_tensors
    factory = _sized_factory(member.x.shape[1])
    models = [seeded_init(factory, 10 + k).eval() for k in range(3)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    forward = vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)))
    x = torch.stack([member.x[k * 40 : (k + 1) * 40] for k in range(3)])
    y = torch.stack([member.y[k * 40 : (k + 1) * 40] for k in range(3)])
    kwargs = {"epsilon": 0.2, "step_size": 0.05, "iterations": 4, "mix_clean": 0.25, "label_source": "predicted"}
    stacked, y_out = pgd_stacked_batch_transform(**kwargs, **UNBOUNDED)(
        lambda xx: forward({n: v.detach() for n, v in params.items()}, buffers, xx),
        x,
        y,
        [make_generator(20 + k) for k in range(3)],
    )
    single = pgd_batch_transform(**kwargs, **UNBOUNDED)
    for k, model in enumerate(models):
        x_k, y_k = single(model, x[k], y[k], make_generator(20 + k))
        torch.testing.assert_close(stacked[k], x_k, rtol=0, atol=1e-6)
        assert torch.equal(y_out[k], y_k) and torch.equal(y_k, y[k]), "the training labels stay the true labels"


def test_engine_stage_makes_its_examples_against_the_true_labels(census_target):
    model, test, _ = census_target
    stage = make_adversarial_training_stage(
        AdversarialTrainingParams(epsilon=0.3, iterations=10, step_size=0.075, clip_min=None, clip_max=None)
    )
    x, y = test.x[:500], test.y[:500]
    pgd = {"epsilon": 0.3, "iterations": 10, "step_size": 0.075, **UNBOUNDED}
    staged, _ = stage.transform(model, x, y, make_generator(7))
    true, _ = pgd_batch_transform(**pgd, label_source="true")(model, x, y, make_generator(7))
    predicted, _ = pgd_batch_transform(**pgd, label_source="predicted")(model, x, y, make_generator(7))
    assert torch.equal(staged, true)
    assert not torch.equal(staged, predicted)


def test_engine_pgd_cell_attacks_the_true_labels(census, census_target, tmp_path):
    model, test, factory = census_target
    ctx = cell_context(
        target=model,
        model_factory=factory,
        recipe=Recipe(TrainConfig(epochs=1, batch_size=128)),
        dataset=census,
        member=test,
        adversary=test,
        test=test,
        seed=0,
        cache_dir=tmp_path,
        input_shape=(test.x.shape[1],),
        clip_range=None,
    )
    attack = registry.get_attack("pgd")
    params = attack.params(epsilon=0.5, iterations=10, max_samples=len(test))
    out = attack.run(ctx, params)

    def layer1(label_source: str) -> float:
        adversarial = EvasionPGD(
            model,
            test.loader(params.batch_size),
            "cpu",
            params.batch_size,
            epsilon=0.5,
            iterations=10,
            step_size=madry_step_size(0.5, 10, None),
            seed=derive_seed(0, "pgd") % (2**62),
            label_source=label_source,
            **UNBOUNDED,
        ).attack()
        return robust_accuracy(model, adversarial, "cpu")

    assert out["robust_accuracy"] == layer1("true")
    # Attacking the predictions turns some misclassified rows right: a higher "robust accuracy".
    assert layer1("predicted") > out["robust_accuracy"]


def test_defenses_all_lists_defenses_only_and_helpers_stay_importable():
    import amulet.evasion.defenses as defenses

    assert defenses.__all__ == ["AdversarialTrainingPGD"]
    from amulet.evasion.defenses import EvasionDefense  # noqa: F401
