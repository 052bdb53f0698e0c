"""A defense x risk matrix on census written only against upstream Amulet 0.6.0's public layer-1 API.

This script imports ``amulet`` and calls upstream's documented classes with upstream's argument orders and
keyword names, so it runs unchanged with upstream 0.6.0 installed (``pip install amuletml==0.6.0``) and with
this package: ``benchmarks/bench_layer1_compare.py`` runs it in both environments one after the other and
prints the ratios. It times every cell and records a metric showing the cell is meaningful (the models
above the majority rate, the attacks' own figures); a cell that raises is recorded with its error.

Rows (defenses): none, DP-SGD, adversarial training (PGD), outlier removal, adversarial debiasing. Columns
(risks), for each row: training the row's model, LiRA membership inference (shadows shared by the rows
through one ``models_dir``, as upstream reuses saved shadows), attribute inference, PGD evasion, model
extraction, BadNets poisoning (the row's training on the poisoned set), discriminatory behaviour.
Once: distribution inference (Suri & Evans; its populations do not depend on the row), watermarking and
dataset inference. Separate mode ``--lira-only``: LiRA alone at the given shadow counts.

    python benchmarks/bench_layer1.py --root DATA_ROOT --output out.json [--target 6000 --adversary 6000 --test 4000]

``DATA_ROOT/data/census`` must hold upstream's ``adult.csv`` (the compare driver writes it from the offline
UCI files) and, for this package, ``adult.data``/``adult.test``. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import binomtest
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, TensorDataset

import amulet
from amulet.attribute_inference.attacks import DudduCIKM2022
from amulet.attribute_inference.metrics import evaluate_attribute_inference
from amulet.discriminatory_behavior.defenses import AdversarialDebiasing
from amulet.discriminatory_behavior.metrics import DiscriminatoryBehavior
from amulet.distribution_inference.attacks import SuriEvans2022
from amulet.distribution_inference.metrics import evaluate_distinguishing_accuracy
from amulet.evasion.attacks import EvasionPGD
from amulet.evasion.defenses import AdversarialTrainingPGD
from amulet.membership_inference.attacks import LiRA
from amulet.membership_inference.defenses import DPSGD
from amulet.membership_inference.metrics import compute_mi_metrics
from amulet.poisoning.attacks import BadNets
from amulet.poisoning.defenses import OutlierRemoval
from amulet.unauth_model_ownership.attacks import ModelExtraction
from amulet.unauth_model_ownership.defenses import DatasetInference, WatermarkNN
from amulet.utils import get_accuracy, get_fidelity, initialize_model, load_data, train_classifier

DEVICE = "cpu"
#: The budgets below which an attack's figure is too coarse to read (the engine's weak-budget floors): LiRA's
#: Gaussian fits need enough shadows, and distribution inference's accuracy moves in steps of 1 / (2 * models).
MIN_SHADOWS = 16
MIN_DI_MODELS = 8
ROWS = ("none", "dp_sgd", "adversarial_training", "outlier_removal", "adversarial_debiasing")
RISKS = (
    "lira", "attribute_inference", "evasion", "model_extraction", "poisoning", "fairness",
    "distribution_inference", "watermarking", "dataset_inference",
)  # fmt: skip


def _tensor_set(x: np.ndarray, y: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(np.asarray(x)).float(), torch.from_numpy(np.asarray(y)).long())


def distribution_reading(models_per_ratio: int, predictions: Any) -> dict[str, Any]:
    """Whether a distribution-inference result can be read: enough models, and decisions on both sides.

    Both packages' ``predictions`` are scores cut at 0.5. When every target model falls on the same side, the
    distinguishing accuracy is the share of one population (0.5 here) whatever the attack saw: not a finding.
    """
    if models_per_ratio < MIN_DI_MODELS:
        return {"meaningful": False, "why": f"fewer than {MIN_DI_MODELS} models per ratio"}
    decisions = np.asarray(predictions, dtype=np.float64) >= 0.5
    if decisions.all() or not decisions.any():
        return {"meaningful": False, "why": "every target model on one side of the threshold (one-sided)"}
    return {"meaningful": True}


def _z_loader(x: np.ndarray, y: np.ndarray, z: np.ndarray, batch_size: int, shuffle: bool) -> DataLoader:
    dataset = TensorDataset(
        torch.from_numpy(np.asarray(x)).float(), torch.from_numpy(np.asarray(y)).long(), torch.from_numpy(z).float()
    )
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


class Matrix:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cells: list[dict[str, Any]] = []
        data = load_data(args.root, "census")
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(data.x_train))
        target, adversary = order[: args.target], order[args.target : args.target + args.adversary]
        test = rng.permutation(len(data.x_test))[: args.test]
        self.num_features, self.num_classes = int(data.num_features), int(data.num_classes)
        self.x_t, self.y_t, self.z_t = data.x_train[target], data.y_train[target], data.z_train[target]
        self.x_a, self.y_a, self.z_a = data.x_train[adversary], data.y_train[adversary], data.z_train[adversary]
        self.x_te, self.y_te, self.z_te = data.x_test[test], data.y_test[test], data.z_test[test]
        self.sensitive_columns = list(data.sensitive_columns)
        self.target_set = _tensor_set(self.x_t, self.y_t)
        self.test_set = _tensor_set(self.x_te, self.y_te)
        self.majority = float(max(np.mean(self.y_te), 1 - np.mean(self.y_te)) * 100)
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_layer1_"))
        # torch imports torch._dynamo (about 1.5 s) the first time an optimizer is built; upstream's imports
        # (Opacus) already did it before any cell starts, so build one here, outside every cell's timer
        torch.optim.Adam(torch.nn.Linear(1, 1).parameters())

    def loader(self, dataset: Any, shuffle: bool = False) -> DataLoader:
        return DataLoader(dataset, batch_size=self.args.batch_size, shuffle=shuffle)

    def fresh_model(self, batch_norm: bool = True) -> torch.nn.Module:
        return initialize_model("linearnet", "m1", self.num_features, self.num_classes, batch_norm=batch_norm).to(
            DEVICE
        )

    def cell(self, row: str, risk: str, fn: Any) -> Any:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        record: dict[str, Any] = {"row": row, "risk": risk, "load_before": round(load, 2)}
        value = None
        try:
            value, metric = fn()
            record.update(status="ok", metric=metric)
        except Exception as err:  # a crashing cell is a finding, recorded with its reason
            record.update(status="crashed", error=f"{type(err).__name__}: {err}"[:500])
            traceback.print_exc()
        record["seconds"] = round(time.perf_counter() - start, 3)
        record["load_after"] = round(os.getloadavg()[0], 2)
        self.cells.append(record)
        print(json.dumps(record), flush=True)
        if self.args.cells_file is not None:  # one line per cell as it finishes: a stopped run keeps its figures
            with open(self.args.cells_file, "a") as out:
                out.write(json.dumps(record) + "\n")
        return value

    # ---- the rows' training
    def train_row(self, row: str, train_set: TensorDataset, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Any:
        args = self.args
        torch.manual_seed(args.seed)
        # As upstream's DP-SGD pipeline: no BatchNorm (Opacus refuses it)
        model = self.fresh_model(batch_norm=row != "dp_sgd")
        criterion = torch.nn.CrossEntropyLoss()
        loader = self.loader(train_set, shuffle=True)
        if row == "none":
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            return train_classifier(model, loader, criterion, optimizer, args.epochs, DEVICE)
        if row == "dp_sgd":
            optimizer = torch.optim.Adam(model.parameters(), lr=args.dp_lr)
            dp = DPSGD(model, criterion, optimizer, loader, DEVICE, 1e-5, 1.0, args.sigma, False, args.epochs)
            return dp.train_private()
        if row == "adversarial_training":
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            adv = AdversarialTrainingPGD(model, criterion, optimizer, loader, DEVICE, args.epochs, 0.01, args.pgd_iter)
            return adv.train_robust()
        if row == "outlier_removal":
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            outliers = OutlierRemoval(
                model, criterion, optimizer, loader, self.loader(self.test_set), DEVICE,
                percent=10, epochs=args.epochs, batch_size=args.batch_size,
            )  # fmt: skip
            return outliers.train_robust()
        if row == "adversarial_debiasing":
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            train_z = _z_loader(x, y, z, args.batch_size, True)
            test_z = _z_loader(self.x_te, self.y_te, self.z_te, args.batch_size, False)
            fair = AdversarialDebiasing(
                model, criterion, optimizer, train_z, test_z, z.shape[1], self.num_classes,
                torch.Tensor([args.debias_lambda] * z.shape[1]), DEVICE, args.epochs,
            )  # fmt: skip
            return fair.train_fair()
        raise ValueError(row)

    def accuracy(self, model: torch.nn.Module) -> float:
        return float(get_accuracy(model, self.loader(self.test_set), DEVICE))

    def above_majority(self, accuracy: float) -> dict[str, Any]:
        """Whether a test accuracy (%) is significantly above the majority rate: one-sided binomial test, 5 %.

        The rule of ``amulet.utils.check_utility``, restated with SciPy because this script must also run with
        upstream's package, which has no such check.
        """
        n = len(self.y_te)
        p = float(binomtest(round(accuracy * n / 100), n, self.majority / 100, alternative="greater").pvalue)
        return {"p_above_majority": p, "meaningful": p < 0.05}

    def run_row(self, row: str) -> None:
        args = self.args

        def train() -> tuple[Any, dict[str, float]]:
            model = self.train_row(row, self.target_set, self.x_t, self.y_t, self.z_t)
            acc = self.accuracy(model)
            return model, {"test_accuracy": acc, "majority": self.majority, **self.above_majority(acc)}

        model = self.cell(row, "train", train)
        if model is None:
            return
        model.eval()
        # An attack on a model at the majority rate measures a constant classifier, not the row's defense
        row_ok = bool(self.cells[-1]["metric"]["meaningful"])

        def lira() -> tuple[None, dict[str, float]]:
            members = _tensor_set(np.concatenate([self.x_t, self.x_a]), np.concatenate([self.y_t, self.y_a]))
            attack = LiRA(
                model, np.arange(len(self.x_t)), "linearnet", "m1", members, "census", self.num_features,
                self.num_classes, args.batch_size, 0.5, torch.nn.CrossEntropyLoss(), args.shadows, args.epochs,
                DEVICE, self.tmp / "lira_shadows", args.seed,
            )  # fmt: skip
            (self.tmp / "lira_shadows").mkdir(exist_ok=True)
            results = attack.attack()
            online = compute_mi_metrics(results["lira_online_preds"], results["true_labels"])
            strong = args.shadows >= MIN_SHADOWS
            return None, {"online_auc": online["auc"], "shadows": args.shadows, "meaningful": strong,
                          **({} if strong else {"why": f"fewer than {MIN_SHADOWS} shadows"})}  # fmt: skip

        def attribute() -> tuple[None, dict[str, float]]:
            preds = DudduCIKM2022(model, self.x_a, self.x_te, self.z_a, args.batch_size, DEVICE).attack()
            metrics = evaluate_attribute_inference(self.z_te, preds)
            return None, {f"{name}_balanced_accuracy": float(metrics[i]["attack_accuracy"]) for i, name in
                          enumerate(self.sensitive_columns)}  # fmt: skip

        def evasion() -> tuple[None, dict[str, float]]:
            adv_loader = EvasionPGD(
                model, self.loader(self.test_set), DEVICE, args.batch_size, 0.1, args.pgd_iter
            ).attack()
            return None, {
                "clean_accuracy": self.accuracy(model),
                "adversarial_accuracy": float(get_accuracy(model, adv_loader, DEVICE)),
            }

        def extraction() -> tuple[None, dict[str, float]]:
            torch.manual_seed(args.seed)
            stolen = self.fresh_model()
            optimizer = torch.optim.Adam(stolen.parameters(), lr=1e-3)
            adv_loader = self.loader(_tensor_set(self.x_a, self.y_a), shuffle=True)
            stolen = ModelExtraction(model, stolen, optimizer, adv_loader, DEVICE, args.epochs).attack()
            return None, {"fidelity": float(get_fidelity(model, stolen, self.loader(self.test_set), DEVICE)),
                          "stolen_accuracy": self.accuracy(stolen)}  # fmt: skip

        def poisoning() -> tuple[None, dict[str, float]]:
            badnets = BadNets(1, 0.1, args.seed, "tabular")
            poisoned = badnets.poison_train(self.target_set)
            xs = torch.stack([poisoned[i][0] for i in range(len(poisoned))]).numpy()
            ys = np.array([int(poisoned[i][1]) for i in range(len(poisoned))])
            backdoored = self.train_row(row, poisoned, xs, ys, self.z_t[: len(ys)])
            asr = float(get_accuracy(backdoored, self.loader(badnets.poison_test(self.test_set)), DEVICE))
            acc = self.accuracy(backdoored)
            return None, {"clean_accuracy": acc, "attack_success": asr, **self.above_majority(acc)}

        def fairness() -> tuple[None, dict[str, float]]:
            test_z = _z_loader(self.x_te, self.y_te, self.z_te, args.batch_size, False)
            metrics = DiscriminatoryBehavior(model, test_z, DEVICE).evaluate_subgroup_metrics()
            return None, {f"{name}_demographic_parity": float(metrics[i]["demographic_parity"]) for i, name in
                          enumerate(self.sensitive_columns)}  # fmt: skip

        for risk, fn in (
            ("lira", lira),
            ("attribute_inference", attribute),
            ("evasion", evasion),
            ("model_extraction", extraction),
            ("poisoning", poisoning),
            ("fairness", fairness),
        ):
            if risk in args.risks:
                self.cell(row, risk, fn)
                metric = self.cells[-1].get("metric")
                if not row_ok and metric is not None:
                    metric.update(meaningful=False, why="the row's model is not above the majority rate")

    def run_once(self) -> None:
        args = self.args

        def distribution() -> tuple[None, dict[str, float]]:
            x = np.concatenate([self.x_t, self.x_a])
            y = np.concatenate([self.y_t, self.y_a])
            z = np.concatenate([self.z_t, self.z_a])
            attack = SuriEvans2022(
                x_train=x, y_train=y, z_train=z, x_test=self.x_te, y_test=self.y_te, z_test=self.z_te,
                sensitive_columns=self.sensitive_columns, filter_column="sex", ratio1=0.2, ratio2=0.8,
                model_arch="linearnet", model_capacity="m1", num_features=self.num_features,
                num_classes=self.num_classes, num_models=args.di_models, epochs=args.epochs,
                batch_size=args.batch_size, device=DEVICE, models_dir=self.tmp / "distribution_inference",
                dataset="census", exp_id=args.seed, train_subsample=args.di_train_subsample,
            )  # fmt: skip
            attack.prepare_model_populations()
            results = attack.attack()
            metrics = evaluate_distinguishing_accuracy(results["predictions"], results["ground_truth"])
            # the threshold-free reading next to the thresholded one: a threshold that does not transfer to the
            # target models shows as a high AUC with an accuracy near 0.5
            auc = float(roc_auc_score(results["ground_truth"], results["predictions"]))
            return None, {"distinguishing_accuracy": float(metrics["distinguishing_accuracy"]), "auc": auc,
                          "models_per_ratio": args.di_models, "train_subsample": args.di_train_subsample,
                          **distribution_reading(args.di_models, results["predictions"])}  # fmt: skip

        def watermark() -> tuple[None, dict[str, float]]:
            torch.manual_seed(args.seed)
            model = self.fresh_model()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            wm = WatermarkNN(
                target_model=model, criterion=torch.nn.CrossEntropyLoss(), optimizer=optimizer,
                train_loader=self.loader(self.target_set, shuffle=True), device=DEVICE, wm_path=None, tabular=True,
                num_classes=self.num_classes, epochs=args.epochs, batch_size=args.batch_size,
            )  # fmt: skip
            marked = wm.watermark()
            acc = self.accuracy(marked)
            return None, {"verified": bool(wm.verify(marked)), "test_accuracy": acc, **self.above_majority(acc)}

        def dataset_inference() -> tuple[None, dict[str, float]]:
            target = self.train_row("none", self.target_set, self.x_t, self.y_t, self.z_t)
            torch.manual_seed(args.seed + 1)
            other = self.fresh_model()
            optimizer = torch.optim.Adam(other.parameters(), lr=1e-3)
            other = train_classifier(
                other, self.loader(_tensor_set(self.x_a, self.y_a), True), torch.nn.CrossEntropyLoss(), optimizer,
                args.epochs, DEVICE,
            )  # fmt: skip
            n = args.di_rows
            train_loader = self.loader(_tensor_set(self.x_t[:n], self.y_t[:n]))
            test_loader = self.loader(_tensor_set(self.x_te[:n], self.y_te[:n]))
            results = DatasetInference(
                target, other, train_loader, test_loader, self.num_classes, DEVICE, "1D", 1.0, 0.01, 0.001, 1.0,
                0.001, args.di_iter, 0, args.batch_size,
            ).fingerprint()  # fmt: skip
            return None, {"target_p_value": float(results["target"]["p-value"]),
                          "suspect_p_value": float(results["suspect"]["p-value"])}  # fmt: skip

        for risk, fn in (
            ("distribution_inference", distribution),
            ("watermarking", watermark),
            ("dataset_inference", dataset_inference),
        ):
            if risk in args.risks:
                self.cell("-", risk, fn)

    def run_lira_only(self) -> None:
        args = self.args
        members = _tensor_set(np.concatenate([self.x_t, self.x_a]), np.concatenate([self.y_t, self.y_a]))

        def train() -> tuple[Any, dict[str, Any]]:
            model = self.train_row("none", self.target_set, self.x_t, self.y_t, self.z_t)
            acc = self.accuracy(model)
            return model, {"test_accuracy": acc, "majority": self.majority, **self.above_majority(acc)}

        target = self.cell("none", "train", train)
        for shadows in args.lira_only:
            directory = self.tmp / f"lira_only_{shadows}"
            directory.mkdir()

            def lira(shadows: int = shadows, directory: Path = directory) -> tuple[None, dict[str, float]]:
                attack = LiRA(
                    target, np.arange(len(self.x_t)), "linearnet", "m1", members, "census", self.num_features,
                    self.num_classes, args.batch_size, 0.5, torch.nn.CrossEntropyLoss(), shadows, args.epochs,
                    DEVICE, directory, args.seed,
                )  # fmt: skip
                results = attack.attack()
                online = compute_mi_metrics(results["lira_online_preds"], results["true_labels"])
                return None, {"online_auc": online["auc"], "records": len(members), "shadows": shadows}

            self.cell("none", f"lira_alone_{shadows}", lira)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, help="folder whose data/census holds the census files")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--target", type=int, default=3000)
    parser.add_argument("--adversary", type=int, default=3000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shadows", type=int, default=16, help="LiRA shadows in the matrix")
    parser.add_argument("--sigma", type=float, default=0.7, help="DP-SGD noise multiplier")
    parser.add_argument("--dp-lr", type=float, default=0.02, help="DP-SGD Adam learning rate")
    parser.add_argument("--pgd-iter", type=int, default=10, help="PGD iterations (evasion, adversarial training)")
    parser.add_argument(
        "--debias-lambda", type=float, default=10.0, help="adversarial debiasing's fairness weight per attribute"
    )
    parser.add_argument("--di-models", type=int, default=8, help="distribution-inference models per population")
    parser.add_argument(
        "--di-train-subsample",
        type=int,
        default=300,
        help="distribution inference: label-1 rows per training draw (upstream's default 1,100 cannot be filled at "
        "ratio 0.2 on 12,000 census rows: one ratio's models then train on fewer, shared rows; 300 gives both "
        "ratios equal draws)",
    )
    parser.add_argument("--di-rows", type=int, default=200, help="rows per side for dataset inference")
    parser.add_argument("--di-iter", type=int, default=50, help="dataset-inference distance iterations")
    parser.add_argument("--cells-file", type=Path, help="also append each cell as a JSON line here when it ends")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--skip-once", action="store_true", help="skip distribution inference / watermark / DI")
    parser.add_argument(
        "--risks", nargs="+", default=list(RISKS), choices=RISKS, help="only these columns (training always runs)"
    )
    parser.add_argument("--lira-only", type=int, nargs="+", help="only LiRA alone at these shadow counts")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    matrix = Matrix(args)
    load_seconds = time.perf_counter() - started
    if args.lira_only:
        matrix.run_lira_only()
    else:
        for row in args.rows:
            matrix.run_row(row)
        if not args.skip_once:
            matrix.run_once()
    result = {
        "amulet_file": str(Path(amulet.__file__).resolve()),
        "amulet_version": getattr(amulet, "__version__", "?"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "sizes": {
            "target": args.target,
            "adversary": args.adversary,
            "test": args.test,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "shadows": args.shadows,
            "di_models": args.di_models,
        },
        "data_seconds": round(load_seconds, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
        "cells": matrix.cells,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
