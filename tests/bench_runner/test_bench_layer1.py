"""The layer-1 comparison's data preparation: upstream's adult.csv written from the offline UCI files."""

from __future__ import annotations

import csv

import pandas as pd

from benchmarks.bench_layer1_compare import ADULT_COLUMNS, compare, prepare_census


def test_prepare_census_writes_upstreams_csv_beside_the_uci_files(tmp_path) -> None:
    root = prepare_census(tmp_path)
    folder = root / "data" / "census"
    assert {p.name for p in folder.iterdir()} == {"adult.csv", "adult.data", "adult.test"}
    with open(folder / "adult.csv") as f:
        header = next(csv.reader(f))
    assert header == ADULT_COLUMNS
    frame = pd.read_csv(folder / "adult.csv")
    # the rows this package's loader keeps (race White or Black), labels without adult.test's trailing dot
    assert set(frame["race"]) == {"White", "Black"}
    assert set(frame["income"]) == {"<=50K", ">50K"}
    assert 40_000 < len(frame) < 48_842
    assert frame["workclass"].isna().any()  # UCI's "?" is a missing value, as upstream's file has it
    # upstream's loader: one-hot (drop first) of the categorical columns gives its hard-coded 93 features
    features = frame.drop(columns=["income", "fnlwgt", "race", "sex"]).fillna("Unknown")
    assert pd.get_dummies(features, drop_first=True).shape[1] == 93


def test_compare_ratios_and_crashed_cells(capsys) -> None:
    up = {"cells": [{"row": "a", "risk": "x", "status": "ok", "seconds": 10.0, "metric": {}},
                    {"row": "a", "risk": "y", "status": "crashed", "seconds": 0.1, "error": "E: boom"}]}  # fmt: skip
    ours = {"cells": [{"row": "a", "risk": "x", "status": "ok", "seconds": 2.0, "metric": {}},
                      {"row": "a", "risk": "y", "status": "ok", "seconds": 1.0, "metric": {}}]}  # fmt: skip
    result = compare(up, ours)
    assert result["ratio"] == 5.0  # only cells that ran on both sides count
    assert result["cells"][1]["ratio"] is None
    assert "upstream: CRASHED: E: boom" in capsys.readouterr().out


def test_compare_bounds_the_ratio_by_the_cells_running_the_same_algorithm() -> None:
    def cells(seconds: dict[tuple[str, str], float]) -> dict:
        return {"cells": [{"row": r, "risk": k, "status": "ok", "seconds": s, "metric": {}} for (r, k), s in
                          seconds.items()]}  # fmt: skip

    up = cells({("none", "lira"): 30.0, ("outlier_removal", "train"): 40.0, ("none", "train"): 6.0,
                ("outlier_removal", "lira"): 2.0, ("dp_sgd", "poisoning"): 4.0})  # fmt: skip
    ours = cells({("none", "lira"): 3.0, ("outlier_removal", "train"): 1.0, ("none", "train"): 2.0,
                  ("outlier_removal", "lira"): 0.5, ("dp_sgd", "poisoning"): 3.0})  # fmt: skip
    bound = compare(up, ours)["bound"]
    assert bound["avoided_work"] == {"upstream_seconds": 72.0, "ours_seconds": 4.5}
    assert bound["same_algorithm"] == {"upstream_seconds": 10.0, "ours_seconds": 5.0}
    assert bound["same_algorithm_ratio"] == 2.0
    assert bound["ratio_if_avoided_work_took_no_time"] == 82.0 / 5.0


def test_distribution_reading_flags_one_sided_and_weak_results() -> None:
    from benchmarks.bench_layer1 import MIN_DI_MODELS, distribution_reading

    # every target on one side of 0.5: the accuracy is one population's share, whatever the ranking
    one_sided = distribution_reading(8, [0.6, 0.7, 0.9, 0.95])
    assert one_sided["meaningful"] is False and "one-sided" in one_sided["why"]
    assert distribution_reading(8, [0.1, 0.2, 0.3, 0.4])["meaningful"] is False
    assert distribution_reading(8, [0.2, 0.4, 0.5, 0.9]) == {"meaningful": True}
    weak = distribution_reading(MIN_DI_MODELS - 1, [0.2, 0.9])
    assert weak["meaningful"] is False and "models per ratio" in weak["why"]
