"""DP-SGD through Opacus: epsilon, Poisson sampling, hook-free plain models, recipe stage and stacking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.accountants import PRVAccountant
from torch import nn

from amulet import registry
from amulet.exceptions import InvalidParameterError, NotRunError
from amulet.membership_inference.defenses import DPSGD, dp_train, make_dp_compatible, spent_epsilon
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, get_accuracy


def _dpsgd(model: nn.Module, data: TensorData, **kwargs) -> DPSGD:
    options = dict(delta=1e-5, max_per_sample_grad_norm=1.0, sigma=1.0, epochs=2)
    options.update(kwargs)
    return DPSGD(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=1e-2),
        data.loader(64),
        "cpu",
        options.pop("delta"),
        options.pop("max_per_sample_grad_norm"),
        options.pop("sigma"),
        **options,
    )


def test_epsilon_equals_opacus_accountant_and_poisson_loader_is_used(census_rows) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(640))
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[32], batch_norm=False)
    dp = _dpsgd(model, data, sigma=1.3, epochs=2)
    with pytest.raises(NotRunError):
        dp.get_epsilon()
    private = dp.train_private()
    assert dp.sample_rate_ == pytest.approx(64 / 640)
    assert dp.steps_ == 2 * 10
    reference = PRVAccountant()  # Opacus' default accountant, as upstream's PrivacyEngine()
    reference.history = [(1.3, 64 / 640, 20)]
    assert dp.epsilon_ == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)
    assert private.privacy_epsilon_ == dp.epsilon_ and private.privacy_delta_ == 1e-5
    # Poisson sampling: logical batch sizes vary around the expected 64 (a fixed loader would give 64 x 10)
    assert len(set(dp.batch_sizes_)) > 3 and dp.batch_sizes_ != [64] * 20


@pytest.mark.parametrize("accountant", ["rdp", "gdp", "prv"])
def test_spent_epsilon_is_the_accountants_and_is_computed_once(accountant: str) -> None:
    from opacus.accountants import create_accountant

    history = ((1.1, 0.05, 100), (0.8, 0.1, 30))
    reference = create_accountant(mechanism=accountant)
    reference.history = list(history)
    spent_epsilon.cache_clear()
    assert spent_epsilon(accountant, history, 1e-5) == pytest.approx(reference.get_epsilon(1e-5), rel=1e-12)
    assert spent_epsilon(accountant, history, 1e-5) == spent_epsilon(accountant, history, 1e-5)
    assert spent_epsilon.cache_info().hits == 2 and spent_epsilon.cache_info().misses == 1
    # every input is part of the answer
    assert spent_epsilon(accountant, history, 1e-6) > spent_epsilon(accountant, history, 1e-5)
    assert spent_epsilon(accountant, ((1.1, 0.05, 100), (2.0, 0.1, 30)), 1e-5) < spent_epsilon(
        accountant, history, 1e-5
    )


def test_returned_model_is_plain_and_reloads(census_rows) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(256))
    with_bn = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16, 8])
    dp = _dpsgd(with_bn, data, epochs=1)
    private = dp.train_private()
    assert dp.replaced_modules_ == ["features.2: BatchNorm1d -> GroupNorm", "features.5: BatchNorm1d -> GroupNorm"]
    assert all(m.num_groups == 1 for m in private.modules() if isinstance(m, nn.GroupNorm))
    assert type(private) is LinearNet
    for module in private.modules():
        assert not module._forward_hooks and not module._backward_hooks and not module._forward_pre_hooks
    assert not any(hasattr(p, "grad_sample") for p in private.parameters())
    fresh = make_dp_compatible(LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16, 8]))
    fresh.load_state_dict(private.state_dict())  # strict
    # the caller's model is left without Opacus hooks as well
    assert not any(m._forward_hooks for m in with_bn.modules())
    no_bn = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16], batch_norm=False)
    plain = _dpsgd(no_bn, data, epochs=1).train_private()
    LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16], batch_norm=False).load_state_dict(plain.state_dict())


def test_input_gradient_attacks_run_on_the_private_model(census_rows) -> None:
    from amulet.data_reconstruction.attacks import FredriksonCCS2015
    from amulet.evasion.attacks import EvasionPGD

    train, test = census_rows
    data = train.subset(np.arange(256))
    private = _dpsgd(LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16]), data, epochs=1).train_private()
    loader = EvasionPGD(private, test.subset(np.arange(64)).loader(32), "cpu", 32, epsilon=0.1, iterations=3).attack()
    x_adv = torch.cat([b[0] for b in loader])
    assert x_adv.shape == (64, data.x.shape[1])
    assert (x_adv - test.x[:64]).abs().max() > 0
    reconstructions = FredriksonCCS2015(private, data.x.shape[1], 2, "cpu", alpha=5).attack()
    assert len(reconstructions) == 2 and all(torch.isfinite(r).all() for r in reconstructions)


#: The training config census-quick.yaml gives its baseline (tuned for non-private training).
SPEC_CONFIG = TrainConfig(epochs=5, batch_size=128, lr=0.005)


def _census_quick_net(features: int) -> nn.Module:
    return LinearNet(features, 2, hidden_layer_sizes=[64, 32], batch_norm=False)


def test_default_params_keep_utility_on_census(census_rows) -> None:
    """The dp_sgd stage with default params, inside a recipe whose config is census-quick's, stays well above
    the majority rate at epsilon <= 8. (With the spec's config, 60 noisy Adam steps at lr 0.005, every seed
    ended at the majority class.)"""
    from scipy import stats

    train, test = census_rows
    data = train.subset(np.arange(1500))
    info = registry.get_defense("dp_sgd")
    stage = info.make_stage(info.params())
    assert stage.kind == "loop" and stage.defense == "dp_sgd" and stage.params["noise_multiplier"] == 1.0
    recipe = Recipe(SPEC_CONFIG, [stage])
    majority = max(float(test.y.double().mean()), 1 - float(test.y.double().mean()))
    for seed in (0,):  # seeds 1 and 2 (and census-quick's own rows): test_census_quick_dp_row_keeps_utility
        model = recipe.train(lambda: _census_quick_net(data.x.shape[1]), data, seed=seed)
        accuracy = get_accuracy(model, test.loader(4000), "cpu")
        correct = round(accuracy / 100 * len(test))
        p_value = stats.binomtest(correct, len(test), majority, alternative="greater").pvalue
        print(
            f"seed {seed}: DP-SGD accuracy {accuracy:.2f}% at epsilon {model.privacy_epsilon_:.2f}, "
            f"majority {100 * majority:.2f}%"
        )
        assert accuracy >= 80.0 and p_value < 1e-6, (accuracy, 100 * majority, p_value)
        assert 0 < model.privacy_epsilon_ <= 8 and model.privacy_delta_ == 1e-5
        assert model.privacy_noise_multiplier_ == 1.0
        positive = float(model(test.x).argmax(1).double().mean())
        assert 0.05 < positive < 0.5  # predicts both classes


@pytest.mark.slow
def test_census_quick_dp_row_keeps_utility() -> None:
    """The dp_sgd row of examples/census-quick.yaml: >= 80 % clean accuracy at epsilon <= 8 on seeds 0, 1, 2
    (the issue's acceptance check, on the member rows the engine trains it on; about 15 s of CPU)."""
    from pathlib import Path

    from amulet.assess import load_spec, plan_assessment
    from amulet.assess._data import architecture_spec, load_bundle, make_model_factory, split_for_seed

    plan = plan_assessment(load_spec(Path(__file__).resolve().parents[2] / "examples" / "census-quick.yaml"))
    bundle = load_bundle(plan.spec.dataset)
    factory = make_model_factory(architecture_spec(plan.spec.model, bundle))
    recipe = plan.recipe("dp_sgd")
    for seed in plan.spec.seeds:
        member, _ = split_for_seed(bundle, seed, plan.spec.dataset.member_fraction)
        model = recipe.train(factory, member, seed=seed)
        accuracy = get_accuracy(model, bundle.test.loader(2048), "cpu")
        assert accuracy >= 80.0 and model.privacy_epsilon_ <= 8.0, (seed, accuracy, model.privacy_epsilon_)


def test_stage_params_override_the_spec_config_one_by_one_and_stacked(census_rows) -> None:
    """epochs/batch_size/lr/optimizer/target_epsilon of the stage replace the recipe's config for that stage,
    in recipe.train and in stacked populations alike, and equal a direct dp_train with those settings."""
    from amulet.membership_inference.defenses._dpsgd import noise_for_epsilon, poisson_schedule
    from amulet.utils import derive_seed, seeded_init, train_population

    train, _ = census_rows
    info = registry.get_defense("dp_sgd")
    params = info.params(epochs=3, batch_size=32, lr=0.05, optimizer="sgd", target_epsilon=2.0)
    recipe = Recipe(TrainConfig(epochs=1, batch_size=256, lr=1e-3, momentum=0.5), [info.make_stage(params)])
    subsets = [np.arange(0, 300), np.arange(300, 500)]
    seeds = [derive_seed(1, "dp-params", k) for k in range(2)]

    def factory() -> nn.Module:
        return LinearNet(train.x.shape[1], 2, hidden_layer_sizes=[16], batch_norm=False)

    stacked = train_population(factory, train, subsets, recipe=recipe, seeds=seeds)
    one_by_one = train_population(factory, train, subsets, recipe=recipe, seeds=seeds, mode="sequential")
    assert stacked.mode == "batched" and one_by_one.mode == "sequential"
    for k, (a, b) in enumerate(zip(stacked.models, one_by_one.models)):
        assert _gap(a, b) < 1e-5
        rate, per_epoch = poisson_schedule(len(subsets[k]), 32)
        sigma = noise_for_epsilon(2.0, 1e-5, rate, 3 * per_epoch, "rdp")
        assert a.privacy_noise_multiplier_ == b.privacy_noise_multiplier_ == sigma
        assert a.privacy_epsilon_ == b.privacy_epsilon_
        assert 1.9 < a.privacy_epsilon_ <= 2.0  # the target is met, not overshot
        # the same training through dp_train directly, with the stage's settings (SGD, the spec's momentum)
        model = seeded_init(factory, seeds[k])
        direct = dp_train(
            model,
            torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5),
            train.subset(subsets[k]).loader(32),
            nn.CrossEntropyLoss(),
            max_grad_norm=1.0,
            delta=1e-5,
            epochs=3,
            target_epsilon=2.0,
            seed=seeds[k],
        )
        assert direct.steps == 3 * per_epoch and direct.noise_multiplier == sigma
        assert _gap(direct.model, b) < 1e-6
    # fewer rows: a higher sampling rate needs more noise for the same epsilon
    assert stacked.models[1].privacy_noise_multiplier_ > stacked.models[0].privacy_noise_multiplier_


