"""Compare page: two assessments side by side (e.g. before and after a model change), on one colour scale,
with B's change minus A's per cell and its significance, and the policy verdicts that changed."""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiError
from dashboard.comparison import changed_verdicts, compare_grids
from dashboard.heatmap import heatmap_figure, matrix_grid, scale_caption
from dashboard.result_tables import utility_table
from dashboard.state import require_client, show_api_error
from dashboard.widgets import load_results, pick_assessment

client = require_client()
st.title("Compare assessments")
cols = st.columns(2)
with cols[0]:
    first = pick_assessment(client, "Assessment A", "compare.a")
with cols[1]:
    second = pick_assessment(client, "Assessment B", "compare.b", avoid=first)
if first is None or second is None:
    st.info("Two finished assessments are needed for a comparison.")
    st.stop()
if first == second:
    st.warning("A and B are the same assessment: pick another one for B.")
try:
    a, b = load_results(client, first), load_results(client, second)
except ApiError as exc:
    show_api_error(exc)
    st.stop()

# Both heatmaps colour a change with the engine's one fixed scale, so equal colours mean equal changes.
st.caption("Both heatmaps share one colour scale. " + scale_caption())
for col, results, tag in ((cols[0], a, "A"), (cols[1], b, "B")):
    with col:
        st.subheader(f"{tag}: {results.get('name')}")
        st.dataframe(utility_table(results), hide_index=True, width="stretch")
        grid = matrix_grid(results)
        if grid.rows:
            st.plotly_chart(heatmap_figure(grid), key=f"compare.heatmap.{tag}")
        else:
            st.caption(f"{tag} has no defense rows.")

st.header("Cell by cell", divider="gray")
rows = compare_grids(a, b)
if rows:
    st.caption(
        "Change (defended - baseline, in the metric's unit) of each cell both assessments measured; B's change "
        "minus A's with a Welch 95% interval (the runs are independent) and whether it is significant at 5%."
    )
    st.dataframe(rows, hide_index=True, width="stretch")
else:
    st.info("The two assessments share no (defense, risk) cell.")

st.header("Policy verdicts that changed", divider="gray")
changed = changed_verdicts(a, b)
if changed:
    st.dataframe(changed, hide_index=True, width="stretch")
else:
    st.caption("Every policy check has the same verdict in A and B.")
