"""``amulet catalog``: print the registry of risks, attacks, defenses and metrics."""

from __future__ import annotations

import json

import typer

from amulet.cli._app import app


@app.command("catalog")
def catalog_command(
    as_json: bool = typer.Option(False, "--json", help="Print the full catalog (with parameter schemas) as JSON."),
) -> None:
    """List every registered risk with its attacks, defenses and headline metrics."""
    # lazy: rich and the registry (pydantic, torch: seconds) load for `amulet catalog`, not at `amulet` start-up
    from rich.console import Console
    from rich.table import Table

    from amulet import registry

    if as_json:
        typer.echo(json.dumps(registry.catalog(), indent=2))
        return
    console = Console()
    table = Table(title="Amulet catalog")
    for column in ("code", "risk", "attacks", "defenses targeting it", "headline metrics (↑ riskier / ↓ riskier)"):
        table.add_column(column)
    for risk in registry.risks():
        atk = ", ".join(a.key for a in registry.attacks(risk.key)) or "-"
        dfn = ", ".join(d.key for d in registry.defenses() if risk.key in d.targets) or "-"
        mets = ", ".join(f"{m.key} {'↑' if m.higher_is_riskier else '↓'}" for m in risk.headline_metrics)
        table.add_row(risk.code, risk.name, atk, dfn, mets)
    console.print(table)