def test_dp_sgd_params_validate_with_clear_messages() -> None:
    from pydantic import ValidationError

    from amulet.membership_inference.defenses._dpsgd import dp_stage_config

    params_model = registry.get_defense("dp_sgd").params
    defaults = params_model()
    assert (defaults.epochs, defaults.batch_size, defaults.lr, defaults.optimizer) == (10, 64, 0.01, "adam")
    assert defaults.target_epsilon is None
    for bad, field_name in [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"target_epsilon": -1.0}, "target_epsilon"),
        ({"learning_rate": 0.1}, "learning_rate"),
    ]:
        with pytest.raises(ValidationError, match=field_name):
            params_model.model_validate(bad)
    with pytest.raises(ValidationError, match="either 'noise_multiplier' or 'target_epsilon'"):
        params_model(noise_multiplier=1.0, target_epsilon=3.0)
    # null keeps the spec's value
    inherit = params_model(epochs=None, batch_size=None, lr=None, optimizer=None)
    assert dp_stage_config(SPEC_CONFIG, inherit.training_overrides()) == SPEC_CONFIG
    assert dp_stage_config(SPEC_CONFIG, defaults.training_overrides()) == TrainConfig(
        epochs=10, batch_size=64, lr=0.01, optimizer="adam"
    )
    with pytest.raises(InvalidParameterError, match="weight_decay"):
        dp_stage_config(SPEC_CONFIG, {"weight_decay": 0.1})


