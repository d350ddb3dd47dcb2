"""Routing gaps: tasks that fell back to the base model, what they have in common, and the
keywords operators teach the router so that such tasks find their specialist next time."""

import json
import time

import pandas as pd
import plotly.express as px
import streamlit as st

from console import ui
from core.evidence import DOMAINS, UNSERVED, Task
from core.router import domain_of, gap_terms
from core.tasks_io import labelling_line

ui.page_header("Routing gaps", "Tasks no specialist took. Frequent terms point at the next "
               "specialist to train, or at a keyword the router lacks: teach it below.")

c1, c2, c3 = st.columns([1, 1, 2])
window = c1.selectbox("Window", list(ui.WINDOWS), index=2)
with ui.registry() as reg:
    gaps = reg.gaps(since=time.time() - ui.WINDOWS[window])
reasons = sorted({g["reason"] for g in gaps})
reason = c2.selectbox("Reason", ["all"] + reasons)
search = c3.text_input("Objective contains")
view = [g for g in gaps if (reason == "all" or g["reason"] == reason)
        and (not search or search.lower() in g["objective"].lower())]
terms = gap_terms(g["objective"] for g in view)

if not view:
    st.info("No routing gaps in this window. Every task found a specialist, or none was dispatched: "
            "gaps are logged by `hi-moe route --run`, the dispatcher and the Try a task page.")
else:
    frame = pd.DataFrame([{"id": g["id"], "time": pd.to_datetime(g["ts"], unit="s", utc=True),
                           "reason": g["reason"], "label": g["label"], "objective": g["objective"],
                           "extracted domains": ", ".join(g["extracted_domains"]),
                           "context files": ", ".join(g["context_refs"]), "task id": g["task_id"]}
                          for g in view])
    a, b = st.columns([1, 2])
    a.metric("Unrouted tasks", f"{len(view):,}")
    if terms:
        with b:
            st.plotly_chart(px.bar(pd.DataFrame(terms, columns=["term", "tasks"]), x="term", y="tasks",
                                   title="Most common terms among unrouted tasks"),
                            width="stretch")
    st.dataframe(frame, hide_index=True, width="stretch")
    e1, e2 = st.columns(2)
    e1.download_button("Export CSV", frame.to_csv(index=False), file_name="routing_gaps.csv")
    # The same lines as `hi-moe gaps list --for-labelling`.
    e2.download_button(
        "Export for labelling (JSON lines)", file_name="routing_gaps.jsonl",
        data="".join(json.dumps(labelling_line(g)) + "\n" for g in view),
        help='Lines labelled here carry "expected"; add it to others you can judge and point '
             "HI_MOE_ROUTER_EXAMPLES at the file, or measure the router on it with "
             "`hi-moe route --input`.")


def would_route(keyword: str, domain: str, weight: float) -> int:
    """How many of the gaps shown the router would send to ``domain`` with the keyword."""
    router = ui.router(extra=[(domain, keyword, weight)])
    return sum(domain_of(router.route(Task(objective=g["objective"], context_refs=g["context_refs"])),
                         router.table) == domain for g in view)


st.subheader("Router keywords")
st.caption("Words the operators taught the router, on top of its keyword file "
           "(`core/data/router.toml`). Matched on whole words, like the file's; audited.")
with ui.registry() as reg:
    taught = reg.router_keywords()
if done := st.session_state.pop("keywords_done", None):
    st.success(done)  # said after the rerun that shows the table with the change
if taught:
    st.dataframe(pd.DataFrame([k.model_dump() for k in taught]), hide_index=True, width="stretch")
else:
    st.caption("None yet.")

operator = ui.require_operator("teach the router keywords")
if operator:
    k1, k2, k3 = st.columns([2, 1, 1])
    choices = [t for t, _ in terms]
    picked = k1.selectbox("Term from the gaps", ["(type one)"] + choices)
    typed = k1.text_input("Keyword or phrase", value="" if picked == "(type one)" else picked,
                          help="'^word' matches the first word only; 'prefix*' any word starting so.")
    domain = k2.selectbox("Domain", list(DOMAINS) + ["null", UNSERVED],
                          help="null: evidence that a task is not technical (a poem, a recipe). "
                               "unserved: a language no specialist serves (Ruby, Go).")
    weight = k3.slider("Weight", -4.0, 6.0, 2.0, 0.5,
                       help="4 = unambiguous on its own, 2 = clear (enough alone), 0.5 = a hint; "
                            "negative takes evidence back.")
    note = st.text_input("Why (for the audit log)")
    if typed.strip() and weight and view and domain != "null":
        st.caption(f"With it, {would_route(typed, domain, weight)} of the {len(view)} gaps shown "
                   f"would go to the {domain} specialist.")
    if st.button("Add keyword", disabled=not typed.strip()):
        with ui.operator_errors(), ui.registry() as reg:
            added = reg.add_router_keyword(domain, typed, weight, note=note or None)
            st.session_state["keywords_done"] = (f"The router now reads {added.keyword!r} as "
                                                 f"{added.domain} evidence ({added.weight:g}).")
            st.rerun()
    if taught:
        r1, r2 = st.columns([3, 1])
        gone = r1.selectbox("Remove a keyword", [f"{k.domain}: {k.keyword}" for k in taught])
        if r2.button("Remove"):
            d, _, kw = gone.partition(": ")
            with ui.operator_errors(), ui.registry() as reg:
                reg.remove_router_keyword(d, kw)
                st.session_state["keywords_done"] = f"Removed {kw!r} from {d}."
                st.rerun()


st.subheader("Labels for tier 3")
st.caption("Which specialist should have taken a gap, or null when the base model was right. Tier 3 "
           "learns from labelled gaps the next time it routes (`hi-moe route`, or Try a task with "
           "tier 3 on); every label is audited.")
if done := st.session_state.pop("label_done", None):
    st.success(done)
if operator and view:
    l1, l2, l3 = st.columns([3, 1, 1])
    by_title = {f"#{g['id']}  {g['objective'][:90]}": g for g in view}
    chosen = l1.selectbox("Gap", list(by_title))
    label = l2.selectbox("Should have gone to", list(DOMAINS) + ["null"],
                         help="null: the base model was the right answer (the gap is not a gap).")
    if l3.button("Save label"):
        with ui.operator_errors(), ui.registry() as reg:
            gap = reg.label_gap(by_title[chosen]["id"], label)
            st.session_state["label_done"] = f"Gap #{gap['id']} labelled {gap['label']}."
            st.rerun()
