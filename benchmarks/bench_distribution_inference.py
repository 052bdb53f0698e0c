"""Distribution inference's model populations: one training run per population (before) against one for all four.

The setting is census-quick's distribution-inference cell: census, 5,000 member (target) rows, 5,000 adversary
rows, LinearNet [64, 32] without BatchNorm, 5 epochs of batch 128 at lr 0.005, the property "sex" at ratios 0.2
and 0.8, ``--models`` adversary and target models per ratio (800 rows each), trained by each row's recipe:
plain, adversarial training, DP-SGD and outlier removal with census-quick's parameters. For each recipe both
paths train the same four populations (same rows and seeds) back to back, alternating which goes first:

* per population: ``attack._fit_population`` once per population (four stacked runs), as the engine's
  adapter called it;
* all at once: ``attack._fit_populations`` with the four populations (one stacked run).

Then the black-box KL test (``SuriEvans2022.attack``) scores each path's target models. The table gives wall
and CPU seconds and the distinguishing accuracy of each path (equal up to float rounding of the kernels).

    python -m benchmarks.bench_distribution_inference [--models 8] [--recipes none dp_sgd ...]

Results: a table on stdout and ``benchmarks/out/bench_distribution_inference.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from amulet import registry
from amulet.distribution_inference.attacks import SuriEvans2022
from amulet.distribution_inference.attacks._splits import ratio_indices, sample_with_ratio
from amulet.distribution_inference.metrics import evaluate_distinguishing_accuracy
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, load_data

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "out" / "bench_distribution_inference.json"

#: census-quick's defenses (examples/census-quick.yaml).
RECIPES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "none": [],
    "adversarial_training": [("adversarial_training", {"epsilon": 0.02, "iterations": 3})],
    "dp_sgd": [("dp_sgd", {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "epochs": 10, "batch_size": 64, "lr": 0.01})],
    "outlier_removal": [("outlier_removal", {"percent": 10})],
}
RATIOS = {"1": 0.2, "2": 0.8}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _recipe(name: str) -> Recipe:
    stages = []
    for key, params in RECIPES[name]:
        info = registry.get_defense(key)
        stages.append(info.make_stage(info.params(**params)))
    return Recipe(TrainConfig(epochs=5, batch_size=128, lr=0.005), stages)


def _timed(fn: Any) -> tuple[Any, float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - start, 3), round(time.process_time() - cpu, 3)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table and write the JSON results; returns them."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--models", type=int, default=8, help="adversary and target models per ratio")
    parser.add_argument("--rows", type=int, default=800, help="training rows of each model")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    census = load_data(tempfile.mkdtemp(prefix="amulet-bench-di-"), "census", exp_id=0)
    assert census.x_train is not None and census.y_train is not None and census.z_train is not None
    assert census.x_test is not None and census.y_test is not None and census.z_test is not None
    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    order = np.random.default_rng(args.seed).permutation(len(train))
    sources = {"adv": train.subset(order[5000:10000]), "target": train.subset(order[:5000])}
    col = list(census.sensitive_columns).index("sex")
    rng = np.random.default_rng(args.seed)
    populations: dict[str, tuple[TensorData, list[np.ndarray]]] = {}
    for role, data in sources.items():
        assert data.z is not None
        mask = data.z.numpy()[:, col] == 1
        for dist, ratio in RATIOS.items():
            pool = ratio_indices(mask, ratio, rng)
            subsets = [pool[sample_with_ratio(mask[pool], ratio, args.rows, rng)] for _ in range(args.models)]
            populations[f"{role}_{dist}"] = (data, subsets)
    test_mask = census.z_test[:, col] == 1
    queries = {
        dist: DataLoader(
            TensorDataset(
                torch.as_tensor(census.x_test[rows], dtype=torch.float32), torch.as_tensor(census.y_test[rows])
            ),
            batch_size=256,
        )
        for dist, ratio in RATIOS.items()
        for rows in [sample_with_ratio(test_mask, ratio, 400, rng)]
    }

    def factory() -> nn.Module:
        return LinearNet(census.num_features, 2, [64, 32], batch_norm=False)

    runs = []
    for n, name in enumerate(args.recipes):
        attack = SuriEvans2022(
            census.x_train, census.y_train, census.z_train, census.x_test, census.y_test, census.z_test,
            list(census.sensitive_columns), "sex", RATIOS["1"], RATIOS["2"], "custom", "custom", census.num_features,
            2, args.models, 5, 128, "cpu", None, "bench", model_factory=factory, recipe=_recipe(name), seed=args.seed,
        )  # fmt: skip

        def per_population(attack: SuriEvans2022 = attack) -> dict[str, list[nn.Module]]:
            return {tag: attack._fit_population(data, subsets, tag) for tag, (data, subsets) in populations.items()}

        def all_at_once(attack: SuriEvans2022 = attack) -> dict[str, list[nn.Module]]:
            return attack._fit_populations(populations)

        load_before = _load()
        paths = [("per_population", per_population), ("all_at_once", all_at_once)]
        row: dict[str, Any] = {"recipe": name, "models_per_population": args.models, "load_before": load_before}
        for label, fn in paths if n % 2 == 0 else paths[::-1]:
            models, wall, cpu = _timed(fn)
            result = attack.attack(
                models_adv_1=models["adv_1"], models_adv_2=models["adv_2"], models_target_1=models["target_1"],
                models_target_2=models["target_2"], test_loader_1=queries["1"], test_loader_2=queries["2"],
            )  # fmt: skip
            metrics = evaluate_distinguishing_accuracy(result["predictions"], result["ground_truth"])
            row[label] = {
                "seconds": wall,
                "cpu_seconds": cpu,
                "distinguishing_accuracy": round(float(metrics["distinguishing_accuracy"]), 4),
                "auc": round(float(metrics["auc_score"]), 4),
            }
        row["ratio"] = round(row["per_population"]["seconds"] / row["all_at_once"]["seconds"], 2)
        row["cpu_ratio"] = round(row["per_population"]["cpu_seconds"] / row["all_at_once"]["cpu_seconds"], 2)
        row["load_after"] = _load()
        runs.append(row)

    header = (
        f"{'recipe':<22}{'per pop. s':>11}{'all s':>8}{'ratio':>7}{'cpu ratio':>10}  {'accuracy (per / all)':>21}  load"
    )
    lines = [header, "-" * len(header)]
    for r in runs:
        old, new = r["per_population"], r["all_at_once"]
        lines.append(
            f"{r['recipe']:<22}{old['seconds']:>11.2f}{new['seconds']:>8.2f}{r['ratio']:>6.2f}x{r['cpu_ratio']:>9.2f}x"
            f"  {old['distinguishing_accuracy']:>10.3f} / {new['distinguishing_accuracy']:<8.3f}  {r['load_before']}"
        )
    old_total = sum(r["per_population"]["seconds"] for r in runs)
    new_total = sum(r["all_at_once"]["seconds"] for r in runs)
    lines.append(f"all recipes: {old_total:.1f} s per population, {new_total:.1f} s all at once")
    sys.stdout.write("\n".join(lines) + "\n")
    result = {
        "benchmark": "distribution_inference_populations",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