def test_unreachable_target_epsilon_names_the_parameter(census_rows) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(128))
    stage = registry.get_defense("dp_sgd").make_stage(registry.get_defense("dp_sgd").params(target_epsilon=1e-9))
    with pytest.raises(InvalidParameterError, match="target_epsilon=1e-09 cannot be reached"):
        Recipe(SPEC_CONFIG, [stage]).train(lambda: nn.Linear(data.x.shape[1], 2), data, seed=0)


def test_layer1_dpsgd_equals_the_recipe_stage(census_rows) -> None:
    """DPSGD (upstream's API) with the stage's settings trains the same model as the dp_sgd stage."""
    from amulet.utils import seeded_init

    train, _ = census_rows
    data = train.subset(np.arange(300))
    info = registry.get_defense("dp_sgd")
    stage_model = Recipe(SPEC_CONFIG, [info.make_stage(info.params(epochs=2, target_epsilon=3.0))]).train(
        lambda: _census_quick_net(data.x.shape[1]), data, seed=4
    )
    model = seeded_init(lambda: _census_quick_net(data.x.shape[1]), 4)
    dp = DPSGD(
        model,
        nn.CrossEntropyLoss(),
        torch.optim.Adam(model.parameters(), lr=0.01),
        data.loader(64),
        "cpu",
        1e-5,
        1.0,
        1.0,
        epochs=2,
        accountant="rdp",  # the stage's default (DPSGD's is Opacus' "prv", as upstream)
        seed=4,
        target_epsilon=3.0,
    )
    private = dp.train_private()
    assert _gap(private, stage_model) < 1e-6
    assert dp.epsilon_ <= 3.0 and dp.noise_multiplier_ == private.privacy_noise_multiplier_ != 1.0
    assert private.privacy_epsilon_ == stage_model.privacy_epsilon_
    with pytest.raises(InvalidParameterError, match="'target_epsilon'"):
        DPSGD(model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), data.loader(64), "cpu", 1e-5, 1.0,
              1.0, target_epsilon=-2.0).train_private()  # fmt: skip


