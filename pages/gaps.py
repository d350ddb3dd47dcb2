"""Routing gaps: tasks that fell back to the base model, and what they have in common."""

import time

import pandas as pd
import plotly.express as px
import streamlit as st

from console import ui
from core.router import gap_terms

ui.page_header("Routing gaps", "Tasks no specialist took. Frequent terms point at the next "
               "specialist to train, or at a keyword the router lacks.")

c1, c2, c3 = st.columns([1, 1, 2])
window = c1.selectbox("Window", list(ui.WINDOWS), index=2)
with ui.registry() as reg:
    gaps = reg.gaps(since=time.time() - ui.WINDOWS[window])
reasons = sorted({g["reason"] for g in gaps})
reason = c2.selectbox("Reason", ["all"] + reasons)
search = c3.text_input("Objective contains")
view = [g for g in gaps if (reason == "all" or g["reason"] == reason)
        and (not search or search.lower() in g["objective"].lower())]
if not view:
    st.info("No routing gaps in this window. Every task found a specialist, or none was dispatched: "
            "gaps are logged by `hi-moe route --run`, the dispatcher and the Try a task page.")
    st.stop()

frame = pd.DataFrame([{"time": pd.to_datetime(g["ts"], unit="s", utc=True), "reason": g["reason"],
                       "objective": g["objective"], "extracted domains": ", ".join(g["extracted_domains"]),
                       "context files": ", ".join(g["context_refs"]), "task id": g["task_id"]}
                      for g in view])
a, b = st.columns([1, 2])
a.metric("Unrouted tasks", f"{len(view):,}")
terms = gap_terms(g["objective"] for g in view)
if terms:
    with b:
        st.plotly_chart(px.bar(pd.DataFrame(terms, columns=["term", "tasks"]), x="term", y="tasks",
                               title="Most common terms among unrouted tasks"),
                        width="stretch")
st.dataframe(frame, hide_index=True, width="stretch")
st.download_button("Export CSV", frame.to_csv(index=False), file_name="routing_gaps.csv")
