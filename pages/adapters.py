"""Adapters: every specialist's versions, and the lifecycle actions that act on the servers."""

from pathlib import Path

import pandas as pd
import streamlit as st

from console import ui

ui.page_header("Adapters", "Registered versions, where they are loaded, and promote / canary / "
               "roll back / retire. Server actions run first; the registry changes only if they succeed.")

with ui.registry() as reg, ui.fleet() as fleet:
    rows = reg.versions_table()
    loaded_on: dict[str, list[str]] = {}
    for client in fleet:
        with ui.operator_errors():
            for card in client.list_adapters():
                loaded_on.setdefault(card.id, []).append(client.url)

if not rows:
    st.info("No adapter is registered yet. Sign in and import a folder laid out as "
            "`ROOT/<specialist>/vX.Y.Z/` below, or run `hi-moe adapters import ROOT`.")

specialists = sorted({r["name"] for r in rows})
f1, f2, f3 = st.columns([2, 2, 1])
chosen = f1.multiselect("Specialists", specialists, placeholder="all specialists")
statuses = f2.multiselect("Status", ["active", "canary", "inactive", "retired"],
                          default=["active", "canary", "inactive"])
f3.metric("Versions", f"{len(rows):,}")
view = [r for r in rows if (not chosen or r["name"] in chosen) and r["status"] in statuses]
if view:
    frame = pd.DataFrame([{
        "lora_int_id": r["lora_int_id"], "served name": r["served_name"], "status": r["status"],
        "canary share": r["canary_share"], "rank": r["rank"], "domains": ", ".join(r["domains"]),
        "base model": r["base_model"], "created": r["created_at"], "previous": r["previous_version"],
        "requests": r["request_count"], "success rate": r["success_rate"],
        "EMA latency (ms)": r["avg_latency_ms"], "last used": r["last_used"],
        "loaded on": ", ".join(loaded_on.get(r["served_name"], [])) or "—",
    } for r in view])
    st.dataframe(frame, hide_index=True, width="stretch", column_config={
        "success rate": st.column_config.ProgressColumn(format="%.2f", min_value=0, max_value=1),
        "canary share": st.column_config.NumberColumn(format="%.2f"),
        "EMA latency (ms)": st.column_config.NumberColumn(format="%.0f"),
    })

st.divider()
st.subheader("Actions")
operator = ui.require_operator("promote, roll back, canary, retire, load or register adapters")
if operator:
    live_rows = [r for r in rows if r["retired_at"] is None]
    names = sorted({r["name"] for r in live_rows})
    tab_life, tab_server, tab_register = st.tabs(["Lifecycle", "Servers", "Register / import"])
    with tab_life:
        if not names:
            st.info("Register a version first.")
        else:
            c1, c2 = st.columns(2)
            name = c1.selectbox("Specialist", names)
            versions = [r["version"] for r in live_rows if r["name"] == name]
            version = c2.selectbox("Version", versions, index=len(versions) - 1)
            current = next((r for r in rows if r["name"] == name and r["active"]), None)
            st.caption(f"Live now: **{current['served_name'] if current else 'none'}**"
                       + (f", previous version {current['previous_version']}"
                          if current and current["previous_version"] else ""))
            share = st.slider("Canary share of this specialist's tasks", 0.01, 0.99, 0.1, 0.01)
            sure = ui.confirmed(f"life_{name}_{version}", f"I want to change {name} on every server")
            b = st.columns(5)
            action = None
            if b[0].button("Promote", disabled=not sure):
                action = ("Promote", lambda ops: ops.promote(name, version))
            if b[1].button("Canary", disabled=not sure):
                action = ("Canary", lambda ops: ops.canary(name, version, share))
            if b[2].button("Roll back", disabled=not sure):
                action = ("Roll back", lambda ops: ops.rollback(name))
            if b[3].button("End canary", disabled=not sure):
                action = ("End canary", lambda ops: ops.end_canary(name))
            if b[4].button("Retire", disabled=not sure):
                action = ("Retire", lambda ops: ops.retire(name, version))
            if action:
                with ui.operations() as ops:
                    done = ui.run_steps(f"{action[0]} {name}@{version}", lambda: action[1](ops))
                if done is not None:
                    st.success(f"{action[0]} done. The table above shows the new state after a refresh.")
                    st.button("Refresh")
    with tab_server:
        sure_servers = ui.confirmed("servers", "I want to act on the running servers")
        c1, c2 = st.columns(2)
        with c1:
            prune = st.checkbox("Also unload versions that are neither active nor canary")
            if st.button("Sync servers", disabled=not sure_servers):
                with ui.operations() as ops:
                    reports = ui.run_steps("Sync", lambda: ops.sync(prune=prune))
                if reports:
                    for r in reports:
                        (st.success if r.up and not r.failed else st.error)(
                            f"{r.server}: loaded {', '.join(r.loaded) or 'nothing'}"
                            + (f"; unloaded {', '.join(r.unloaded)}" if r.unloaded else "")
                            + (f"; failed {r.failed}" if r.failed else "")
                            + (f"; {r.error}" if r.error else ""))
        with c2:
            with ui.registry() as reg:
                top = sorted(reg.live_versions(), key=lambda v: -v.request_count)[:ui.settings().max_loras]
            st.write(f"Warm up the {len(top)} busiest live adapters (one 1-token request each).")
            if st.button("Warm up", disabled=not sure_servers):
                bar = st.progress(0.0, text="warming up")
                with ui.fleet() as fl:
                    results = []
                    for i, client in enumerate(fl.clients, start=1):
                        results += client.warmup([v.served_name for v in top])
                        bar.progress(i / len(fl.clients), text=f"{client.url} done")
                st.dataframe(pd.DataFrame([r.model_dump() for r in results]), hide_index=True)
        single = st.selectbox("Load or unload one version", [r["served_name"] for r in live_rows] or ["—"])
        l1, l2 = st.columns(2)
        if single != "—":
            name, _, version = single.partition("@")
            if l1.button("Load on every server", disabled=not sure_servers):
                with ui.operations() as ops:
                    ui.run_steps(f"Load {single}", lambda: ops.load(name, version))
            if l2.button("Unload from every server", disabled=not sure_servers):
                with ui.operations() as ops:
                    ui.run_steps(f"Unload {single}", lambda: ops.unload(name, version))
    with tab_register:
        roots = ", ".join(str(p) for p in ui.settings().roots)
        st.caption(f"Adapters must live under the adapter roots: {roots}")
        path = st.text_input("Adapter folder (ROOT/<specialist>/vX.Y.Z)")
        c1, c2 = st.columns(2)
        reg_name = c1.text_input("Name (optional)", placeholder="from the folder")
        reg_version = c2.text_input("Version (optional)", placeholder="from the folder")
        if st.button("Register"):
            if not path.strip():
                st.warning("Give the adapter folder first.")
            else:
                with ui.operations() as ops, ui.operator_errors():
                    version = ops.register(Path(path.strip()), name=reg_name or None,
                                           version=reg_version or None)
                    st.success(f"Registered {version.served_name} as lora_int_id "
                               f"{version.lora_int_id} (inactive). Canary or promote it above.")
        root = st.text_input("Import every version under a root folder")
        if st.button("Import"):
            if not root.strip():
                st.warning("Give the root folder first.")
            else:
                with ui.operations() as ops, ui.operator_errors():
                    report = ops.import_root(Path(root.strip()))
                    st.success(f"Registered {len(report.registered)}, already there "
                               f"{len(report.skipped)}, refused {len(report.errors)}.")
                    for label, message in report.errors.items():
                        st.error(f"{label}: {message}")
