"""Layer-2 adapters of the security risks on census: every headline metric, defense stages in real recipes."""

from __future__ import annotations

import math

import torch

from amulet import registry
from amulet.progress import SilentProgress
from amulet.recipes import Recipe
from amulet.registry import CellContext
from amulet.unauth_model_ownership._register import watermark_trigger_set
from amulet.utils import TrainConfig, get_accuracy

from .conftest import census_factory

CONFIG = TrainConfig(epochs=3, batch_size=128, lr=3e-3)


def _ctx(census, split, recipe, tmp_path, seed=0):
    member, adversary, test = split
    factory = lambda: census_factory(member.x.shape[1])  # noqa: E731
    target = recipe.train(factory, member, seed=seed)
    return CellContext(
        target=target,
        model_factory=factory,
        recipe=recipe,
        dataset=census,
        member=member,
        adversary=adversary,
        test=test,
        seed=seed,
        device=torch.device("cpu"),
        cache_dir=tmp_path,
        progress=SilentProgress(),
        defense_keys=recipe.defense_keys,
        input_shape=tuple(member.x.shape[1:]),
        clip_range=None,
    )


def _stage(key, **params):
    info = registry.get_defense(key)
    return info.make_stage(info.params(**params))


def test_every_registered_security_entry_is_there():
    assert {"pgd", "badnets", "model_extraction"} <= {a.key for a in registry.attacks()}
    codes = {d.key: d.code for d in registry.defenses()}
    assert codes["adversarial_training"] == "SD1" and codes["outlier_removal"] == "SD2"
    assert codes["fingerprint"] == "SD3" and codes["watermark"] == "SD4"


def test_every_security_attack_returns_its_risks_headline_metrics(census, census_split, tmp_path):
    ctx = _ctx(census, census_split, Recipe(CONFIG), tmp_path)
    for key in ("pgd", "badnets", "model_extraction"):
        attack = registry.get_attack(key)
        params = attack.params(epochs=3) if key == "model_extraction" else attack.params()
        out = attack.run(ctx, params)
        headline = {m.key for m in registry.get_risk(attack.risk).headline_metrics}
        assert headline <= set(out), (key, out)
        assert all(isinstance(v, float) for v in out.values())
        assert "watermark_accuracy_target" not in out


def test_watermark_stage_is_verified_in_the_stealing_cell(census, census_split, tmp_path):
    recipe = Recipe(CONFIG, [_stage("watermark", trigger_seed=11, epochs=8)])
    ctx = _ctx(census, census_split, recipe, tmp_path)
    triggers = watermark_trigger_set(recipe.stage("watermark").params, ctx.input_shape, 2)
    assert get_accuracy(ctx.target, triggers.loader(100), "cpu") > 90  # the stage embedded the regenerable set
    attack = registry.get_attack("model_extraction")
    out = attack.run(ctx, attack.params(epochs=3))
    assert out["watermark_accuracy_target"] > 90
    assert out["watermark_verified_target"] == 1.0
    assert ctx.target.watermark_accuracy_ == out["watermark_accuracy_target"]  # recorded by the stage
    assert out["watermark_verified_stolen"] in (0.0, 1.0)
    assert out["watermark_verified_stolen"] == float(out["watermark_accuracy_stolen"] > 90)


def test_fingerprint_stage_keeps_the_model_and_reports_a_p_value(census, census_split, tmp_path):
    recipe = Recipe(CONFIG, [_stage("fingerprint", num_samples=60, num_iter=30, regressor_epochs=100)])
    ctx = _ctx(census, census_split, recipe, tmp_path)
    baseline = Recipe(CONFIG).train(ctx.model_factory, ctx.member, seed=0)
    for a, b in zip(baseline.state_dict().values(), ctx.target.state_dict().values()):
        assert torch.equal(a, b), "fingerprinting must not change training"
    attack = registry.get_attack("model_extraction")
    out = attack.run(ctx, attack.params(epochs=3))
    assert 0.0 <= out["fingerprint_p_value_stolen"] <= 1.0


def test_adversarial_training_and_outlier_removal_stages_train(census, census_split, tmp_path):
    member, _, test = census_split
    recipe = Recipe(CONFIG, [_stage("adversarial_training", epsilon=0.1, iterations=2), _stage("outlier_removal")])
    model = recipe.train(lambda: census_factory(member.x.shape[1]), member.subset(torch.arange(1500)), seed=0)
    assert get_accuracy(model, test.loader(1000), "cpu") > 70


def test_an_unverified_owner_model_makes_the_copys_verification_not_measured(census, census_split, tmp_path):
    """If the owner's own model fails its watermark check, 'the copy is not verified' would be an artifact."""
    ctx = _ctx(census, census_split, Recipe(CONFIG), tmp_path)  # trained without the watermark...
    ctx.recipe = Recipe(CONFIG, [_stage("watermark", trigger_seed=11, epochs=8)])  # ...but assessed as if with it
    ctx.defense_keys = ctx.recipe.defense_keys
    attack = registry.get_attack("model_extraction")
    out = attack.run(ctx, attack.params(epochs=3))
    assert out["watermark_accuracy_target"] < 90
    assert out["watermark_verified_target"] == 0.0
    assert math.isnan(out["watermark_verified_stolen"])
