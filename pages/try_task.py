"""Try a task: see how the router decides, run it on the server, and judge the answer. Batch
mode routes a whole file."""

import json
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from console import ui
from core.errors import HiMoeError
from core.evidence import Task
from core.router import Router, accuracy_by_domain, domain_of
from core.tasks_io import read_labelled_tasks

ui.page_header("Try a task", "Route a task as the dispatcher would, with every piece of evidence "
               "and every candidate's score; then run it through the chosen adapter or the base model.")


@st.cache_resource(show_spinner="Loading tier 3's models …", max_entries=2)
def embedder(models: Path, examples: Path | None, labelled_gaps: tuple[tuple[str, str], ...]):
    """Cached per set of examples: a new label on a routing gap retrains both models (about
    ten seconds: the examples' embeddings are cached on disk)."""
    from core.embeddings import DomainEmbedder, EmbeddingsUnavailable

    try:
        return DomainEmbedder.load(models, extra=examples, extra_pairs=labelled_gaps)
    except EmbeddingsUnavailable:
        return None


def tier3_ready() -> bool:
    """Tier 3 is on by default once its model is built (`make demo` builds it): a first use
    would otherwise wait ~25 s for the build."""
    from core.embeddings import MODEL_FILE

    return (ui.settings().home / "models" / MODEL_FILE).exists()


def router(use_embeddings: bool = False) -> Router:
    if not use_embeddings:
        return ui.router()
    cfg = ui.settings()
    with ui.registry() as reg:
        labelled = tuple(reg.labelled_gaps())
    return ui.router(embedder=embedder(cfg.home / "models", cfg.router_examples, labelled))


single, batch = st.tabs(["One task", "Batch"])
with single:
    objective = st.text_area("Task objective", height=120,
                             placeholder="e.g. The CUDA kernel in reduce.cu races on shared memory; fix it.")
    refs = st.text_input("Context files (comma-separated)", placeholder="src/reduce.cu, CMakeLists.txt")
    use_embeddings = st.toggle("Tier 3: sentence and word models", value=tier3_ready(),
                               help="Used only when keywords, code and files name no domain.")
    if st.button("Route", type="primary"):
        if not objective.strip():
            st.warning("Type a task objective first.")
        else:
            task = Task(id=f"console-{abs(hash(objective)) % 10**8}", objective=objective,
                        context_refs=[r.strip() for r in refs.split(",") if r.strip()])
            try:
                st.session_state["try_decision"] = router(use_embeddings).route(task)
                st.session_state["try_task"] = task
            except HiMoeError as exc:  # a bad HI_MOE_ROUTER_EXAMPLES file, named with its lines
                st.error(exc.message)
            st.session_state.pop("try_result", None)

    decision = st.session_state.get("try_decision")
    task = st.session_state.get("try_task")
    if decision is not None:
        if decision.specialist:
            st.success(f"Routed to **{decision.specialist}** as `{decision.served_name}`"
                       + (" (canary)" if decision.canary else "")
                       + f" — domains {', '.join(decision.domains)}, decided by tier {decision.tier}.")
        else:
            st.warning(f"Base model: **{decision.fallback_reason}**"
                       + (f" (domains {', '.join(decision.domains)})" if decision.domains else ""))
        ex = decision.extraction
        left, right = st.columns(2)
        with left:
            st.markdown("**Evidence**")
            if ex.evidence:
                st.dataframe(pd.DataFrame([{"tier": e.tier, "domain": e.domain, "kind": e.kind,
                                            "matched": e.match, "weight": e.weight}
                                           for e in ex.evidence]), hide_index=True,
                             width="stretch")
            else:
                st.caption("No keyword, code shape or file matched.")
            if ex.similarities:
                st.caption("Tier 3 probabilities: " + ", ".join(
                    f"{d} {s:.2f}" for d, s in sorted(ex.similarities.items(), key=lambda kv: -kv[1])))
                for model, sims in (ex.model_similarities or {}).items():
                    st.caption(f"… {model} model alone: " + ", ".join(
                        f"{d} {s:.2f}" for d, s in sorted(sims.items(), key=lambda kv: -kv[1])[:3]))
        with right:
            st.markdown("**Domain scores**")
            st.caption((", ".join(f"{d} {s}" for d, s in ex.scores.items()) or "none")
                       + (f"; non-technical evidence {ex.null_score}" if ex.null_score else "")
                       + (f"; unserved-language evidence {ex.unserved_score}"
                          if ex.unserved_score else ""))
            st.markdown("**Candidates** (score = success + volume + match)")
            if decision.candidates:
                st.dataframe(pd.DataFrame([{"specialist": c.specialist, "version": c.version,
                                            "canary": c.canary, "score": round(c.score, 4),
                                            **{k: round(v, 4) for k, v in c.parts.items()}}
                                           for c in decision.candidates]), hide_index=True,
                             width="stretch")
            else:
                st.caption("No live specialist for these domains.")

        operator = ui.require_operator("run tasks on the server and record their outcomes")
        if operator and st.button("Run on the server"):
            from core.dispatch import Dispatcher

            with ui.registry() as reg, ui.fleet() as fl:
                try:
                    result = Dispatcher(router(), fl, reg).send(
                        task, decision, max_tokens=64)
                    st.session_state["try_result"] = result
                except HiMoeError as exc:
                    st.error(exc.message)
        result = st.session_state.get("try_result")
        if result is not None:
            if result.ok:
                st.info(f"Answered by `{result.model}` on {result.server} in {result.latency_ms:.0f} ms"
                        + (f" — fell back: {result.fallback_reason}" if result.fallback_reason else ""))
                st.code(result.answer or "(empty answer)", language=None)
            else:
                st.error(f"The server failed: {result.error}")
            if result.outcome_id and operator:
                g, b = st.columns(2)
                verdict = None
                if g.button("👍 Good answer"):
                    verdict = True
                if b.button("👎 Bad answer"):
                    verdict = False
                if verdict is not None:
                    with ui.registry() as reg:
                        reg.mark_outcome(result.outcome_id, verdict)
                    st.success(f"Recorded as {'good' if verdict else 'bad'} for {result.model}.")

