"""The benchmark runner (``python -m benchmarks``) and the benchmark specs: fast checks, nothing is trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from amulet.assess import load_spec, plan_assessment
from benchmarks.__main__ import BENCHMARKS, main

SPECS = Path(__file__).resolve().parents[2] / "benchmarks" / "specs"


def test_list_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("knn_shapley", "population", "api", "census_matrix", "threads"):
        assert name in BENCHMARKS
        assert name in out


def test_unknown_benchmark_is_an_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["no_such_benchmark"])
    assert exc.value.code == 2


def test_census_matrix_spec_is_the_issue_matrix() -> None:
    plan = plan_assessment(load_spec(SPECS / "census-matrix.yaml"))
    assert [r.name for r in plan.rows] == [
        "baseline",
        "adversarial_training",
        "dp_sgd",
        "outlier_removal",
        "adversarial_debiasing",
    ]
    assert sorted({c.risk for c in plan.columns}) == sorted(
        [
            "evasion",
            "poisoning",
            "unauth_model_ownership",
            "membership_inference",
            "attribute_inference",
            "distribution_inference",
            "data_reconstruction",
            "discriminatory_behavior",
        ]
    )
    assert (len(plan.trainings), len(plan.cells)) == (15, 120)


def test_study_spec_sweeps() -> None:
    plan = plan_assessment(load_spec(SPECS / "census-study.yaml"))
    names = [r.name for r in plan.rows]
    for eps in ("0.01", "0.03", "0.1"):
        assert f"adversarial_training (epsilon={eps})" in names
    for pct in (10, 20, 30, 40):
        assert f"outlier_removal (percent={pct})" in names
    assert len(plan.spec.seeds) == 5


def test_fmnist_spec_plans() -> None:
    plan = plan_assessment(load_spec(SPECS / "fmnist-vgg11.yaml"))
    assert (len(plan.trainings), len(plan.cells)) == (9, 45)


def test_thread_spec_is_a_small_census_assessment() -> None:
    plan = plan_assessment(load_spec(SPECS / "census-threads.yaml"))
    assert [r.name for r in plan.rows] == ["baseline", "adversarial_training", "dp_sgd"]
    assert (len(plan.trainings), len(plan.cells)) == (3, 12)


def test_layer1_steps_benchmark_gives_the_same_results_both_ways(tmp_path: Path) -> None:
    """bench_layer1_steps, small: the Adam, adversary and training-step loops end on identical weights, PGD's
    gradients agree."""
    from benchmarks import bench_layer1_steps

    result = bench_layer1_steps.main(
        ["--rows", "600", "--epochs", "1", "--repeats", "1", "--adversary-steps", "2", "--pgd-batches", "2",
         "--output", str(tmp_path / "o.json")]
    )  # fmt: skip
    assert [r["step"] for r in result["rows"]] == [
        "adam: linearnet_m1",
        "adam: debiasing_adversary",
        "gradients: debiasing_adversary",
        "training step: linearnet_m1",
        "pgd: 10 steps, linearnet_m1",
    ]
    assert [r["count"] for r in result["rows"]] == [4, 8, 8, 4, 2]
    assert all(r["identical"] for r in result["rows"][:4])
    assert result["rows"][4]["relative_gradient_gap"] < 1e-5
    assert (tmp_path / "o.json").exists()
