"""Layer 1's fast paths against the paths they replace, side by side in one process, alternately.

On census at the layer-1 matrix's sizes (6,000 training rows, 4,000 test rows, LinearNet m1, batch 128, 5 epochs):

* ``loader``: ``train_classifier`` reading the DataLoader row by row (as before) against :func:`loader_batches`
  (indexing the TensorDataset's tensors): the same batches, so the same model;
* ``evasion``: ``EvasionPGD`` as before (``pgd_linf`` on each batch of 128 in turn) against the batched attack
  (every batch's rows at once, the same random starts);
* ``dp_sgd``: ``dp_train`` through Opacus' hooks, through ``torch.func`` per-sample gradients, and with ghost
  clipping (Adam, sigma 0.7, C 1, Opacus' default PRV accountant: the epsilon is printed for each);
* ``threads``: ``train_classifier`` with torch's default thread count against one thread (what
  :func:`amulet.utils._threads.layer1_threads` picks for a small model when the setting is automatic).

Each pair runs ``--repeats`` times alternately; the medians, their ratio and the load average are printed and
written to ``benchmarks/out/layer1/paths.json``.

    python -m benchmarks.bench_layer1_paths [--repeats 2] [--only loader evasion dp_sgd threads]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.attacks._pgd import pgd_linf, predicted_labels
from amulet.membership_inference.defenses import dp_train
from amulet.utils import _training as training
from amulet.utils import initialize_model, load_data, make_generator
from amulet.utils._threads import single_thread
from benchmarks.bench_layer1_compare import OUT, prepare_census

BATCH, EPOCHS = 128, 5


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def census(target: int, test: int) -> tuple[TensorDataset, TensorDataset, int]:
    data = load_data(str(prepare_census(OUT / "root")), "census")
    assert data.x_train is not None and data.y_train is not None and data.x_test is not None and data.y_test is not None
    rng = np.random.default_rng(0)
    rows, test_rows = rng.permutation(len(data.x_train))[:target], rng.permutation(len(data.x_test))[:test]
    train = TensorDataset(torch.from_numpy(data.x_train[rows]).float(), torch.from_numpy(data.y_train[rows]).long())
    held_out = TensorDataset(torch.from_numpy(data.x_test[test_rows]).float(), torch.from_numpy(data.y_test[test_rows]))
    return train, held_out, int(data.num_features)


def train_plain(train: TensorDataset, features: int, row_by_row: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = initialize_model("linearnet", "m1", features, 2)
    loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    saved = training.loader_batches
    if row_by_row:
        training.loader_batches = iter  # type: ignore[assignment]
    try:
        return training.train_classifier(model, loader, torch.nn.CrossEntropyLoss(), optimizer, EPOCHS, "cpu")
    finally:
        training.loader_batches = saved


def pgd_batch_by_batch(model: torch.nn.Module, test: TensorDataset) -> torch.Tensor:
    """EvasionPGD before the batched attack: ``pgd_linf`` on every batch in turn."""
    generator = make_generator(0)
    out = []
    for x, _ in DataLoader(test, batch_size=BATCH):
        target = predicted_labels(model, x)
        out.append(pgd_linf(model, x, target, epsilon=0.1, step_size=0.01, iterations=10, generator=generator))
    return torch.cat(out)


def pgd_batched(model: torch.nn.Module, test: TensorDataset) -> torch.Tensor:
    attack = EvasionPGD(model, DataLoader(test, batch_size=BATCH), "cpu", BATCH, 0.1, 10)
    attack.attack()
    return attack.adversarial_examples_


def train_dp(train: TensorDataset, features: int, mode: str) -> Any:
    torch.manual_seed(0)
    model = initialize_model("linearnet", "m1", features, 2, batch_norm=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    return dp_train(
        model, optimizer, loader, torch.nn.CrossEntropyLoss(), noise_multiplier=0.7, max_grad_norm=1.0, delta=1e-5,
        epochs=EPOCHS, per_sample=mode, accountant="prv",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=["loader", "evasion", "dp_sgd", "threads"])
    args = parser.parse_args(argv)
    train, test, features = census(6000, 4000)
    results: dict[str, Any] = {"load_start": os.getloadavg()[0], "cpus": os.cpu_count()}

    def compare(name: str, sides: dict[str, Callable[[], Any]], check: Callable[[dict[str, Any]], str]) -> None:
        times: dict[str, list[float]] = {side: [] for side in sides}
        values: dict[str, Any] = {}
        loads = []
        for _ in range(args.repeats):
            for side, fn in sides.items():
                loads.append(os.getloadavg()[0])
                seconds, values[side] = timed(fn)
                times[side].append(seconds)
        medians = {side: statistics.median(t) for side, t in times.items()}
        first = next(iter(medians))
        ratios = {side: medians[first] / m for side, m in medians.items()}
        note = check(values)
        results[name] = {
            "seconds": times,
            "median": medians,
            "ratio_vs_" + first: ratios,
            "loads": loads,
            "check": note,
        }
        shown = ", ".join(f"{side} {medians[side]:.2f} s ({ratios[side]:.1f}x)" for side in medians)
        print(f"{name}: {shown}; load {min(loads):.1f}-{max(loads):.1f}; {note}", flush=True)

    def same_model(values: dict[str, Any]) -> str:
        a, b = (list(v.parameters()) for v in values.values())
        return "max weight difference " + f"{max(float((p - q).abs().max()) for p, q in zip(a, b)):.1e}"

    with single_thread():
        if "loader" in args.only:
            compare(
                "loader",
                {"row_by_row": lambda: train_plain(train, features, True),
                 "indexed": lambda: train_plain(train, features, False)},
                same_model,
            )  # fmt: skip
        if "evasion" in args.only:
            target = train_plain(train, features, False)
            compare(
                "evasion",
                {"batch_by_batch": lambda: pgd_batch_by_batch(target, test),
                 "batched": lambda: pgd_batched(target, test)},
                lambda v: f"max example difference {float((v['batch_by_batch'] - v['batched']).abs().max()):.1e}",
            )  # fmt: skip
        if "dp_sgd" in args.only:
            compare(
                "dp_sgd",
                {mode: functools.partial(train_dp, train, features, mode) for mode in ("hooks", "func", "ghost")},
                lambda v: "epsilon " + ", ".join(f"{k} {r.epsilon:.6f}" for k, r in v.items()),
            )
    if "threads" in args.only:
        default = torch.get_num_threads()

        def at(n: int) -> torch.nn.Module:
            with threads(n):
                return train_plain(train, features, False)

        compare(f"threads_{default}_vs_1", {f"{default}_threads": lambda: at(default), "1_thread": lambda: at(1)},
                same_model)  # fmt: skip
    results["load_end"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "paths.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
