"""Runs the engine's doctests (the examples in ``amulet``'s docstrings) with the test suite.

``testpaths`` in pyproject.toml names ``amulet`` next to ``tests``, so ``make test`` collects every module of
the engine as a doctest module. Not pytest's global ``--doctest-modules``: that would also import each
``tests/**/conftest.py`` as a module named ``conftest`` and clash. Doctests carry no marker, so the default
``not slow and not gpu`` selection keeps them; ``amulet/__main__.py`` (it runs the CLI when imported) is
skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# pytest's own doctest collector; it has no public import path.
from _pytest.doctest import DoctestModule

_ENGINE = Path(__file__).resolve().parent / "amulet"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> DoctestModule | None:
    if (
        file_path.suffix == ".py"
        and file_path.name != "__main__.py"
        and _ENGINE in file_path.parents
        and not parent.config.option.doctestmodules  # pytest collects them itself then
    ):
        return DoctestModule.from_parent(parent, path=file_path)
    return None
