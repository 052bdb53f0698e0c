"""``amulet`` command line. Each command group lives in its own module and registers on ``app``.

Engine commands: ``demo``, ``catalog`` (registry), ``datasets``, ``export-model``, ``assess``, ``bundle``,
``verify-report``, ``submit`` (a client of the REST API). The service's commands (``serve``, ``worker``) live
with the service and are added by the plugins listed in :data:`SERVICE_PLUGINS`, looked up by name: the
engine imports nothing of the service, and where the service packages are absent so are those commands.
"""

from __future__ import annotations

import importlib
import importlib.util

from amulet.cli._app import app

__all__ = ["SERVICE_PLUGINS", "app"]

# Adding a command group: write amulet/cli/_<group>.py (decorating functions with @app.command()) and list it here.
_COMMAND_MODULES = (
    "amulet.cli._assess",
    "amulet.cli._catalog",
    "amulet.cli._datasets",
    "amulet.cli._demo",
    "amulet.cli._export",
    "amulet.cli._submit",
)

#: Modules of the service that add commands: each has ``register(app)`` and imports only typer at its top
#: (their commands import the service when run). Named, never imported statically, so the import contracts
#: (pyproject.toml, ``make lint``) hold: the engine does not depend on the service.
SERVICE_PLUGINS = ("backend.cli", "worker.cli")


def _add_service_commands() -> None:
    for name in SERVICE_PLUGINS:
        if importlib.util.find_spec(name.partition(".")[0]) is not None:  # absent: an engine-only install
            importlib.import_module(name).register(app)


for _module in _COMMAND_MODULES:
    importlib.import_module(_module)
_add_service_commands()
