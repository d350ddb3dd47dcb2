"""Audit log: who changed what, and when."""

import pandas as pd
import streamlit as st

from console import ui

ui.page_header("Audit log", "Every change to the registry and every server action, with the operator.")

with ui.registry() as reg:
    everything = reg.audit_log(limit=5000)
operators = sorted({e.operator for e in everything})
actions = sorted({e.action for e in everything})
c1, c2, c3 = st.columns(3)
who = c1.multiselect("Operator", operators)
what = c2.multiselect("Action", actions)
target = c3.text_input("Target contains")
view = [e for e in everything if (not who or e.operator in who) and (not what or e.action in what)
        and (not target or target.lower() in (e.target or "").lower())]
if not view:
    st.info("Nothing recorded yet (or nothing matches the filters).")
else:
    st.dataframe(pd.DataFrame([{"time": e.ts, "operator": e.operator, "action": e.action,
                                "target": e.target, "details": e.details} for e in view]),
                 hide_index=True, width="stretch")
    st.caption(f"{len(view):,} of {len(everything):,} entries shown.")
