"""Overview: every server's health, what it serves against what it should, open alerts, and
the last 24 hours of traffic."""

import time

import pandas as pd
import plotly.express as px
import streamlit as st

from console import ui
from core.monitor import open_alerts

ui.page_header("Overview", "Servers, adapters and traffic at a glance. Health refreshes every 10 s.")


@st.fragment(run_every="10s")
def servers() -> None:
    with ui.registry() as reg, ui.fleet() as fleet:
        live = [v.served_name for v in reg.live_versions()]
        registered = {v["served_name"] for v in reg.versions_table()}
        reports = fleet.health(live)
    if not reports:
        st.info("No vLLM server configured. Set HI_MOE_VLLM_URLS.")
        return
    for col, report in zip(st.columns(len(reports)), reports):
        with col:
            if not report.up:
                st.error(f"**{report.url}** is down: {report.error}")
                continue
            if report.missing:
                st.warning(f"**{report.url}** is up but misses {len(report.missing)} live "
                           f"adapter(s): {', '.join(report.missing)}. Sync it on the Adapters page.")
            else:
                st.success(f"**{report.url}** is up — vLLM {report.version or '?'}, "
                           f"{report.latency_ms:.0f} ms")
            unknown = sorted(set(report.adapters) - registered)
            if unknown:
                st.warning(f"Drift: {len(unknown)} adapter(s) loaded that the registry does not "
                           f"know: {', '.join(unknown)}")
            a, b = st.columns(2)
            a.metric("Adapters loaded", len(report.adapters))
            b.metric("Live in registry", len(report.expected))
    st.caption(f"Checked {time.strftime('%H:%M:%S')}")


servers()

with ui.registry() as reg:
    alerts = open_alerts(reg)
    summary = reg.summary(since=time.time() - 86400)

st.subheader("Open alerts")
if alerts:
    for alert in alerts:
        (st.error if alert["severity"] == "critical" else st.warning)(
            f"**{alert['rule']}** — {alert['message']} (since {ui.ago(alert['opened_at'])})")
else:
    st.success("No open alerts.")

st.subheader("Last 24 hours")
total = sum(row["requests"] for row in summary)
successes = sum(row["successes"] for row in summary)
c1, c2, c3 = st.columns(3)
c1.metric("Requests", f"{total:,}")
c2.metric("Success rate", ui.pct(successes / total if total else None))
c3.metric("Base-model fallbacks", f"{sum(row['fallbacks'] for row in summary):,}")
if summary:
    frame = pd.DataFrame(summary)
    fig = px.bar(frame, x="served_name", y="traffic_share", title="Traffic share per version",
                 labels={"served_name": "version", "traffic_share": "share of requests"})
    fig.update_yaxes(tickformat=".0%")
    st.plotly_chart(fig, width="stretch")
else:
    st.info("No requests recorded in the last 24 hours. Try a task on the Try a task page, "
            "or dispatch with `hi-moe route --run`.")
