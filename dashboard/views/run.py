"""Run page: live progress of an assessment (per-cell progress, ETA, current step, errors) and cancel.

It polls ``GET /assessments/{id}/status`` (304 while nothing changed) and reads the detail, cells and
trainings again only when that status says the assessment changed.
"""

from __future__ import annotations

import streamlit as st

from dashboard.client import ApiError
from dashboard.progress import STATUS_ICONS, cell_grid, current_step, finish_message, is_active, summarize_progress
from dashboard.state import current_assessment, remember_assessment, require_client, show_api_error

POLL_SECONDS = 2.0
STATUS_KEY = "run.status"
DETAIL_KEY = "run.detail"

client = require_client()
st.title("Run")

try:
    assessments = client.list_assessments(limit=50)
except ApiError as exc:
    show_api_error(exc)
    st.stop()
if not assessments:
    st.info("No assessment yet.")
    st.page_link("views/new_assessment.py", label="Create one", icon=":material/add_circle:")
    st.stop()

by_id = {a["id"]: a for a in assessments}


def _live_status(assessment_id: str) -> str:
    """The latest status the poll saw for the selected assessment, else the list's (which may be older)."""
    polled = st.session_state.get(STATUS_KEY) or {}
    if polled.get("id") == assessment_id and polled.get("status"):
        return str(polled["status"])
    return str(by_id[assessment_id].get("status", ""))


current = current_assessment()
if current and current not in by_id:
    try:
        by_id = {current: client.get_assessment(current), **by_id}
    except ApiError:
        current = None
ids = list(by_id)
if st.session_state.get("run.selected") not in ids:
    st.session_state["run.selected"] = current if current in ids else ids[0]
selected = st.selectbox(
    "Assessment",
    ids,
    key="run.selected",
    format_func=lambda i: (
        f"{by_id[i].get('name')} · {_live_status(i)} · "
        f"{str(by_id[i].get('created_at', ''))[:19].replace('T', ' ')} · {i[:8]}"
    ),
)
remember_assessment(selected)
if st.session_state.pop("run.just_launched", None) == selected:
    st.toast("Assessment queued.", icon=":material/rocket_launch:")


def poll(assessment_id: str) -> dict:
    """The assessment as the page draws it: the detail with every cell and training, re-read only when the
    status poll says it changed; status, progress and current step from the poll itself."""
    previous = st.session_state.get(STATUS_KEY)
    status = client.get_status(
        assessment_id, previous=previous if (previous or {}).get("id") == assessment_id else None
    )
    st.session_state[STATUS_KEY] = status
    progress = status.get("progress") or {}
    version = (assessment_id, status.get("status"), status.get("updated_at"), str(progress.get("cells_by_status")))
    cached = st.session_state.get(DETAIL_KEY)
    if cached is None or cached[0] != version:
        detail = client.get_assessment(assessment_id)
        detail["cells"] = client.list_cells(assessment_id)
        detail["trainings"] = client.list_trainings(assessment_id)
        cached = (version, detail)
        st.session_state[DETAIL_KEY] = cached
    step = [status["step"]] if status.get("step") else []
    return {
        **cached[1],
        "status": status.get("status"),
        "progress": status.get("progress"),
        "events": [*(cached[1].get("events") or []), *step],
    }


try:
    first = poll(selected)
except ApiError as exc:
    show_api_error(exc)
    st.stop()


@st.fragment(run_every=POLL_SECONDS if is_active(first) else None)
def live_progress() -> None:
    """Re-drawn every couple of seconds while the assessment is active."""
    try:
        detail = poll(selected)
    except ApiError as exc:
        show_api_error(exc)
        return
    status = str(detail.get("status"))
    summary = summarize_progress(detail)
    cols = st.columns([2, 1])
    cols[0].subheader(f"{STATUS_ICONS.get(status, '')} {detail.get('name')} — {status}")
    if is_active(detail) and cols[1].button("Cancel assessment", key="run.cancel", icon=":material/stop_circle:"):
        try:
            client.cancel_assessment(selected)
        except ApiError as exc:
            show_api_error(exc)
        else:
            st.toast("Cancellation requested.")
        st.rerun()
    st.progress(summary["fraction"], text=summary["label"])
    step = current_step(detail)
    if step and is_active(detail):
        st.caption(f"Now: {step}")
    for error in (detail.get("errors") or [])[:50]:
        st.error(error)
    grid = cell_grid(detail)
    if grid:
        st.dataframe(
            grid,
            hide_index=True,
            width="stretch",
            column_config={
                "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            },
        )
    trainings = detail.get("trainings") or []
    if trainings:
        with st.expander(f"Trainings ({sum(t.get('status') == 'done' for t in trainings)}/{len(trainings)} done)"):
            st.dataframe(
                [
                    {
                        "status": f"{STATUS_ICONS.get(str(t.get('status')), '')} {t.get('status')}",
                        "training": t.get("key"),
                        "seconds": t.get("seconds"),
                        "error": t.get("error") or "",
                    }
                    for t in trainings
                ],
                hide_index=True,
                width="stretch",
            )
    message = finish_message(detail)
    if message is not None:
        level, text = message
        {"success": st.success, "warning": st.warning, "error": st.error}[level](text)
        for warning in (detail.get("summary") or {}).get("warnings") or []:
            if isinstance(warning, dict) and warning.get("message"):
                st.warning(str(warning["message"]))
        if detail.get("reports"):
            st.page_link("views/results.py", label="Open the results", icon=":material/grid_on:")
    if is_active(first) and not is_active(detail):
        st.rerun()  # stop polling: redraw the page once without the timer


live_progress()
