"""The inner steps of layer-1 training, each two ways side by side in one process.

1. **Adam steps**: the caller's ``torch.optim.Adam`` stepped as is vs over flat buffers
   (``amulet.utils.flat_adam``), in two loops layer 1 runs thousands of times: a LinearNet m1 trained on census
   rows (batch 128, the loop of ``train_classifier``) and adversarial debiasing's adversary (a
   2 -> 32 -> 32 -> 32 -> 2 MLP, ten of whose steps run per classifier step). Both ways start from the same
   weights and batches; the table says whether the final weights are bit for bit the same (they must be: the
   flat path replays ``torch.optim.Adam``'s arithmetic).
2. **The debiasing adversary's gradients**: the same adversary steps (flat Adam both ways) with the gradients
   from autograd vs written out (``_adversary_gradients.adversary_gradients``, the same ATen operations: the
   final weights must be bit for bit the same).
3. **A training step's backward pass**: LinearNet m1 trained on census rows (batch 128, flat Adam both ways)
   with ``criterion(model(x), y).backward()`` vs ``amulet.utils.TrainingStep`` (the same ATen operations
   written out: the final weights and running statistics must be bit for bit the same).
4. **PGD's input gradient**: adversarial training's inner loop (10 PGD steps on each batch of 128 census rows
   against an eval-mode LinearNet m1, as ``pgd_linf`` takes them) with the gradient from autograd vs written
   out for MLP chains (``amulet.utils.input_gradient``, which ``pgd_linf`` uses); the table gives the largest
   difference between the two gradients, relative to the gradient's largest entry.

Each way is timed ``--repeats`` times, alternating which goes first; the table keeps the best of each.

    python -m benchmarks.bench_layer1_steps [--rows 6000] [--epochs 5] [--repeats 3]

Results: a table on stdout and ``benchmarks/out/bench_layer1_steps.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from amulet.discriminatory_behavior.defenses import AdversaryModel
from amulet.discriminatory_behavior.defenses._adversary_gradients import adversary_gradients
from amulet.discriminatory_behavior.defenses._debiasing_loop import _adversary_losses
from amulet.settings import get_settings
from amulet.utils import TrainingStep, flat_adam, initialize_model, input_gradient, load_data, loss_gradient

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "out" / "bench_layer1_steps.json"


def _train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    batches: list,
    flat: bool,
) -> float:
    """Seconds of Adam steps over ``batches`` (zero_grad, forward, backward, step), flat buffers or not."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    with flat_adam(optimizer, enabled=flat) as steps:
        for x, y in batches:
            steps.zero_grad()
            loss_fn(model, x, y).backward()
            steps.step()
    return time.perf_counter() - start


def _batches(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[list, list]:
    """The classifier's batches over ``--epochs`` passes, and the adversary's (one per classifier batch)."""
    g = torch.Generator().manual_seed(args.seed)
    batches, adversary_batches = [], []
    for _ in range(args.epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x) - args.batch_size + 1, args.batch_size):
            idx = order[start : start + args.batch_size]
            batches.append((x[idx], y[idx]))
            # the adversary reads a classifier's two outputs; random logits stand in for them
            adversary_batches.append((torch.randn(len(idx), 2, generator=g), z[idx]))
    return batches, adversary_batches


def _adversary(args: argparse.Namespace, n_sensitive: int) -> AdversaryModel:
    torch.manual_seed(args.seed)
    return AdversaryModel(n_sensitive, 2)


