"""EvasionPGD: epsilon-ball and clip range, epsilon 0, monotonicity, agreement with torchattacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from amulet.evasion.attacks import EvasionPGD, pgd_linf, pgd_linf_stacked
from amulet.evasion.metrics import attack_success_rate, robust_accuracy
from amulet.exceptions import InvalidParameterError
from amulet.utils import TensorData, get_accuracy


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)  # test-only: a fixed toy model
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_examples_stay_in_the_ball_and_the_clip_range_and_leave_the_model_untouched():
    model = _tiny_model().train()
    x = torch.rand(32, 1, 4, 4)
    y = torch.randint(0, 3, (32,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    adv = pgd_linf(model, x, y, epsilon=0.07, step_size=0.05, iterations=10, clip_min=0.0, clip_max=1.0)
    assert (adv - x).abs().max() <= 0.07 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert model.training, "the model's mode must be restored"
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), f"{key} changed (BatchNorm statistics must be frozen)"


def test_unbounded_inputs_are_only_projected_on_the_ball():
    model = _tiny_model()
    x = torch.randn(16, 16) * 3
    adv = pgd_linf(
        model,
        x,
        torch.zeros(16, dtype=torch.long),
        epsilon=0.5,
        step_size=0.2,
        iterations=5,
        clip_min=None,
        clip_max=None,
    )
    assert (adv - x).abs().max() <= 0.5 + 1e-6
    assert (adv - x).abs().max() > 0.4


def test_same_seed_same_examples():
    model = _tiny_model()
    data = TensorData(torch.rand(20, 16), torch.randint(0, 3, (20,)))
    a = EvasionPGD(model, data.loader(8), "cpu", 8, epsilon=0.1, iterations=3, seed=5).attack()
    b = EvasionPGD(model, data.loader(8), "cpu", 8, epsilon=0.1, iterations=3, seed=5).attack()
    c = EvasionPGD(model, data.loader(8), "cpu", 8, epsilon=0.1, iterations=3, seed=6).attack()
    assert torch.equal(a.dataset.tensors[0], b.dataset.tensors[0])
    assert not torch.equal(a.dataset.tensors[0], c.dataset.tensors[0])
    assert torch.equal(a.dataset.tensors[1], data.y), "labels are the true labels, in order"


@pytest.mark.parametrize(
    ("kwargs", "name", "allowed"),
    [
        ({"epsilon": -0.1}, "epsilon", "a float in the range [0, inf]"),
        ({"iterations": 2.5}, "iterations", "an int in the range [0, inf]"),
        ({"clip_min": 1.0, "clip_max": 0.0}, "clip_max", "a float in the range (1, inf)"),
        ({"label_source": "gold"}, "label_source", "one of {'predicted', 'true'}"),
    ],
)
def test_bad_parameters_are_refused_at_construction(kwargs, name, allowed):
    data = TensorData(torch.rand(4, 16), torch.zeros(4, dtype=torch.long))
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of EvasionPGD") as error:
        EvasionPGD(_tiny_model(), data.loader(4), "cpu", 4, **kwargs)
    assert isinstance(error.value, ValueError)
    assert allowed in str(error.value)


def test_fmnist_ball_clip_and_epsilon_zero(fmnist_model, fmnist_tensors):
    _, test = fmnist_tensors
    loader = test.loader(500)
    clean = get_accuracy(fmnist_model, loader, "cpu")
    at_zero = EvasionPGD(fmnist_model, loader, "cpu", 500, epsilon=0.0, iterations=5).attack()
    assert robust_accuracy(fmnist_model, at_zero, "cpu") == clean
    assert attack_success_rate(fmnist_model, loader, at_zero, "cpu") == 0.0

    attack = EvasionPGD(fmnist_model, loader, "cpu", 500, epsilon=0.05, iterations=10, step_size=0.01)
    adv = attack.attack()
    x_adv = adv.dataset.tensors[0]
    assert (x_adv - test.x).abs().max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_fmnist_robust_accuracy_falls_as_epsilon_grows(fmnist_model, fmnist_tensors):
    _, test = fmnist_tensors
    loader = test.loader(500)
    accuracies = [get_accuracy(fmnist_model, loader, "cpu")]
    for eps in (0.02, 0.05, 0.1):
        adv = EvasionPGD(fmnist_model, loader, "cpu", 500, epsilon=eps, iterations=10, step_size=eps / 4).attack()
        accuracies.append(robust_accuracy(fmnist_model, adv, "cpu"))
    assert accuracies == sorted(accuracies, reverse=True), accuracies
    assert accuracies[0] - accuracies[-1] > 30, accuracies


def test_fmnist_agrees_with_torchattacks_pgd(fmnist_model, fmnist_tensors):
    torchattacks = pytest.importorskip("torchattacks")
    _, test = fmnist_tensors
    eps, alpha, steps = 0.05, 0.01, 10
    ours = EvasionPGD(  # torchattacks attacks the true labels
        fmnist_model, test.loader(500), "cpu", 500, epsilon=eps, iterations=steps, step_size=alpha, label_source="true"
    ).attack()
    ours_acc = robust_accuracy(fmnist_model, ours, "cpu")
    reference = torchattacks.PGD(fmnist_model.eval(), eps=eps, alpha=alpha, steps=steps, random_start=True)
    torch.manual_seed(0)  # torchattacks draws its random start from the global generator
    x_ref = torch.cat([reference(test.x[i : i + 500], test.y[i : i + 500]) for i in range(0, len(test), 500)])
    ref_acc = get_accuracy(fmnist_model, TensorData(x_ref, test.y).loader(500), "cpu")
    assert abs(ours_acc - ref_acc) <= 2.0, (ours_acc, ref_acc)


def test_census_tabular_pgd_without_clip_range(census_tensors):
    from amulet.models import LinearNet
    from amulet.utils import TrainConfig, seeded_init, train_model

    member, _, test = census_tensors
    model = train_model(
        seeded_init(lambda: LinearNet(member.x.shape[1], 2, hidden_layer_sizes=[32]), 0),
        member,
        config=TrainConfig(epochs=3),
        seed=0,
    )
    loader = test.loader(1000)
    adv = EvasionPGD(
        model, loader, "cpu", 1000, epsilon=0.3, iterations=10, step_size=0.05, clip_min=None, clip_max=None
    ).attack()
    assert (adv.dataset.tensors[0] - test.x).abs().max() <= 0.3 + 1e-6
    assert robust_accuracy(model, adv, "cpu") < get_accuracy(model, loader, "cpu")


def test_stacked_pgd_gives_each_model_its_own_pgd_examples():
    import copy

    from torch.func import functional_call, stack_module_state, vmap

    models = []
    for k in range(3):
        torch.manual_seed(k)  # test-only: three different toy models
        models.append(nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval())
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    forward = vmap(lambda p, b, xx: functional_call(base, (p, b), (xx,)))
    x = torch.rand(3, 20, 6)
    y = torch.randint(0, 3, (3, 20))
    kwargs = dict(epsilon=0.2, step_size=0.05, iterations=5, clip_min=0.0, clip_max=1.0)
    stacked = pgd_linf_stacked(
        lambda xx: forward({n: v.detach() for n, v in params.items()}, buffers, xx),
        x,
        y,
        generators=[torch.Generator().manual_seed(10 + k) for k in range(3)],
        **kwargs,
    )
    for k, model in enumerate(models):
        single = pgd_linf(model, x[k], y[k], generator=torch.Generator().manual_seed(10 + k), **kwargs)
        torch.testing.assert_close(stacked[k], single, rtol=0, atol=1e-6)
    assert (stacked - x).abs().max() > 0.1  # the examples really moved
    with pytest.raises(ValueError, match="one generator per model"):
        pgd_linf_stacked(lambda xx: xx, x, y, generators=[torch.Generator()], **kwargs)
