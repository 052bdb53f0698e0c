"""Results page: warnings and utility first, then the interaction heatmap with drill-down, the findings, the
baseline's risk, policy verdicts and report downloads."""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiError
from dashboard.heatmap import heatmap_figure, matrix_grid, scale_caption, selected_cell
from dashboard.result_tables import assessment_warnings, baseline_table, checks_table, findings_table, utility_table
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
    try:  # a failed assessment may have no results: say why it failed
        detail = client.get_assessment(selected)
    except ApiError:
        detail = {}
    if detail.get("status") == "failed":
        st.error(f"This assessment failed and has no results: {detail.get('error') or 'see its errors.'}")
        for error in (detail.get("errors") or [])[:20]:
            st.caption(error)
    else:
        show_api_error(exc)
    st.stop()

counts = results.get("counts") or {}
exit_code = results.get("exit_code")
verdict = {
    0: "every policy check passed",
    1: "a policy check failed or was inconclusive",
    2: "a cell errored",
    3: "a policy check could not run",
}.get(exit_code if isinstance(exit_code, int) else -1, "")
st.caption(
    f"{results.get('name')} · {len(results.get('seeds', []))} seeds · {counts.get('cells', 0)} cells "
    f"({counts.get('cells_ok', 0)} ok, {counts.get('cells_not_run', 0)} not run, {counts.get('cells_error', 0)} errors)"
    + (f" · {verdict}" if verdict else "")
)
for warning in assessment_warnings(results):
    (st.error if warning["level"] == "error" else st.warning)(warning["message"])
report_downloads(client, selected)

st.header("Utility", divider="gray")
st.caption(
    "Clean test accuracy of each row's model (mean over seeds, 95% interval), its change against the baseline, "
    "and the majority-class rate of the test set: a model at the majority rate has learnt nothing, and its risk "
    "numbers describe a constant function (degenerate rows are greyed out below and never pass a check)."
)
st.dataframe(utility_table(results), hide_index=True, width="stretch")

st.header("Interaction matrix", divider="gray")
grid = matrix_grid(results)
if not grid.rows:
    st.info("This assessment has no defense rows: only the baseline was measured (see the table below).")
else:
    st.caption(scale_caption() + " Outlined cells are intended interactions. Click a cell for its detail.")
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

st.header("Findings", divider="gray")
findings = findings_table(results)
if findings:
    st.caption("Significant changes on models that are not degenerate, largest first.")
    st.dataframe(findings, hide_index=True, width="stretch")
else:
    st.caption("No significant change on a non-degenerate model.")

st.header("Baseline", divider="gray")
st.caption("The undefended model's susceptibility: what every cell's change is measured against.")
st.dataframe(baseline_table(results), hide_index=True, width="stretch")

st.header("Policy verdicts", divider="gray")
checks = checks_table(results)
if checks:
    st.dataframe(checks, hide_index=True, width="stretch")
else:
    st.caption("This assessment declared no policy checks.")
