"""Streamlit building blocks shared by several pages (assessment pickers, results loading, drill-down)."""

from __future__ import annotations

from functools import partial
from typing import Any

import streamlit as st

from dashboard.client import REPORT_FORMATS, ApiClient, ApiError
from dashboard.result_tables import cell_detail
from dashboard.state import show_api_error

__all__ = [
    "FINISHED_STATUSES",
    "load_results",
    "pick_assessment",
    "readable_columns",
    "report_downloads",
    "show_cell_detail",
]

RESULTS_CACHE = "results.cache"


def load_results(client: ApiClient, assessment_id: str) -> dict[str, Any]:
    """The results document of a finished assessment (fetched once per session: it never changes)."""
    cache: dict[str, Any] = st.session_state.setdefault(RESULTS_CACHE, {})
    if assessment_id not in cache:
        cache[assessment_id] = client.get_results(assessment_id)
    return dict(cache[assessment_id])


#: Statuses of the assessments whose results can be opened (a failed one may have rendered reports too).
FINISHED_STATUSES = ("succeeded", "partial", "failed")


def pick_assessment(
    client: ApiClient, label: str, key: str, default: str | None = None, *, avoid: str | None = None
) -> str | None:
    """A select box of the project's finished assessments: succeeded, partial and failed (newest first).

    The first time (nothing chosen under ``key`` yet) it shows ``default`` when that is finished, else the
    newest one that is not ``avoid`` (so that Compare's A and B start on different runs).
    """
    try:
        finished = [a for a in client.list_assessments(limit=200) if a.get("status") in FINISHED_STATUSES]
    except ApiError as exc:
        show_api_error(exc)
        return None
    if not finished:
        return None
    by_id = {a["id"]: a for a in finished}
    ids = list(by_id)
    if st.session_state.get(key) not in ids:
        others = [i for i in ids if i != avoid] or ids
        st.session_state[key] = default if default in ids else others[0]
    return str(
        st.selectbox(
            label,
            ids,
            key=key,
            format_func=lambda i: (
                f"{by_id[i].get('name')} · {by_id[i].get('status', '')} · "
                f"{str(by_id[i].get('finished_at') or by_id[i].get('created_at', ''))[:19].replace('T', ' ')} · {i[:8]}"
            ),
        )
    )


def show_cell_detail(results: dict[str, Any], row: str, column: str) -> None:
    """The drill-down of one heatmap cell."""
    detail = cell_detail(results, row, column)
    cell, info = detail["cell"] or {}, detail["column"]
    kind = "intended" if cell.get("intended") else "unintended"
    st.subheader(f"{row} x {column}")
    st.caption(f"{kind} interaction · {info.get('risk_name', info.get('risk'))} measured by {info.get('attack_name')}")
    if detail["degenerate"]:
        st.warning(f"Degenerate model: {detail['degenerate']} These numbers are not a finding.")
    elif cell.get("status") not in (None, "ok"):
        st.warning(f"{cell.get('status')}: {cell.get('reason') or 'no reason recorded'}")
    acc = detail["accuracy"]
    cols = st.columns(4)
    cols[0].metric("Change (defended - baseline)", detail["label"], help=f"{cell.get('metric', '')}")
    cols[1].metric("Clean accuracy", acc["accuracy"], help=f"95% CI {acc['accuracy 95% CI']}")
    cols[2].metric("Accuracy change", acc["change vs baseline"], help=f"95% CI {acc['change 95% CI']}")
    cols[3].metric("Majority rate", acc["majority rate"], help="Accuracy of always predicting the most frequent class")
    strength = detail["strength"]
    st.markdown(f"**Attack strength**: {strength['label']}")
    if strength["weak"]:
        st.warning(
            "Weak attack budget: this cell is not a finding. " + (strength["note"] or "Its budget is below the floor.")
        )
    if strength["budget"]:
        with st.expander("Attack budget as run"):
            st.table({"item": list(strength["budget"]), "value": [str(v) for v in strength["budget"].values()]})
    st.markdown("**Headline metrics** (mean over seeds, 95% intervals, paired delta against the baseline)")
    st.dataframe(detail["summaries"], hide_index=True, width="stretch")
    st.markdown("**Per-seed values**")
    st.dataframe(detail["per_seed"], hide_index=True, width="stretch")
    threat = info.get("threat_model") or {}
    if threat:
        st.markdown("**Threat model**")
        st.table({k: [v] for k, v in threat.items() if v})
    if info.get("params"):
        with st.expander("Attack parameters"):
            st.json(info["params"])
    for error in detail["errors"]:
        st.warning(f"Seed {error['seed']}: {error['status']} — {error['reason']}")


def report_downloads(client: ApiClient, assessment_id: str) -> None:
    """One download button per report format and one for the signed bundle (each fetched when clicked)."""
    cols = st.columns(len(REPORT_FORMATS) + 1)
    labels = {"html": "HTML report", "pdf": "PDF report", "json": "JSON results", "junit": "JUnit XML"}
    for col, (fmt, (ext, mime)) in zip(cols, REPORT_FORMATS.items()):
        col.download_button(
            labels[fmt],
            data=partial(client.download_report, assessment_id, fmt),
            file_name=f"amulet-{assessment_id[:8]}.{ext}",
            mime=mime,
            key=f"results.download.{fmt}",
            on_click="ignore",
            icon=":material/download:",
        )
    cols[-1].download_button(
        "Signed bundle",
        data=partial(client.download_bundle, assessment_id),
        file_name=f"amulet-{assessment_id[:8]}-bundle.zip",
        mime="application/zip",
        key="results.download.bundle",
        on_click="ignore",
        icon=":material/verified:",
        help="Every report, the results, the signed manifest and the public key in one zip; check it offline "
        "with `amulet verify-report <zip> --public-key <key>` (the server's key: GET /signing-key).",
    )


def readable_columns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows whose column names an API gave in snake_case, written as words (``num_classes`` ->
    ``num classes``)."""
    return [{str(k).replace("_", " "): v for k, v in row.items()} for row in rows]
