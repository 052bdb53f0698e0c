"""``amulet assess``, ``amulet spec-schema``, ``amulet bundle`` and ``amulet verify-report``.

Exit codes of ``amulet assess``: 0 every policy check passed; 1 a check failed (or was inconclusive, e.g. on
a degenerate model); 2 error (invalid spec, bad data, a training or cell that raised: the assessment is
partial or failed); 3 a check could not run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from amulet.cli._app import app
from amulet.exceptions import AmuletError
from amulet.progress import SilentProgress, TqdmProgress

logger = logging.getLogger(__name__)


def _summary(results, paths) -> None:
    """Status and warnings first, then utility (clean accuracy) before any risk column, then the verdicts.

    Each risk column's attack strength (the budget it ran with: shadow models, models per ratio, steps,
    queries) follows the table, one line per column in the reports' wording (``strength_label``); a column
    with a weak budget also says so in its header, since its cells are shown but are never findings.
    """
    # lazy: rich and amulet.assess (torch: seconds) load when `amulet assess` reports, not at `amulet` start-up
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from amulet.assess import cell_label, format_change, format_interval, format_value
    from amulet.assess._display import strength_label

    console = Console(stderr=True)
    style = {"complete": "green", "partial": "yellow", "failed": "bold red"}[results.status]
    console.print(f"[{style}]assessment {results.status.upper()}[/{style}]: {escape(results.name)}")
    for warning in results.warnings:
        where = f" ({escape(warning.row)})" if warning.row else ""
        console.print(f"[yellow]WARNING[/yellow] {warning.code}{where}: {escape(warning.message)}")
    table = Table(
        title=f"{escape(results.name)}: utility, then defense x risk (change defended - baseline; * significant)"
    )
    for name in ("row", "utility", "clean accuracy [95% CI]", "vs baseline", "majority", "eps / delta"):
        table.add_column(name)
    for col in results.columns:
        weak = col.strength is not None and col.strength.weak
        table.add_column(escape(col.label) + ("\n[yellow]weak budget[/yellow]" if weak else ""))
    cells = {(m.row, m.column): m for m in results.matrix}
    for acc in results.accuracy:
        props = acc.properties
        privacy = (
            f"{props['privacy_epsilon']:.3g} / {props.get('privacy_delta', float('nan')):.2g}"
            if "privacy_epsilon" in props
            else "-"
        )
        utility = "ok" if acc.status == "ok" else f"[bold]{acc.status.upper()}[/bold]"
        row_values = [
            escape(acc.row),
            utility,
            f"{format_value(acc.mean, '%')} {format_interval(acc.ci_low, acc.ci_high, '%')}",
            format_change(acc.delta.mean, "%") if acc.delta is not None else "-",
            format_value(acc.majority_rate, "%"),
            privacy,
        ]
        for col in results.columns:
            if acc.row == "baseline":
                m = next(
                    (
                        x
                        for x in results.metrics
                        if (x.row, x.risk, x.attack, x.metric) == ("baseline", col.risk, col.attack, col.primary_metric)
                    ),
                    None,
                )
                row_values.append(format_value(m.mean, m.unit) if m else "-")
                continue
            cell = cells.get((acc.row, col.label))
            if cell is None:
                row_values.append("-")
                continue
            text = cell_label(cell) + (" (intended)" if cell.intended else "")
            colour = {"more_susceptible": "red", "less_susceptible": "blue"}.get(cell.direction, "")
            if cell.status != "ok":
                row_values.append(f"[dim]{escape(text)}[/dim]")
            elif cell.significant and colour:
                row_values.append(f"[{colour}]{escape(text)}[/{colour}]")
            else:
                row_values.append(escape(text))
        table.add_row(*row_values, style="dim" if acc.status != "ok" else None)
    console.print(table)
    if any(col.strength is not None for col in results.columns):
        console.print("attack strength (as run):")
        for col in results.columns:
            strength = escape(strength_label(col))
            if col.strength is not None and col.strength.weak:
                strength = f"[yellow]{strength}[/yellow]"
            console.print(f"  {escape(col.label)}: {strength}")
    for check in results.checks:
        colour = {"pass": "green", "fail": "red", "inconclusive": "yellow", "not_run": "dim"}[check.status]
        console.print(f"[{colour}]{check.status.upper():>12}[/{colour}] {escape(check.row)}: {escape(check.message)}")
    for cell in results.cells:
        if cell.status == "error":
            console.print(
                f"[red]ERROR[/red] {escape(cell.row)} x {escape(cell.risk)} (seed {cell.seed}): {escape(cell.reason)}"
            )
    c = results.counts
    console.print(
        f"status {results.status}; cells: {c['cells_ok']} ok, {c['cells_not_run']} not run, {c['cells_error']} error; "
        f"degenerate rows: {c['rows_degenerate']}; findings: {c['findings']}; "
        f"checks: {c['checks_pass']} pass, {c['checks_fail']} fail, {c['checks_inconclusive']} inconclusive, "
        f"{c['checks_not_run']} not run; exit code {results.exit_code}"
    )
    for name, path in paths.items():
        console.print(f"  {name}: {path}")


@app.command("assess")
def assess_command(
    spec: Annotated[Path, typer.Argument(help="Assessment spec (YAML or JSON).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path("amulet-report"),
    formats: Annotated[str, typer.Option("--format", "-f", help="Comma-separated: html,pdf,json,junit.")] = (
        "html,pdf,json,junit"
    ),
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Model and cell-result cache (default: <artifact dir>/cache)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Torch device (default: the AMULET_DEVICE setting).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    no_cell_cache: Annotated[
        bool,
        typer.Option("--no-cell-cache", help="Recompute every cell even if a cached result exists."),
    ] = False,
) -> None:
    """Run an assessment: train the baseline and each defense, measure every risk, write signed reports."""
    # lazy: amulet.assess imports torch (seconds), which `amulet --help` and the other commands must not pay
    from amulet.assess import SpecError, load_spec, render_reports, run_assessment
    from amulet.assess._report import FORMATS

    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    bad = [f for f in chosen if f not in FORMATS]
    if bad:
        typer.echo(f"Error: unknown format(s) {', '.join(bad)}; allowed values: {', '.join(FORMATS)}.", err=True)
        raise typer.Exit(2)
    try:
        loaded = load_spec(spec)
    except SpecError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    progress = SilentProgress() if quiet else TqdmProgress(leave=False)
    try:
        results = run_assessment(
            loaded,
            out_dir=None,
            cache_dir=cache_dir,
            device=device,
            progress=progress,
            reuse_cells=False if no_cell_cache else None,
        )
    except (AmuletError, ValueError, FileNotFoundError, OSError) as exc:
        typer.echo(f"Error: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    paths = render_reports(results, out, formats=chosen)
    _summary(results, paths)
    raise typer.Exit(results.exit_code)


@app.command("spec-schema")
def spec_schema_command(
    results: Annotated[bool, typer.Option("--results", help="Print the results-file schema instead.")] = False,
) -> None:
    """Print the JSON Schema of assessment specs (or of results files)."""
    # lazy: amulet.assess imports torch (seconds), which `amulet --help` and the other commands must not pay
    from amulet.assess import results_json_schema, spec_json_schema

    typer.echo(json.dumps(results_json_schema() if results else spec_json_schema(), indent=2))


@app.command("bundle")
def bundle_command(
    report_dir: Annotated[Path, typer.Argument(help="Signed report directory (from amulet assess --out DIR).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Zip to write; default: DIR-bundle.zip next to DIR.")
    ] = None,
) -> None:
    """Pack a signed report directory into one zip (reports, results, manifest, signature, public key)."""
    # lazy: amulet.assess imports torch (seconds), which `amulet --help` and the other commands must not pay
    from amulet.assess import write_bundle

    try:
        path = write_bundle(report_dir, output)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {path} ({path.stat().st_size} bytes); check it with: amulet verify-report {path}")


@app.command("verify-report")
def verify_report_command(
    report_dir: Annotated[
        Path,
        typer.Argument(help="Report directory with manifest.json and manifest.json.sig, or a signed bundle zip."),
    ],
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Trusted Ed25519 public key (PEM); default: the local signing key."),
    ] = None,
) -> None:
    """Check a report's Ed25519-signed manifest and every file's SHA-256 (exit 0 valid, 1 not)."""
    # lazy: amulet.assess imports torch (seconds), which `amulet --help` and the other commands must not pay
    from amulet.assess import verify_report

    result = verify_report(report_dir, public_key=public_key)
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.ok:
        typer.echo(
            f"OK: {len(result.files)} files match the manifest signed by key {result.key_id} ({result.trusted_key})."
        )
        raise typer.Exit(0)
    typer.echo(f"FAILED: report {report_dir} does not verify ({result.trusted_key}):", err=True)
    for problem in result.problems:
        typer.echo(f"  - {problem}", err=True)
    raise typer.Exit(1)
