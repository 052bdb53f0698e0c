"""Every shipped spec trains a baseline to the accuracy its header documents.

The examples are only worth running if the model under assessment is a real one: each spec's header says
``Expected: baseline accuracy >= N %`` and this test trains that baseline (the ``baseline`` row, the spec's
first seed, through :func:`amulet.assess.plan_assessment` and :func:`amulet.assess.run_training`, i.e.
exactly what ``amulet assess`` trains) and holds it to N. The census specs and the ``make run`` demo take a
few seconds each; Fashion-MNIST trains a CNN on 10,000 images (about 20 s of CPU, over a minute on a loaded
2-core machine), so it is marked slow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from amulet.assess import plan_assessment, run_training
from amulet.assess._spec import load_spec
from amulet.cli._demo import demo_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: The demo's documented baseline accuracy (``demo_spec``'s docstring and examples/README.md).
DEMO_ACCURACY = 84.0


def documented_accuracy(path: Path) -> float:
    """The ``Expected: baseline accuracy >= N %`` of a spec's header comment."""
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    match = re.search(r"Expected: baseline accuracy >= ([0-9.]+) ?%", header)
    assert match, f"{path.name}: the header comment must document 'Expected: baseline accuracy >= N %'"
    return float(match.group(1))


def baseline_accuracy(spec: Any, tmp_path: Path) -> float:
    plan = plan_assessment(spec)
    seed = plan.spec.seeds[0]
    training = next(t for t in plan.trainings if t.row == "baseline" and t.seed == seed)
    record = run_training(plan, training.key, cache_dir=tmp_path / "cache", device="cpu")
    assert record["status"] == "trained"
    return float(record["test_accuracy"])


def test_every_example_documents_its_accuracy() -> None:
    specs = sorted(EXAMPLES.glob("*.yaml"))
    assert {p.name for p in specs} >= {"census-quick.yaml", "fmnist.yaml", "full-matrix.yaml"}
    readme = (EXAMPLES / "README.md").read_text()
    for path in specs:
        accuracy = documented_accuracy(path)
        assert accuracy >= (85.0 if "fmnist" in path.name else 84.0), path.name
        assert path.name in readme
        load_spec(path)  # valid


@pytest.mark.parametrize(
    "name",
    [
        "census-quick.yaml",
        "full-matrix.yaml",
        pytest.param("fmnist.yaml", marks=pytest.mark.slow),
    ],
)
def test_example_baseline_reaches_its_documented_accuracy(name: str, tmp_path: Path) -> None:
    path = EXAMPLES / name
    accuracy = baseline_accuracy(load_spec(path), tmp_path)
    print(f"{name}: baseline accuracy {accuracy:.2f}% (documented >= {documented_accuracy(path)}%)")
    assert accuracy >= documented_accuracy(path), (name, accuracy)


def test_demo_baseline_reaches_its_documented_accuracy(tmp_path: Path) -> None:
    assert f">= {DEMO_ACCURACY:g} %" in (demo_spec.__doc__ or "")
    accuracy = baseline_accuracy(demo_spec(), tmp_path)
    print(f"demo: baseline accuracy {accuracy:.2f}% (documented >= {DEMO_ACCURACY}%)")
    assert accuracy >= DEMO_ACCURACY, accuracy
