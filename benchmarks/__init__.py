"""Benchmarks (not part of `make test`): run one with `python -m benchmarks.<name>`.

Every benchmark writes its JSON under :data:`OUT` (``benchmarks/out/``, git-ignored) by default, so a run
never dirties the working tree. The figures that ``docs/`` cites live in ``benchmarks/results/``; copy a
new run there deliberately, together with the docs change that cites it.
"""

from pathlib import Path

#: Default folder for benchmark output (git-ignored).
OUT = Path(__file__).resolve().parent / "out"
