"""``amulet`` command line. Each command group lives in its own module and registers on ``app``.

Commands: ``demo``, ``catalog`` (registry), ``datasets``, ``export-model`` ...
"""

from __future__ import annotations

import importlib

from amulet.cli._app import app

# Adding a command group: write amulet/cli/_<group>.py (decorating functions with @app.command()) and list it here.
_COMMAND_MODULES = (
    "amulet.cli._assess",
    "amulet.cli._catalog",
    "amulet.cli._datasets",
    "amulet.cli._demo",
    "amulet.cli._export",
    "amulet.cli._service",
)

for _module in _COMMAND_MODULES:
    importlib.import_module(_module)

__all__ = ["app"]
