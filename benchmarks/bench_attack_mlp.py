"""Attribute inference's attack MLP: torch (ours) against scikit-learn's MLPClassifier (upstream), side by side.

One census target model (LinearNet [64, 32], 4 epochs on 3,000 member rows) is queried on the adversary's
rows; both trainers then fit one MLP per sensitive attribute (race, sex) on the same logits, with the same
architecture (64, 128, 32), the same G-mean threshold on the adversary's rows, and one thread each
(scikit-learn under ``threadpool_limits(1)``, torch inside ``fit_attack_mlps``' own single thread). Per
seed the two run back to back, alternating which goes first, so both see the same machine load. The table
gives each fit's wall time and the balanced accuracy of the attack on the test rows.

    python -m benchmarks.bench_attack_mlp [--adversary 3000] [--test 3000] [--seeds 1337 1 2]

Results: a table on stdout and ``benchmarks/out/bench_attack_mlp.json``.
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
from sklearn.metrics import balanced_accuracy_score, roc_curve
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.attacks._duddu_cikm_2022 import fit_attack_mlps
from amulet.models import LinearNet
from amulet.recipes import Recipe
from amulet.utils import TensorData, TrainConfig, load_data

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "benchmarks" / "out" / "bench_attack_mlp.json"
HIDDEN = (64, 128, 32)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _balanced_accuracy(
    z_adv: np.ndarray, train_scores: np.ndarray, z_test: np.ndarray, test_scores: np.ndarray
) -> float:
    """The attack's rule: G-mean threshold on the adversary's rows, applied to the test rows."""
    fpr, tpr, thresholds = roc_curve(z_adv, train_scores)
    threshold = min(float(thresholds[int(np.argmax(np.sqrt(tpr * (1 - fpr))))]), 1.0)
    return round(float(balanced_accuracy_score(z_test, test_scores >= threshold)), 4)


def _sklearn(
    features: np.ndarray, z_adv: np.ndarray, test: np.ndarray, z_test: np.ndarray, seed: int
) -> dict[str, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    accuracy, epochs = [], []
    for i in range(z_adv.shape[1]):
        mlp = MLPClassifier(solver="adam", alpha=1e-3, hidden_layer_sizes=HIDDEN, max_iter=300, random_state=seed)
        with threadpool_limits(limits=1):
            mlp.fit(features, z_adv[:, i])
            train_scores, test_scores = mlp.predict_proba(features)[:, 1], mlp.predict_proba(test)[:, 1]
        accuracy.append(_balanced_accuracy(z_adv[:, i], train_scores, z_test[:, i], test_scores))
        epochs.append(int(mlp.n_iter_))
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "balanced_accuracy": accuracy,
        "epochs": epochs,
    }


def _torch(features: np.ndarray, z_adv: np.ndarray, test: np.ndarray, z_test: np.ndarray, seed: int) -> dict[str, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    models = fit_attack_mlps(features, z_adv, HIDDEN, 300, seed)
    accuracy = []
    with torch.no_grad():
        for i, model in enumerate(models):
            train_scores = torch.sigmoid(model(torch.as_tensor(features, dtype=torch.float32))).reshape(-1).numpy()
            test_scores = torch.sigmoid(model(torch.as_tensor(test, dtype=torch.float32))).reshape(-1).numpy()
            accuracy.append(_balanced_accuracy(z_adv[:, i], train_scores, z_test[:, i], test_scores))
    return {
        "seconds": round(time.perf_counter() - start, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "balanced_accuracy": accuracy,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table and write the JSON results; returns them."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--adversary", type=int, default=3000, help="adversary rows (the attack MLP's training set)")
    parser.add_argument("--test", type=int, default=3000, help="test rows attacked")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1, 2], help="seeds of the attack MLPs")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    census = load_data(tempfile.mkdtemp(prefix="amulet-bench-mlp-"), "census", exp_id=0)
    assert census.x_train is not None and census.y_train is not None and census.z_train is not None
    assert census.x_test is not None and census.z_test is not None
    order = np.random.default_rng(0).permutation(len(census.x_train))
    train = TensorData.from_numpy(census.x_train, census.y_train, census.z_train)
    member, adversary = train.subset(order[:3000]), train.subset(order[3000 : 3000 + args.adversary])
    target = Recipe(TrainConfig(epochs=4, batch_size=128)).train(
        lambda: LinearNet(census.num_features, 2, [64, 32]), member, seed=0
    )
    assert adversary.z is not None
    z_adv = adversary.z.numpy().astype(int)
    z_test = np.asarray(census.z_test[: args.test]).astype(int)
    attack = DudduCIKM2022(target, adversary.x.numpy(), census.x_test[: args.test], z_adv, 256, "cpu")
    features, test = attack._outputs(attack.x_train_adv), attack._outputs(attack.x_test)

    runs = []
    for n, seed in enumerate(args.seeds):
        load_before = _load()
        order_run = (_sklearn, _torch) if n % 2 == 0 else (_torch, _sklearn)
        got = {fn.__name__.strip("_"): fn(features, z_adv, test, z_test, seed) for fn in order_run}
        runs.append(
            {
                "seed": seed,
                **got,
                "sklearn_over_torch": round(got["sklearn"]["seconds"] / got["torch"]["seconds"], 2),
                "cpu_sklearn_over_torch": round(got["sklearn"]["cpu_seconds"] / got["torch"]["cpu_seconds"], 2),
                "load_before": load_before,
                "load_after": _load(),
            }
        )

    header = f"{'seed':>6}{'sklearn s':>11}{'torch s':>9}{'ratio':>8}{'cpu ratio':>11}"
    header += f"  {'sklearn race/sex':>18}  {'torch race/sex':>16}  load"
    lines = [header, "-" * len(header)]
    for r in runs:
        sk, to = r["sklearn"], r["torch"]
        lines.append(
            f"{r['seed']:>6}{sk['seconds']:>11.2f}{to['seconds']:>9.2f}{r['sklearn_over_torch']:>7.2f}x"
            f"{r['cpu_sklearn_over_torch']:>10.2f}x  "
            f"{' / '.join(f'{a:.3f}' for a in sk['balanced_accuracy']):>18}  "
            f"{' / '.join(f'{a:.3f}' for a in to['balanced_accuracy']):>16}  {r['load_before']}"
        )
    total = sum(r["sklearn"]["seconds"] for r in runs) / sum(r["torch"]["seconds"] for r in runs)
    cpu_total = sum(r["sklearn"]["cpu_seconds"] for r in runs) / sum(r["torch"]["cpu_seconds"] for r in runs)
    gap = max(
        abs(a - b) for r in runs for a, b in zip(r["sklearn"]["balanced_accuracy"], r["torch"]["balanced_accuracy"])
    )
    mean_gap = [
        round(
            float(np.mean([r["torch"]["balanced_accuracy"][i] - r["sklearn"]["balanced_accuracy"][i] for r in runs])), 4
        )
        for i in range(z_adv.shape[1])
    ]
    lines.append(
        f"all seeds: sklearn / torch = {total:.2f}x wall, {cpu_total:.2f}x CPU time; "
        f"largest accuracy gap {gap:.3f}; mean gap (torch - sklearn) {mean_gap}"
    )
    sys.stdout.write("\n".join(lines) + "\n")
    result = {
        "benchmark": "attack_mlp",
        "adversary_rows": args.adversary,
        "test_rows": args.test,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "runs": runs,
        "sklearn_over_torch": round(total, 2),
        "cpu_sklearn_over_torch": round(cpu_total, 2),
        "largest_accuracy_gap": round(gap, 4),
        "mean_accuracy_gap": mean_gap,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
