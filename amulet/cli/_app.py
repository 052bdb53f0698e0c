"""The Typer application every ``amulet`` sub-command registers on."""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="amulet",
    help="Measure how ML defenses interact with security, privacy and fairness risks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log engine messages to stderr.")) -> None:
    """Amulet command line."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
