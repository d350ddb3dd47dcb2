"""Alerts: thresholds, open alerts and their history."""

import time

import pandas as pd
import streamlit as st

from console import ui
from core.monitor import alert_history, open_alerts

ui.page_header("Alerts", "Raised by the monitor worker (`hi-moe monitor`). An alert opens once, "
               "stays open while its condition holds and resolves by itself when it clears.")

with ui.registry() as reg:
    thresholds = reg.thresholds()
    current = open_alerts(reg)
    history = alert_history(reg, since=time.time() - 30 * 86400)

st.subheader("Thresholds")
operator = ui.signed_in()
with st.form("thresholds"):
    values = {}
    for key, row in thresholds.items():
        values[key] = st.number_input(f"{key}", value=float(row["value"]), help=row["description"],
                                      disabled=not operator, format="%.3f")
        if row["updated_by"]:
            st.caption(f"changed by {row['updated_by']} at {row['updated_at']}")
    saved = st.form_submit_button("Save thresholds", disabled=not operator)
if not operator:
    st.caption("Sign in to change thresholds.")
if saved and operator:
    with ui.registry() as reg, ui.operator_errors():
        changed = [k for k, v in values.items() if v != thresholds[k]["value"]]
        for key in changed:
            reg.set_threshold(key, values[key])
        st.success(f"Saved {len(changed)} change(s)." if changed else "Nothing changed.")

st.subheader("Open alerts")
if current:
    st.dataframe(pd.DataFrame([{"severity": a["severity"], "rule": a["rule"], "subject": a["subject"],
                                "message": a["message"], "since": ui.ago(a["opened_at"]),
                                "value": a["value"], "threshold": a["threshold"]} for a in current]),
                 hide_index=True, width="stretch")
else:
    st.success("No open alerts.")

st.subheader("History (30 days)")
if history:
    st.dataframe(pd.DataFrame([{
        "opened": pd.to_datetime(a["opened_at"], unit="s", utc=True),
        "resolved": pd.to_datetime(a["resolved_at"], unit="s", utc=True) if a["resolved_at"] else None,
        "severity": a["severity"], "rule": a["rule"], "subject": a["subject"], "message": a["message"]}
        for a in history]), hide_index=True, width="stretch")
else:
    st.info("No alert in the last 30 days. Is the monitor running? (`hi-moe monitor`, or the "
            "Procfile's worker)")