with batch:
    upload = st.file_uploader("Tasks as JSON lines ({id, objective, context_refs}) or CSV "
                              "(id, objective, context_refs separated by ';'); with an 'expected' "
                              "domain (or null) per task, the page also scores the router",
                              type=["jsonl", "json", "csv"])
    batch_tier3 = st.toggle("Tier 3 for tasks tiers 1-2 cannot place", value=tier3_ready(),
                            key="batch_tier3", help="About 10 ms for each such task.")
    if upload is not None:
        try:
            tasks, labels = read_labelled_tasks(upload.getvalue(), upload.name)
        except HiMoeError as exc:
            st.error(exc.message)
            tasks, labels = [], {}
        if tasks:
            r = router(batch_tier3)
            decisions = [r.route(t) for t in tasks]
            lines = [d.line() | {"objective": t.objective} for t, d in zip(tasks, decisions)]
            if labels:
                pairs = {t.id: (labels[t.id], domain_of(d, r.table))
                         for t, d in zip(tasks, decisions) if t.id in labels}
                right = sum(e == g for e, g in pairs.values())
                st.metric("Routed as labelled", f"{right / len(pairs):.1%}",
                          help=f"{right} of {len(pairs)} labelled tasks")
                st.dataframe(pd.DataFrame(
                    [{"expected": d, "right": ok, "tasks": n, "accuracy": f"{ok / n:.1%}"}
                     for d, (ok, n) in accuracy_by_domain(pairs.values()).items()]),
                    hide_index=True)
                for line in lines:
                    if line["id"] in pairs:
                        line["expected"] = pairs[line["id"]][0] or "(base model)"
                        line["correct"] = pairs[line["id"]][0] == pairs[line["id"]][1]
            frame = pd.DataFrame(lines)
            frame["routed to"] = frame["specialist"].fillna("(base model)")
            counts = frame["routed to"].value_counts().reset_index()
            counts.columns = ["routed to", "tasks"]
            st.plotly_chart(px.bar(counts, x="routed to", y="tasks", title=f"{len(tasks)} tasks routed"),
                            width="stretch")
            shown = ["id", "routed to", "served_name", "domains", "tier", "fallback_reason", "objective"]
            if labels:
                shown[2:2] = ["expected", "correct"]
            st.dataframe(frame[shown], hide_index=True, width="stretch")
            st.download_button("Download results (JSONL)",
                               "\n".join(json.dumps({k: v for k, v in line.items() if k != "objective"})
                                         for line in lines), file_name="routing.jsonl")
            st.download_button("Download results (CSV)", frame.drop(columns=["scores"]).to_csv(index=False),
                               file_name="routing.csv")
