"""``amulet datasets``: list the built-in datasets, where each would be loaded from, and whether it is available."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from amulet.cli._app import app


@app.command("datasets")
def datasets_command(
    root: Annotated[
        Path | None,
        typer.Option("--root", help="Folder with one sub-folder per dataset (default: the settings data directory)."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """List every built-in dataset, the source it would be loaded from, and how to install a missing one."""
    # lazy: amulet.datasets imports torch (seconds), which `amulet --help` and the other commands must not pay
    from amulet.datasets import dataset_status

    rows = dataset_status(root)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Amulet datasets")
    for column in ("dataset", "modality", "available", "source", "location / install"):
        table.add_column(column)
    for row in rows:
        if row["available"]:
            where = str(row["location"])
        elif row["source"] == "download":
            where = f"{row['location']}; or {row['install']}"
        else:
            where = str(row["install"])
        table.add_row(
            str(row["name"]), str(row["modality"]), "yes" if row["available"] else "no", str(row["source"]), where
        )
    Console(width=200).print(table)