def test_stage_applies_stacked_batch_transforms(census_rows) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(256))
    adv = registry.get_defense("adversarial_training")
    adv_params = (
        adv.params.model_validate({"iterations": 2}) if "iterations" in adv.params.model_fields else adv.params()
    )
    dp = registry.get_defense("dp_sgd")
    recipe = Recipe(
        TrainConfig(epochs=1, batch_size=64),
        [adv.make_stage(adv_params), dp.make_stage(dp.params(epochs=1, batch_size=64))],
    )
    seen = []
    batch_stage = recipe.stages[0]
    inner = batch_stage.transform

    def spy(model, x, y, gen):
        seen.append(len(x))
        return inner(model, x, y, gen)

    batch_stage.transform = spy
    model = recipe.train(lambda: LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16]), data, seed=1)
    assert len(seen) >= 2 and model.privacy_epsilon_ > 0


def test_dp_train_sampling_is_seeded(census_rows) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(128))

    def run(seed: int) -> list[int]:
        model = nn.Linear(data.x.shape[1], 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        result = dp_train(
            model,
            optimizer,
            data.loader(32),
            nn.CrossEntropyLoss(),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            delta=1e-5,
            epochs=3,
            seed=seed,
        )
        assert result.steps == 12
        return result.batch_sizes

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_bad_sigma_names_the_parameter(census_rows) -> None:
    train, _ = census_rows
    with pytest.raises(InvalidParameterError, match="'sigma'"):
        _dpsgd(nn.Linear(train.x.shape[1], 2), train.subset(np.arange(64)), sigma=-1.0).train_private()


@pytest.mark.slow
def test_large_noise_lowers_lira_auc(census_rows) -> None:
    from amulet.membership_inference.attacks import LiRA
    from amulet.membership_inference.metrics import compute_mi_metrics

    train, _ = census_rows
    pool = train.subset(np.arange(600))
    in_data = np.arange(300)

    def factory() -> nn.Module:
        return LinearNet(pool.x.shape[1], 2, hidden_layer_sizes=[128, 64], batch_norm=False)

    dp = registry.get_defense("dp_sgd")
    aucs = {}
    for name, stages in {
        "plain": [],
        "dp": [dp.make_stage(dp.params(noise_multiplier=8.0, epochs=30, batch_size=64, lr=1e-2))],
    }.items():
        recipe = Recipe(TrainConfig(epochs=30, batch_size=64, lr=1e-2), stages)
        target = recipe.train(factory, pool.subset(in_data), seed=11)
        lira = LiRA(
            target,
            in_data,
            "linearnet",
            "m1",
            pool,
            "census",
            pool.x.shape[1],
            2,
            64,
            0.5,
            nn.CrossEntropyLoss(),
            8,
            30,
            "cpu",
            None,
            0,
            recipe=recipe,
            model_factory=factory,
        )
        result = lira.attack()
        aucs[name] = compute_mi_metrics(result["lira_online_preds"], result["true_labels"])["auc"]
    assert aucs["plain"] > 0.6
    assert abs(aucs["dp"] - 0.5) < abs(aucs["plain"] - 0.5) - 0.05, aucs


def _dp_recipe(**params) -> Recipe:
    """A DP-SGD recipe training with the recipe's config (the stage's own training parameters set to null)."""
    info = registry.get_defense("dp_sgd")
    own = {"epochs": None, "batch_size": None, "lr": None, "optimizer": None, **params}
    return Recipe(TrainConfig(epochs=2, batch_size=64, lr=1e-2), [info.make_stage(info.params(**own))])


def _gap(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def test_a_dp_population_trains_stacked_and_equals_one_by_one(census_rows) -> None:
    from amulet.utils import derive_seed, train_population

    train, _ = census_rows
    # BatchNorm (replaced by GroupNorm for DP), unequal subsets (different sample rates and step counts)
    subsets = [np.arange(0, 400), np.arange(400, 700), np.arange(700, 790)]
    seeds = [derive_seed(0, "dp-pop", k) for k in range(3)]

    def factory() -> nn.Module:
        return LinearNet(train.x.shape[1], 2, hidden_layer_sizes=[16])

    stacked = train_population(factory, train, subsets, recipe=_dp_recipe(), seeds=seeds)
    one_by_one = train_population(factory, train, subsets, recipe=_dp_recipe(), seeds=seeds, mode="sequential")
    assert stacked.mode == "batched" and one_by_one.mode == "sequential"
    for a, b in zip(stacked.models, one_by_one.models):
        assert _gap(a, b) < 1e-5
        assert a.privacy_epsilon_ == b.privacy_epsilon_ and a.privacy_delta_ == b.privacy_delta_
        assert not any(isinstance(m, nn.BatchNorm1d) for m in a.modules())
    assert stacked.models[0].privacy_epsilon_ < stacked.models[2].privacy_epsilon_  # fewer rows, higher rate
    assert _gap(stacked.models[0], stacked.models[1]) > 1e-3


def test_dp_populations_with_batch_stages_or_physical_batches_train_one_by_one(census_rows) -> None:
    from amulet.utils import train_population

    train, _ = census_rows
    adversarial = registry.get_defense("adversarial_training")
    dp = registry.get_defense("dp_sgd")
    stacked_with_pgd = Recipe(
        TrainConfig(epochs=1, batch_size=64),
        [dp.make_stage(dp.params(epochs=1)), adversarial.make_stage(adversarial.params(iterations=1))],
    )
    assert "'dp_sgd' trains populations stacked only without batch stages" in stacked_with_pgd.stacking_reason()
    assert "replaces the training loop" in _dp_recipe(max_physical_batch_size=16).stacking_reason()

    def factory() -> nn.Module:
        return LinearNet(train.x.shape[1], 2, hidden_layer_sizes=[8], batch_norm=False)

    pop = train_population(factory, train, [np.arange(128)] * 2, recipe=stacked_with_pgd, seeds=[1, 2])
    assert pop.mode == "sequential" and "without batch stages" in pop.reason
