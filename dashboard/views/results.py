"""Results page: interaction heatmap with drill-down, baseline table, policy verdicts, report downloads."""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiError
from dashboard.heatmap import accuracy_table, baseline_table, checks_table, heatmap_figure, matrix_grid, selected_cell
from dashboard.state import current_assessment, remember_assessment, require_client, show_api_error
from dashboard.widgets import load_results, pick_assessment, report_downloads, show_cell_detail

client = require_client()
st.title("Results")
selected = pick_assessment(client, "Assessment", "results.selected", default=current_assessment())
if selected is None:
    st.info("No finished assessment yet.")
    st.page_link("views/run.py", label="See running assessments", icon=":material/progress_activity:")
    st.stop()
remember_assessment(selected)
try:
    results = load_results(client, selected)
except ApiError as exc:
    show_api_error(exc)
    st.stop()

counts = results.get("counts") or {}
exit_code = results.get("exit_code")
verdict = {
    0: "every policy check passed",
    1: "a policy check failed",
    2: "a cell errored",
    3: "a policy check could not run",
}.get(exit_code, "")
st.caption(
    f"{results.get('name')} · {len(results.get('seeds', []))} seeds · {counts.get('cells', 0)} cells "
    f"({counts.get('cells_ok', 0)} ok, {counts.get('cells_not_run', 0)} not run, {counts.get('cells_error', 0)} errors)"
    + (f" · {verdict}" if verdict else "")
)
report_downloads(client, selected)

st.header("Interaction matrix", divider="gray")
grid = matrix_grid(results)
if not grid.rows:
    st.info("This assessment has no defense rows: only the baseline was measured (see the table below).")
else:
    st.caption(
        "Colour = change in susceptibility against the undefended baseline (red: more susceptible, blue: less; "
        "▲/▼ significant at 5%, = no significant change). Outlined cells are intended interactions. "
        "Click a cell for its detail."
    )
    event = st.plotly_chart(
        heatmap_figure(grid),
        key="results.heatmap",
        on_select="rerun",
        selection_mode="points",
        config={"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]},
    )
    clicked = selected_cell(event)
    if clicked and clicked[0] in grid.rows and clicked[1] in grid.columns:
        st.session_state["results.row"], st.session_state["results.column"] = clicked
    cols = st.columns(2)
    row = cols[0].selectbox("Defense (row)", grid.rows, key="results.row")
    column = cols[1].selectbox("Risk (column)", grid.columns, key="results.column")
    with st.container(border=True):
        show_cell_detail(results, row, column)

st.header("Baseline", divider="gray")
st.caption("The undefended model's susceptibility: what every cell's change is measured against.")
st.dataframe(baseline_table(results), hide_index=True, width="stretch")
st.markdown("**Clean accuracy per row**")
st.dataframe(accuracy_table(results), hide_index=True, width="stretch")

st.header("Policy verdicts", divider="gray")
checks = checks_table(results)
if checks:
    st.dataframe(checks, hide_index=True, width="stretch")
else:
    st.caption("This assessment declared no policy checks.")
