"""History page: every assessment of the project with status, filters and delete."""

from __future__ import annotations

from datetime import date

import streamlit as st

from dashboard.client import ApiError
from dashboard.history import filter_assessments, history_rows
from dashboard.progress import ACTIVE_STATUSES
from dashboard.state import remember_assessment, require_client, show_api_error

STATUSES = ["queued", "running", "finalizing", "succeeded", "partial", "failed", "cancelled"]

client = require_client()
st.title("History")

try:
    assessments = client.list_assessments(limit=500)
except ApiError as exc:
    show_api_error(exc)
    st.stop()

filters = st.columns([2, 3, 2])
statuses = filters[0].multiselect("Status", STATUSES, key="history.status")
text = filters[1].text_input("Name contains", key="history.text")
since = filters[2].date_input("Created since", value=None, key="history.since")
shown = filter_assessments(assessments, statuses=statuses, text=text, since=since if isinstance(since, date) else None)
st.caption(f"{len(shown)} of {len(assessments)} assessments")

if not shown:
    st.info("No assessment matches." if assessments else "No assessment yet.")
    st.stop()

st.dataframe(history_rows(shown), hide_index=True, width="stretch", key="history.table")
by_id = {a["id"]: a for a in shown}
# A new key after each delete: the browser keeps a widget's chips across reruns even when its state is
# cleared on the server, so the deleted runs would stay selected under an old key.
PICK_KEY = f"history.pick.{st.session_state.get('history.generation', 0)}"
picked = st.multiselect(
    "Select assessments",
    list(by_id),
    key=PICK_KEY,
    format_func=lambda i: (
        f"{by_id[i].get('name')} · {by_id[i].get('status')} · "
        f"{str(by_id[i].get('created_at', ''))[:16].replace('T', ' ')} · {i[:8]}"
    ),
    help="Pick one to open it, or several to delete them.",
)
if picked:
    cols = st.columns(3)
    if len(picked) == 1:
        if cols[0].button("Open results", key="history.open", icon=":material/grid_on:"):
            remember_assessment(picked[0])
            st.session_state["results.selected"] = picked[0]
            st.switch_page("views/results.py")
        if cols[1].button("Open progress", key="history.progress", icon=":material/progress_activity:"):
            remember_assessment(picked[0])
            st.session_state["run.selected"] = picked[0]
            st.switch_page("views/run.py")
    confirm = cols[2].checkbox(f"Confirm deleting {len(picked)} assessment(s)", key="history.confirm")
    if cols[2].button("Delete", key="history.delete", type="primary", disabled=not confirm, icon=":material/delete:"):
        deleted, failed = 0, []
        for assessment_id in picked:
            status = next(a.get("status") for a in shown if a["id"] == assessment_id)
            try:
                if status in ACTIVE_STATUSES:
                    client.cancel_assessment(assessment_id)
                client.delete_assessment(assessment_id)
                deleted += 1
            except ApiError as exc:
                failed.append(f"{assessment_id[:8]}: {exc.message}")
        st.session_state.pop("history.confirm", None)
        st.session_state.pop(PICK_KEY, None)
        st.session_state["history.generation"] = st.session_state.get("history.generation", 0) + 1
        st.session_state["history.flash"] = (deleted, failed)
        st.rerun()
else:
    st.caption("Select assessments to open or delete them.")

flash = st.session_state.pop("history.flash", None)
if flash:
    deleted, failed = flash
    if deleted:
        st.success(f"Deleted {deleted} assessment(s).")
    for message in failed:
        st.error(message)