def _adam_rows(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> list[dict[str, Any]]:
    batches, adversary_batches = _batches(args, x, y, z)

    def classifier() -> nn.Module:
        torch.manual_seed(args.seed)
        return initialize_model("linearnet", "m1", x.shape[1], 2)

    def adversary() -> nn.Module:
        return _adversary(args, z.shape[1])

    def bce(model: nn.Module, outputs: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model.logits(outputs), attrs)

    def ce(model: nn.Module, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(rows), labels)

    workloads = {
        "adam: linearnet_m1": (classifier, ce, batches),
        "adam: debiasing_adversary": (adversary, bce, adversary_batches * args.adversary_steps),
    }

    def runner(factory: Callable[[], nn.Module], loss_fn: Callable, steps: list) -> Callable[[bool], tuple]:
        def run(flat: bool) -> tuple[float, nn.Module]:
            model = factory()
            return _train(model, loss_fn, steps, flat), model

        return run

    return [
        _both_ways(name, len(steps), runner(factory, loss_fn, steps), args.repeats)
        for name, (factory, loss_fn, steps) in workloads.items()
    ]


def _both_ways(name: str, count: int, run: Callable[[bool], tuple[float, nn.Module]], repeats: int) -> dict:
    """A table row: ``run(False)`` (before) and ``run(True)`` (after) alternately, best times, same weights?"""
    run(True)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    finals: dict[bool, nn.Module] = {}
    for repeat in range(repeats):
        for after in (False, True) if repeat % 2 == 0 else (True, False):
            seconds, finals[after] = run(after)
            times[after].append(seconds)
    same = all(
        torch.equal(a, b) for a, b in zip(finals[False].state_dict().values(), finals[True].state_dict().values())
    )
    return {"step": name, "count": count, "before_s": min(times[False]), "after_s": min(times[True]),
            "identical": same, "all_s": {"before": times[False], "after": times[True]}}  # fmt: skip


def _adversary_gradient_row(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> dict:
    """Debiasing's adversary steps (flat Adam both ways) with autograd's gradients vs the written-out ones."""
    steps = _batches(args, x, y, z)[1] * args.adversary_steps

    def run(by_hand: bool) -> tuple[float, nn.Module]:
        model = _adversary(args, z.shape[1])
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        with flat_adam(optimizer) as adam:
            for outputs, attrs in steps:
                adam.zero_grad()
                if by_hand:
                    adam.add_grads(adversary_gradients(model, outputs, attrs)[1])
                else:
                    _adversary_losses(model, outputs, attrs).mean().backward()
                adam.step()
        return time.perf_counter() - start, model

    return _both_ways("gradients: debiasing_adversary", len(steps), run, args.repeats)


def _training_step_row(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> dict:
    """LinearNet m1's training steps (flat Adam both ways) with autograd's backward vs ``TrainingStep``."""
    batches = _batches(args, x, y, z)[0]
    criterion = nn.CrossEntropyLoss()

    def run(written: bool) -> tuple[float, nn.Module]:
        torch.manual_seed(args.seed)
        model = initialize_model("linearnet", "m1", x.shape[1], 2).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        with flat_adam(optimizer) as adam:
            step = TrainingStep(model, criterion, adam)
            for xb, yb in batches:
                adam.zero_grad()
                if written:
                    step(xb, yb)
                else:
                    criterion(model(xb), yb).backward()
                adam.step()
        return time.perf_counter() - start, model

    return _both_ways("training step: linearnet_m1", len(batches), run, args.repeats)


def _pgd_row(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    torch.manual_seed(args.seed)
    model = initialize_model("linearnet", "m1", x.shape[1], 2)
    model.train()
    model(x[:512])  # running statistics that are not the identity
    model.eval()
    g = torch.Generator().manual_seed(args.seed)
    batches = [(x[i : i + args.batch_size], y[i : i + args.batch_size]) for i in range(0, len(x), args.batch_size)]
    batches = [b for b in batches if len(b[0]) == args.batch_size][: args.pgd_batches]
    hand = input_gradient(model, batches[0][1])(batches[0][0])
    auto = loss_gradient(lambda xa: F.cross_entropy(model(xa), batches[0][1], reduction="sum"))(batches[0][0])
    gap = float((hand - auto).abs().max() / auto.abs().max())

    def run(by_hand: bool) -> float:
        # PGD's inner loop as adversarial training runs it (pgd_linf: 10 signed-gradient steps, projected onto
        # the 0.01-ball and [0, 1]); only where the gradient comes from differs
        start = time.perf_counter()
        for xb, yb in batches:
            gradient = input_gradient(model, yb, by_hand=by_hand)
            x_adv = xb + (2 * torch.rand(xb.shape, generator=g) - 1) * 0.01
            for _ in range(10):
                x_adv = x_adv + 0.0025 * gradient(x_adv).sign()
                x_adv = torch.min(torch.max(x_adv, xb - 0.01), xb + 0.01).clamp(0.0, 1.0)
        return time.perf_counter() - start

    run(True)
    times: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(args.repeats):
        for by_hand in (False, True) if repeat % 2 == 0 else (True, False):
            times[by_hand].append(run(by_hand))
    return {"step": "pgd: 10 steps, linearnet_m1", "count": len(batches), "before_s": min(times[False]),
            "after_s": min(times[True]), "identical": None, "relative_gradient_gap": gap,
            "all_s": {"before": times[False], "after": times[True]}}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table and write the JSON; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000, help="census training rows")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--adversary-steps", type=int, default=10, help="adversary steps per classifier batch")
    parser.add_argument("--pgd-batches", type=int, default=47, help="batches of the PGD part (one epoch at 6,000 rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    data = load_data(str(get_settings().resolved_data_dir), "census")
    x = torch.as_tensor(data.x_train[: args.rows]).float()
    y = torch.as_tensor(data.y_train[: args.rows]).long()
    z = torch.as_tensor(data.z_train[: args.rows]).float()
    rows = [
        *_adam_rows(args, x, y, z),
        _adversary_gradient_row(args, x, y, z),
        _training_step_row(args, x, y, z),
        _pgd_row(args, x, y),
    ]
    for r in rows:
        r["ratio"] = r["before_s"] / r["after_s"]
    header = f"{'inner step':<30}{'count':>7}{'before s':>10}{'after s':>9}{'ratio':>8}  same result"
    print(header)
    print("-" * len(header))
    for r in rows:
        same = (
            f"weights identical: {r['identical']}"
            if r["identical"] is not None
            else f"gradients within {r['relative_gradient_gap']:.1e} (relative)"
        )
        print(f"{r['step']:<30}{r['count']:>7}{r['before_s']:>10.3f}{r['after_s']:>9.3f}{r['ratio']:>7.2f}x  {same}")
    print(
        f"(before: optimizer.step() / autograd; after: flat buffers / written-out gradients; best of {args.repeats}; "
        f"{torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.2f})"
    )
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "argv": argv,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
