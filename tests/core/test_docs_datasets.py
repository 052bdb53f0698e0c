"""docs/datasets.md stays in step with the dataset sources the loaders use (amulet.datasets._sources)."""

from __future__ import annotations

from pathlib import Path

from amulet.datasets import DATASET_SOURCES

DOC = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"


def test_every_builtin_dataset_has_its_row_with_its_sources() -> None:
    rows = {line.split("|")[1].strip(" `"): line for line in DOC.read_text().splitlines() if line.startswith("| `")}
    assert set(rows) == set(DATASET_SOURCES)
    for name, info in DATASET_SOURCES.items():
        row = rows[name]
        assert f"| {info.modality} |" in row, name
        if info.offline is None:
            assert "| none |" in row, name
        else:
            assert info.offline.package in row, name
            if info.offline.kind == "pip":
                assert f"`{info.offline.install}`" in row, name
        if info.download_url:
            assert f"<{info.download_url}>" in row, name
