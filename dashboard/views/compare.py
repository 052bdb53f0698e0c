"""Compare page: two assessments side by side (e.g. before and after a model change)."""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiError
from dashboard.heatmap import compare_grids, heatmap_figure, matrix_grid, utility_table
from dashboard.state import require_client, show_api_error
from dashboard.widgets import load_results, pick_assessment

client = require_client()
st.title("Compare assessments")
cols = st.columns(2)
with cols[0]:
    first = pick_assessment(client, "Assessment A", "compare.a")
with cols[1]:
    second = pick_assessment(client, "Assessment B", "compare.b")
if first is None or second is None:
    st.info("Two finished assessments are needed for a comparison.")
    st.stop()
try:
    a, b = load_results(client, first), load_results(client, second)
except ApiError as exc:
    show_api_error(exc)
    st.stop()

for col, results, tag in ((cols[0], a, "A"), (cols[1], b, "B")):
    with col:
        st.dataframe(utility_table(results), hide_index=True, width="stretch")
        grid = matrix_grid(results)
        if grid.rows:
            st.plotly_chart(heatmap_figure(grid, title=f"{tag}: {results.get('name')}"), key=f"compare.heatmap.{tag}")
        else:
            st.caption(f"{tag} has no defense rows.")

st.header("Cell by cell", divider="gray")
rows = compare_grids(a, b)
if rows:
    st.caption(
        "Change (defended - baseline, in the metric's unit) of each cell both assessments measured, and B's change "
        "minus A's."
    )
    st.dataframe(rows, hide_index=True, width="stretch")
else:
    st.info("The two assessments share no (defense, risk) cell.")
