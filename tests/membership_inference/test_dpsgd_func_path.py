"""Layer-1 DP-SGD without Opacus' wrappers (torch.func per-sample gradients) equals Opacus' hooks, same accountant."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from amulet.exceptions import InvalidParameterError
from amulet.membership_inference.defenses import DPSGD, dp_train
from amulet.models import LinearNet
from amulet.settings import get_settings


def _train(data, per_sample: str, *, dropout: bool = False, physical: int | None = None, accountant: str = "rdp"):
    torch.manual_seed(0)
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[32, 16], batch_norm=False)
    if dropout:
        model.features.append(nn.Dropout(0.2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return dp_train(
        model, optimizer, data.loader(64), nn.CrossEntropyLoss(), noise_multiplier=1.1, max_grad_norm=1.0,
        delta=1e-5, epochs=2, seed=3, per_sample=per_sample, max_physical_batch_size=physical, accountant=accountant,
    )  # fmt: skip


@pytest.mark.parametrize("physical", [None, 16])
def test_func_path_equals_opacus_hooks(census_rows, physical) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(512))
    hooks, func = _train(data, "hooks", physical=physical), _train(data, "func", physical=physical)
    assert func.steps == hooks.steps
    if physical is None:
        assert func.batch_sizes == hooks.batch_sizes
    else:  # Opacus' BatchMemoryManager yields physical batches only; the own loop records the logical ones
        assert hooks.batch_sizes == [] and len(func.batch_sizes) == func.steps
    assert func.epsilon == hooks.epsilon
    trained = dict(func.model.named_parameters())
    assert len(trained) == 6
    for name, p in hooks.model.named_parameters():
        torch.testing.assert_close(trained[name], p, atol=1e-5, rtol=1e-4, msg=name)
    # training moved the model: the comparison is not between two initialisations
    torch.manual_seed(0)
    fresh = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[32, 16], batch_norm=False)
    assert not torch.allclose(fresh.classifier.weight, func.model.classifier.weight, atol=1e-3)
    # the hook-free path leaves no per-sample state on the returned model
    assert all(not hasattr(p, "grad_sample") for p in func.model.parameters())


def test_func_path_keeps_the_privacy_engines_history(census_rows) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(384))
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[16], batch_norm=False)
    dp = DPSGD(
        model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-2), data.loader(64), "cpu",
        1e-5, 1.0, 1.0, False, 2,
    )  # fmt: skip
    dp.train_private()
    assert float(dp.privacy_engine.accountant.get_epsilon(1e-5)) == pytest.approx(dp.epsilon_, rel=1e-9)
    assert sum(n for _, _, n in dp.privacy_engine.accountant.history) == dp.steps_ == 12


def test_func_path_trains_a_model_with_dropout(census_rows) -> None:
    train, _ = census_rows
    result = _train(train.subset(np.arange(256)), "func", dropout=True)
    assert result.steps == 8 and np.isfinite(result.epsilon)


def test_unknown_per_sample_mode_is_refused(census_rows) -> None:
    train, _ = census_rows
    with pytest.raises(InvalidParameterError, match="per_sample"):
        _train(train.subset(np.arange(64)), "per-layer")


def _threads_during_training(data, setting: str, monkeypatch) -> tuple[int, int]:
    """(torch threads seen by the model's forward pass during DPSGD.train_private, threads afterwards)."""
    monkeypatch.setenv("AMULET_NUM_THREADS", setting)
    get_settings.cache_clear()
    seen: list[int] = []
    model = LinearNet(data.x.shape[1], 2, hidden_layer_sizes=[8], batch_norm=False)
    model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    torch.set_num_threads(2)
    DPSGD(
        model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1), data.loader(64), "cpu",
        1e-5, 1.0, 1.0, False, 1,
    ).train_private()  # fmt: skip
    assert seen
    return max(seen), torch.get_num_threads()


def test_layer1_dpsgd_trains_with_the_thread_setting_and_restores_the_callers(census_rows, monkeypatch) -> None:
    train, _ = census_rows
    data = train.subset(np.arange(128))
    before = torch.get_num_threads()
    try:
        # automatic: one thread for a small model, the caller's count back afterwards
        assert _threads_during_training(data, "0", monkeypatch) == (1, 2)
        # explicit setting: applied during training
        assert _threads_during_training(data, "3", monkeypatch) == (3, 2)
    finally:
        get_settings.cache_clear()
        torch.set_num_threads(before)
