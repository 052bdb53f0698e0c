"""The policy section of the New-assessment form: thresholds on headline metrics, added and removed one by one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from dashboard.widget_values import held, held_index

__all__ = ["OPS", "policy_editor"]

#: The comparisons a check may make.
OPS = ("<=", "<", ">=", ">")
_TARGETS = ("value", "delta")


def policy_editor(
    chosen_risks: Sequence[str], risk_info: Mapping[str, Mapping[str, Any]], loaded_policy: Sequence[Any]
) -> list[dict[str, Any]]:
    """Draw the policy checks and the row that adds one; return the checks (kept in the session state).

    Args:
        chosen_risks: The risk keys the form's columns hold (a check on another risk is dropped, with a note).
        risk_info: The catalog's risks by key (their ``headline_metrics`` are what a check can test).
        loaded_policy: The checks of a loaded spec, the starting list when the form has none yet.
    """
    if "new.policy" not in st.session_state:
        st.session_state["new.policy"] = list(loaded_policy)
    policy: list[dict[str, Any]] = st.session_state["new.policy"]
    # A check on a risk that is no longer chosen would be refused by the API: it goes with its risk.
    stale = [c for c in policy if str(c.get("metric", "")).split(".", 1)[0] not in chosen_risks]
    if stale:
        policy[:] = [c for c in policy if c not in stale]
        st.info(
            "Removed the policy check(s) on risks that are no longer selected: "
            + ", ".join(f"`{c.get('metric')} {c.get('op')} {c.get('threshold')}`" for c in stale)
        )
    metric_choices = [f"{r}.{m['key']}" for r in chosen_risks for m in risk_info[r].get("headline_metrics", [])]
    if metric_choices:
        cols = st.columns([3, 1, 1, 2, 1])
        metric = cols[0].selectbox(
            "Metric", metric_choices, index=held_index(metric_choices, "new.policy_metric"), key="new.policy_metric"
        )
        op = cols[1].selectbox("Op", OPS, index=held_index(OPS, "new.policy_op"), key="new.policy_op")
        threshold = cols[2].number_input(
            "Threshold", value=float(held("new.policy_threshold", 0.0)), key="new.policy_threshold", format="%g"
        )
        row_pattern = cols[3].text_input(
            "Rows", value=held("new.policy_row", "*"), key="new.policy_row", help="A row name, a glob, or * for all."
        )
        on = cols[4].selectbox("On", _TARGETS, index=held_index(_TARGETS, "new.policy_on"), key="new.policy_on")
        if st.button("Add check", key="new.policy_add"):
            check = {"metric": metric, "op": op, "threshold": float(threshold), "row": row_pattern or "*"}
            if on != "value":
                check["on"] = on
            policy.append(check)
    else:
        st.caption("Choose risks first.")
    for i, check in enumerate(list(policy)):
        cols = st.columns([6, 1])
        cols[0].code(
            f"{check['metric']} {check['op']} {check['threshold']:g}  (rows: {check.get('row', '*')}, "
            f"on {check.get('on', 'value')})",
            language=None,
        )
        if cols[1].button("Remove", key=f"new.policy_remove.{i}"):
            policy.pop(i)
            st.rerun()
    return policy
