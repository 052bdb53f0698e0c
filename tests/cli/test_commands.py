"""The ``amulet`` command line: the engine's commands, and the service's added by name (never imported by the
engine), absent where the service packages are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from amulet import registry
from amulet.cli import app

ROOT = Path(__file__).resolve().parents[2]
ENGINE_COMMANDS = {
    "assess",
    "bundle",
    "catalog",
    "datasets",
    "demo",
    "export-model",
    "spec-schema",
    "submit",
    "verify-report",
}
SERVICE_COMMANDS = {"serve", "worker"}


def _commands(help_text: str) -> set[str]:
    """Command names of a Typer ``--help`` screen (the first word of each row of its Commands box)."""
    names, inside = set(), False
    for line in help_text.splitlines():
        if "Commands" in line and line.startswith("╭"):
            inside = True
        elif line.startswith("╰"):
            inside = False
        elif inside and line.startswith("│ ") and line[2] != " ":
            names.add(line[2:].split()[0])
    return names


def _amulet(*args: str, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``amulet ARGS`` in a fresh interpreter; ``hide``: top-level packages made unimportable first."""
    code = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in hide)
    code += "from amulet.cli import app\napp(sys.argv[1:], prog_name='amulet')\n"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_help_lists_the_engine_and_the_service_commands() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert _commands(result.output) == ENGINE_COMMANDS | SERVICE_COMMANDS


def test_without_the_service_packages_only_the_engine_commands_exist() -> None:
    """An engine-only install: `amulet` still works, and `amulet serve` is an unknown command."""
    shown = _amulet("--help", hide=("backend", "worker"))
    assert shown.returncode == 0, shown.stderr
    assert _commands(shown.stdout) == ENGINE_COMMANDS
    serve = _amulet("serve", hide=("backend", "worker"))
    assert serve.returncode == 2 and "No such command 'serve'" in serve.stderr


def test_the_engine_cli_imports_nothing_of_the_service_or_torch() -> None:
    """Importing the command line loads only the service's two command modules (each imports typer alone),
    so `amulet --help` stays quick; the engine's heavy imports happen inside the commands."""
    code = (
        "import sys, json; import amulet.cli; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('backend', 'worker', 'torch'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout) == ["backend", "backend.cli", "worker", "worker.cli"]


def test_python_dash_m_amulet_runs_the_same_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "amulet", "catalog", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert [r["code"] for r in json.loads(result.stdout)["risks"]] == [r.code for r in registry.risks()]


def test_an_unknown_command_exits_2_and_names_it() -> None:
    result = CliRunner().invoke(app, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output
