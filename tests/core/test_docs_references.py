"""docs/references.md cites every registered attack and defense with its registry reference (kept in step)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amulet import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "references.md"
ENTRIES = [*(a for r in registry.risks() for a in registry.attacks(r.key)), *registry.defenses()]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.key)
def test_every_attack_and_defense_is_listed_with_its_reference(entry) -> None:
    assert entry.reference, f"{entry.key} has no reference in the registry"
    assert f"- **{entry.name}** (`{entry.key}`): {entry.reference}" in DOC.read_text().splitlines()


def test_the_framework_paper_is_cited_in_full() -> None:
    text = " ".join(DOC.read_text().split())
    sok = "V. Duddu, S. Szyller, N. Asokan. SoK: Unintended Interactions among Machine Learning Defenses and Risks."
    assert f"{sok} IEEE Symposium on Security and Privacy (S&P) 2024." in text
