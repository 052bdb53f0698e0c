"""Layer-1 training steps with the caller's Adam stepped as is vs over flat buffers (``amulet.utils.flat_adam``).

Two loops that layer 1 runs thousands of times, each timed both ways in one process, alternating which goes
first: a LinearNet m1 trained on census rows (batch 128, the loop of ``train_classifier``) and adversarial
debiasing's adversary (a 2 -> 32 -> 32 -> 32 -> 2 MLP, ten of whose steps run per classifier step). Both ways
start from the same weights and batches; the table gives each way's seconds, the ratio, and whether the final
weights are bit for bit the same (they must be: the flat path replays ``torch.optim.Adam``'s arithmetic).

    python -m benchmarks.bench_flat_adam [--rows 6000] [--epochs 5] [--repeats 3]

Results: a table on stdout and ``benchmarks/out/bench_flat_adam.json``.
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
from torch import nn

from amulet.discriminatory_behavior.defenses import AdversaryModel
from amulet.settings import get_settings
from amulet.utils import flat_adam, initialize_model, load_data

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "out" / "bench_flat_adam.json"


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


def _workloads(args: argparse.Namespace) -> dict[str, tuple[Callable[[], nn.Module], Callable, list]]:
    data = load_data(str(get_settings().resolved_data_dir), "census")
    g = torch.Generator().manual_seed(args.seed)
    x = torch.as_tensor(data.x_train[: args.rows]).float()
    y = torch.as_tensor(data.y_train[: args.rows]).long()
    z = torch.as_tensor(data.z_train[: args.rows]).float()
    batches, adversary_batches = [], []
    for _ in range(args.epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x) - args.batch_size + 1, args.batch_size):
            idx = order[start : start + args.batch_size]
            batches.append((x[idx], y[idx]))
            # the adversary reads a classifier's two outputs; random logits stand in for them
            adversary_batches.append((torch.randn(len(idx), 2, generator=g), z[idx]))
    features, classes = int(data.num_features), int(data.num_classes)

    def classifier() -> nn.Module:
        torch.manual_seed(args.seed)
        return initialize_model("linearnet", "m1", features, classes)

    def adversary() -> nn.Module:
        torch.manual_seed(args.seed)
        return AdversaryModel(z.shape[1], 2)

    def bce(model: nn.Module, outputs: torch.Tensor, attrs: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(model.logits(outputs), attrs)

    def ce(model: nn.Module, rows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(rows), labels)

    return {
        "linearnet_m1": (classifier, ce, batches),
        "debiasing_adversary": (adversary, bce, adversary_batches * args.adversary_steps),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its table and write the JSON; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000, help="census training rows")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--adversary-steps", type=int, default=10, help="adversary steps per classifier batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    rows = []
    for name, (factory, loss_fn, batches) in _workloads(args).items():
        _train(factory(), loss_fn, batches[:20], True)  # warm-up: torch's first-optimizer imports
        times: dict[bool, list[float]] = {False: [], True: []}
        finals: dict[bool, nn.Module] = {}
        for repeat in range(args.repeats):
            for flat in (False, True) if repeat % 2 == 0 else (True, False):
                model = factory()
                times[flat].append(_train(model, loss_fn, batches, flat))
                finals[flat] = model
        same = all(
            torch.equal(a, b) for a, b in zip(finals[False].state_dict().values(), finals[True].state_dict().values())
        )
        stock, flat_s = min(times[False]), min(times[True])
        rows.append({"loop": name, "steps": len(batches), "optimizer_step_s": stock, "flat_s": flat_s,
                     "ratio": stock / flat_s, "identical_weights": same, "all_s": {"stock": times[False],
                     "flat": times[True]}})  # fmt: skip
    header = f"{'loop':<22}{'steps':>7}{'optimizer.step s':>18}{'flat s':>9}{'ratio':>8}  identical weights"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['loop']:<22}{r['steps']:>7}{r['optimizer_step_s']:>18.3f}{r['flat_s']:>9.3f}{r['ratio']:>7.2f}x  "
              f"{r['identical_weights']}")  # fmt: skip
    print(f"(best of {args.repeats} each; {torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.2f})")
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
