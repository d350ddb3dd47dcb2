"""Overview: is every server up, and what does it serve."""

import pandas as pd
import streamlit as st

from console import ui

ui.page_header("Overview", "Health of each vLLM server and the adapters it serves right now.")

with ui.fleet() as fleet:
    reports = fleet.health()
    served = {}
    for client, report in zip(fleet, reports):
        if report.up:
            with ui.operator_errors():
                served[client.url] = client.list_adapters()

cols = st.columns(max(len(reports), 1))
for col, report in zip(cols, reports):
    with col:
        if report.up:
            st.success(f"**{report.url}** is up — vLLM {report.version or '?'}, "
                       f"{report.latency_ms:.0f} ms")
            st.metric("Adapters loaded", len(report.adapters))
        else:
            st.error(f"**{report.url}** is down: {report.error}")

rows = [{"server": url, "served name": card.id, "base": card.parent, "path": card.root}
        for url, cards in served.items() for card in cards]
st.subheader("Adapters served")
if rows:
    st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
else:
    st.info("No adapter is loaded. Register versions and promote them on the Adapters page, "
            "or run `hi-moe server sync`.")
