"""Old home of the service commands, kept only for importers of :func:`_demo_spec` (tests/assess).

``amulet serve`` now lives in :mod:`backend.cli`, ``amulet worker`` in :mod:`worker.cli`, ``amulet submit``
in :mod:`amulet.cli._submit` and the demo spec in :mod:`amulet.cli._demo`. Remove this module once nothing
imports it.
"""

from __future__ import annotations

from amulet.cli._demo import demo_spec as _demo_spec

__all__ = ["_demo_spec"]
