"""Performance: success rate and latency over time per version, traffic share, adapter load
latency, and canary against active with sample sizes and intervals."""

import time

import pandas as pd
import plotly.express as px
import streamlit as st

from console import ui
from core.monitor import canary_comparison, metrics

ui.page_header("Performance", "From this project's own records of every dispatched request "
               "(vLLM keeps no per-adapter figures). Latency percentiles are read from 20%-wide bins.")

c1, c2, c3 = st.columns([1, 2, 1])
window = c1.selectbox("Window", list(ui.WINDOWS), index=2)
since = time.time() - ui.WINDOWS[window]
with ui.registry() as reg:
    names = reg.specialists()
chosen = c2.multiselect("Specialists", names, placeholder="all specialists")
bucket = c3.selectbox("Bucket", ["hour", "day"], index=0 if ui.WINDOWS[window] <= 2 * 86400 else 1)


@st.cache_data(ttl=30, show_spinner=False)
def load(db: str, since: float, bucket: str, specialists: tuple[str, ...]) -> dict:
    """Cached 30 s per database, window and filter: every figure is an aggregate over roll-ups."""
    with ui.registry() as reg:
        seconds = 3600 if bucket == "hour" else 86400
        series = []
        for spec in specialists or (None,):
            series += reg.timeseries(since=since, bucket_seconds=seconds, specialist=spec)
        return {"series": series, "metrics": metrics(reg, since=since),
                "canaries": canary_comparison(reg, since=since)}


TOP = 8  # lines per chart: more is unreadable, and slow to draw

# `since` rounded to the hour keeps the cache key stable between reruns.
data = load(str(ui.settings().db_path), since // 3600 * 3600, bucket, tuple(chosen))
series = pd.DataFrame(data["series"])
if series.empty:
    st.info("No requests recorded in this window. Dispatch tasks (Try a task, or "
            "`hi-moe route --run`) and come back.")
    st.stop()
busiest = series.groupby("series")["requests"].sum().nlargest(TOP).index
if series["series"].nunique() > TOP:
    st.caption(f"Charts show the {TOP} busiest of {series['series'].nunique()} versions; "
               "pick specialists above to see others.")
series = series[series["series"].isin(busiest)]
series["time"] = pd.to_datetime(series["t"], unit="s", utc=True)

left, right = st.columns(2)
with left:
    fig = px.line(series, x="time", y="success_rate", color="series", markers=True,
                  title="Success rate per version", labels={"success_rate": "success rate"})
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    st.plotly_chart(fig, width="stretch")
with right:
    lat = series.melt(id_vars=["time", "series"], value_vars=["p50_latency_ms", "p95_latency_ms"],
                      var_name="percentile", value_name="ms")
    lat["line"] = lat["series"] + " " + lat["percentile"].str.slice(0, 3)
    fig = px.line(lat, x="time", y="ms", color="line", markers=True,
                  title="Latency p50 / p95 per version (ms)")
    st.plotly_chart(fig, width="stretch")

versions = pd.DataFrame(data["metrics"]["versions"])
left, right = st.columns(2)
with left:
    share = versions[["served_name", "requests"]].copy()
    if len(share) > TOP:
        rest = share.iloc[TOP:]["requests"].sum()
        share = pd.concat([share.iloc[:TOP], pd.DataFrame([{"served_name": "other versions",
                                                             "requests": rest}])])
    fig = px.pie(share, names="served_name", values="requests", title="Utilization: share of requests")
    st.plotly_chart(fig, width="stretch")
with right:
    load_ms = data["metrics"]["adapter_load_latency_ms"]
    cold = data["metrics"]["cold_first_request_ms"]
    st.markdown("**Adapter loading**")
    a, b, c = st.columns(3)
    a.metric("Loads", load_ms["n"])
    b.metric("Load p95", ui.ms(load_ms["p95"]))
    c.metric("Cache hits", ui.pct(data["metrics"]["adapter_cache_hits"]))
    st.caption(f"First request after a load: p50 {ui.ms(cold['p50'])}, max {ui.ms(cold['max'])}.")
    table = versions[["served_name", "requests", "success_rate", "p50_latency_ms", "p95_latency_ms",
                      "traffic_share"]].rename(columns={"served_name": "version"})
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "success_rate": st.column_config.NumberColumn("success rate", format="%.3f"),
        "traffic_share": st.column_config.NumberColumn("share", format="%.3f"),
        "p50_latency_ms": st.column_config.NumberColumn("p50 (ms)", format="%.0f"),
        "p95_latency_ms": st.column_config.NumberColumn("p95 (ms)", format="%.0f")})

st.subheader("Canary against active")
if not data["canaries"]:
    st.info("No specialist has a canary. Start one on the Adapters page.")
else:
    st.caption("Success rates with 95% Wilson intervals and sample sizes: decide on intervals, "
               "not on two numbers.")

    def side(row: dict, name: str) -> str:
        interval = row[f"{name}_interval"]
        return (f"{ui.pct(row[f'{name}_success_rate'])} (n = {row[f'{name}_requests']:,}; "
                + (f"{interval[0]:.1%}–{interval[1]:.1%}" if interval else "no data") + ")")

    st.dataframe(pd.DataFrame([{
        "specialist": row["specialist"], "canary share": f"{row['share']:.0%}",
        "active": row["active_served_name"], "active success": side(row, "active"),
        "canary": row["canary_served_name"], "canary success": side(row, "canary"),
        "p50 active / canary": f"{ui.ms(row['active_p50_latency_ms'])} / {ui.ms(row['canary_p50_latency_ms'])}",
        "reading": row["verdict"]} for row in data["canaries"]]), hide_index=True, width="stretch")
