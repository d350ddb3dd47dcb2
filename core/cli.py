"""``hi-moe``: the operator CLI.

Every command prints a human table by default and one JSON document with ``--json``; a failure is
one line on stderr (``Error: ...``) and exit status 1. Global options override the ``HI_MOE_*``
environment variables (see :mod:`core.config`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from core.config import Settings, load_settings
from core.errors import HiMoeError
from core.vllm import Fleet


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def emit(value: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    if as_json or human is None:
        click.echo(json.dumps(_jsonable(value), indent=2, default=str))
    else:
        click.echo(human(value))


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if row.get(col) is None else str(row.get(col))) for col in columns] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in cells)) for i, col in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


class HiMoeGroup(click.Group):
    """Turns project errors into one line and exit 1 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HiMoeError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            ctx.exit(1)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def settings_of(ctx: click.Context) -> Settings:
    return ctx.find_root().obj


@click.group(cls=HiMoeGroup)
@click.option("--home", type=click.Path(path_type=Path), help="Data folder [HI_MOE_HOME, default var/].")
@click.option("--db", type=click.Path(path_type=Path), help="Registry SQLite file [HI_MOE_DB].")
@click.option("--vllm-url", "vllm_urls", multiple=True,
              help="A vLLM server; repeat for a fleet [HI_MOE_VLLM_URLS, comma-separated].")
@click.option("--api-key", help="API key of servers started with --api-key [HI_MOE_VLLM_API_KEY].")
@click.option("--adapter-root", "adapter_roots", multiple=True, type=click.Path(path_type=Path),
              help="Folder adapters must live under; repeat for several [HI_MOE_ADAPTER_ROOTS].")
@click.option("--operator", help="Name recorded in the audit log [HI_MOE_OPERATOR, default $USER].")
@click.pass_context
def main(ctx: click.Context, home, db, vllm_urls, api_key, adapter_roots, operator) -> None:
    """hi_moe LoRA operations: registry, routing, vLLM servers, memory planning."""
    try:
        ctx.obj = load_settings(home=home, db=db, vllm_urls=list(vllm_urls) or None,
                                vllm_api_key=api_key, adapter_roots=list(adapter_roots) or None,
                                operator=operator)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


# ---------------------------------------------------------------------------------------------
# hi-moe server ...


@main.group(cls=HiMoeGroup)
def server() -> None:
    """Talk to the configured vLLM servers."""


def _fleet(ctx: click.Context, url: str | None) -> Fleet:
    settings = settings_of(ctx)
    urls = [url] if url else settings.vllm_urls
    return Fleet(urls, api_key=settings.api_key, timeout=settings.timeout)


url_option = click.option("--url", help="Only this server (default: every configured server).")


@server.command()
@url_option
@click.option("--expect", multiple=True, help="An adapter that must be served; repeatable.")
@json_option
@click.pass_context
def health(ctx, url, expect, as_json) -> None:
    """Up or down, and which expected adapters are missing. Exit 1 when any server is unhealthy."""
    with _fleet(ctx, url) as fleet:
        reports = fleet.health(expect)
    emit(reports, as_json, lambda rs: table([
        {"server": r.url, "up": r.up, "ms": f"{r.latency_ms:.1f}" if r.latency_ms else "",
         "version": r.version, "adapters": len(r.adapters), "missing": ",".join(r.missing),
         "error": r.error} for r in rs], ["server", "up", "ms", "version", "adapters", "missing", "error"]))
    if not all(report.healthy for report in reports):
        ctx.exit(1)


@server.command()
@url_option
@json_option
@click.pass_context
def models(ctx, url, as_json) -> None:
    """Base models and adapters each server lists in /v1/models."""
    out = []
    with _fleet(ctx, url) as fleet:
        for client in fleet:
            for card in client.list_models():
                out.append({"server": client.url, **card.model_dump()})
    emit(out, as_json, lambda rows: table(rows, ["server", "id", "parent", "root"]))


@server.command()
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@url_option
@json_option
@click.pass_context
def load(ctx, name, path, url, as_json) -> None:
    """Load the adapter at PATH under NAME on each server (raw; the registry does this for you)."""
    with _fleet(ctx, url) as fleet:
        results = [client.load_adapter(name, str(path.resolve())) for client in fleet]
    emit(results, as_json, lambda rs: table([r.model_dump() for r in rs], ["url", "name", "latency_ms"]))


@server.command()
@click.argument("name")
@url_option
@json_option
@click.pass_context
def unload(ctx, name, url, as_json) -> None:
    """Unload adapter NAME from each server."""
    with _fleet(ctx, url) as fleet:
        results = [client.unload_adapter(name) for client in fleet]
    emit(results, as_json, lambda rs: table([r.model_dump() for r in rs], ["url", "name", "latency_ms"]))


@server.command()
@click.argument("names", nargs=-1, required=True)
@url_option
@json_option
@click.pass_context
def warmup(ctx, names, url, as_json) -> None:
    """Send a 1-token request through each adapter NAME, in parallel. Exit 1 if any failed."""
    with _fleet(ctx, url) as fleet:
        results = [r for client in fleet for r in client.warmup(names)]
    emit(results, as_json, lambda rs: table([r.model_dump() for r in rs],
                                            ["url", "name", "ok", "latency_ms", "error"]))
    if not all(result.ok for result in results):
        ctx.exit(1)


@server.command()
@url_option
@json_option
@click.pass_context
def metrics(ctx, url, as_json) -> None:
    """The parsed /metrics of each server (LoRA slots, queues, KV cache, latency histograms)."""
    with _fleet(ctx, url) as fleet:
        snaps = [client.scrape_metrics() for client in fleet]

    def human(items):
        rows = [{"server": s.url, "max_lora": s.max_lora, "running": ",".join(s.running_adapters),
                 "req_running": s.requests_running, "req_waiting": s.requests_waiting,
                 "kv_usage": s.kv_cache_usage,
                 "e2e_count": (s.histograms.get("e2e_request_latency_seconds") or None)
                 and s.histograms["e2e_request_latency_seconds"].count} for s in items]
        return table(rows, list(rows[0]) if rows else [])

    emit(snaps, as_json, human)


# ---------------------------------------------------------------------------------------------
# hi-moe adapters ...


def _operations(ctx: click.Context):
    from core.lifecycle import Operations

    return Operations.from_settings(settings_of(ctx))


def _version_row(v) -> dict[str, Any]:
    return {"id": v.lora_int_id, "served_name": v.served_name, "status": v.status,
            "canary": f"{v.canary_share:.0%}" if v.canary_share else "", "rank": v.rank,
            "prev": v.previous_version, "requests": v.request_count,
            "success": f"{v.success_rate:.3f}" if v.success_rate is not None else "",
            "ema_ms": f"{v.avg_latency_ms:.1f}" if v.avg_latency_ms is not None else "",
            "domains": ",".join(v.domains)}


VERSION_COLUMNS = ["id", "served_name", "status", "canary", "rank", "prev", "requests", "success",
                   "ema_ms", "domains"]


def _emit_report(report, as_json: bool) -> None:
    def human(r) -> str:
        lines = [f"{r.action} {r.target}: done" + (" (registry only)" if r.registry_only else "")]
        lines += [f"  - {step}" for step in r.steps]
        return "\n".join(lines)

    emit(report, as_json, human)


@main.group(cls=HiMoeGroup)
def adapters() -> None:
    """The adapter registry: versions and their lifecycle."""


@adapters.command("list")
@click.option("--name", help="Only this specialist.")
@click.option("--live", is_flag=True, help="Only active and canary versions.")
@click.option("--all", "show_retired", is_flag=True, help="Include retired versions.")
@json_option
@click.pass_context
def adapters_list(ctx, name, live, show_retired, as_json) -> None:
    """Registered versions with status, ids and stats."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        versions = registry.live_versions() if live else registry.versions(
            name, include_retired=show_retired)
    if name:
        versions = [v for v in versions if v.name == name]
    emit(versions, as_json, lambda vs: table([_version_row(v) for v in vs], VERSION_COLUMNS))


@adapters.command("show")
@click.argument("name")
@click.argument("version", required=False)
@json_option
@click.pass_context
def adapters_show(ctx, name, version, as_json) -> None:
    """One version (default: the active one of NAME), every field."""
    from core.registry import Registry, RegistryError

    with Registry.from_settings(settings_of(ctx)) as registry:
        found = registry.get(name, version) if version else registry.get_active(name)
    if found is None:
        raise RegistryError(f"{name} has no active version; name a version")
    emit(found, as_json, lambda v: "\n".join(f"{k:18} {val}" for k, val in v.model_dump().items()))


@adapters.command("register")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="Specialist name (default: from ROOT/<specialist>/vX.Y.Z).")
@click.option("--version", "version", help="Semantic version (default: from the folder vX.Y.Z).")
@click.option("--domain", "domains", multiple=True, help="A domain it handles; repeatable.")
@click.option("--description")
@json_option
@click.pass_context
def adapters_register(ctx, path, name, version, domains, description, as_json) -> None:
    """Validate the adapter at PATH and register it as a new, inactive version."""
    with _operations(ctx) as ops:
        registered = ops.register(path, name=name, version=version, domains=list(domains) or None,
                                  description=description)
    emit(registered, as_json, lambda v: f"registered {v.served_name} as lora_int_id "
                                        f"{v.lora_int_id} (inactive)")


@adapters.command("import")
@click.argument("root", type=click.Path(path_type=Path))
@json_option
@click.pass_context
def adapters_import(ctx, root, as_json) -> None:
    """Register every ROOT/<specialist>/vX.Y.Z/ not registered yet. Exit 1 if any failed."""
    with _operations(ctx) as ops:
        report = ops.import_root(root)

    def human(r) -> str:
        lines = [f"registered {v.served_name} (id {v.lora_int_id})" for v in r.registered]
        lines += [f"skipped {label} (already registered)" for label in r.skipped]
        lines += [f"FAILED {label}: {msg}" for label, msg in r.errors.items()]
        return "\n".join(lines) or "nothing to import"

    emit(report, as_json, human)
    if report.errors:
        ctx.exit(1)


@adapters.command("promote")
@click.argument("name")
@click.argument("version")
@json_option
@click.pass_context
def adapters_promote(ctx, name, version, as_json) -> None:
    """Load VERSION on every server, then make it NAME's live version."""
    with _operations(ctx) as ops:
        _emit_report(ops.promote(name, version), as_json)


@adapters.command("rollback")
@click.argument("name")
@json_option
@click.pass_context
def adapters_rollback(ctx, name, as_json) -> None:
    """Re-activate NAME's previous version (loaded on every server first)."""
    with _operations(ctx) as ops:
        _emit_report(ops.rollback(name), as_json)


@adapters.command("canary")
@click.argument("name")
@click.argument("version", required=False)
@click.option("--share", type=float, help="Share of NAME's tasks, e.g. 0.1.")
@click.option("--end", is_flag=True, help="End NAME's canary instead.")
@json_option
@click.pass_context
def adapters_canary(ctx, name, version, share, end, as_json) -> None:
    """Send a share of NAME's tasks to VERSION (A/B), or --end the canary."""
    if end:
        with _operations(ctx) as ops:
            _emit_report(ops.end_canary(name), as_json)
        return
    if not version or share is None:
        raise click.UsageError("give VERSION and --share, or --end")
    with _operations(ctx) as ops:
        _emit_report(ops.canary(name, version, share), as_json)


@adapters.command("retire")
@click.argument("name")
@click.argument("version")
@click.option("--force", is_flag=True, help="Even the active version.")
@click.option("--delete", is_flag=True, help="Delete the row instead of marking it retired.")
@click.option("--keep-loaded", is_flag=True, help="Do not unload it from the servers.")
@json_option
@click.pass_context
def adapters_retire(ctx, name, version, force, delete, keep_loaded, as_json) -> None:
    """Take VERSION out of service (its lora_int_id is never reused)."""
    with _operations(ctx) as ops:
        _emit_report(ops.retire(name, version, force=force, delete=delete,
                                unload=not keep_loaded), as_json)


@adapters.command("audit")
@click.option("--operator")
@click.option("--action")
@click.option("--target")
@click.option("--limit", default=50, show_default=True)
@json_option
@click.pass_context
def adapters_audit(ctx, operator, action, target, limit, as_json) -> None:
    """Who changed what, newest first."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        entries = registry.audit_log(operator=operator, action=action, target=target, limit=limit)
    emit(entries, as_json, lambda es: table([{**e.model_dump(), "details": json.dumps(e.details)[:80]}
                                             for e in es], ["ts", "operator", "action", "target", "details"]))


@server.command()
@json_option
@click.pass_context
def reconcile(ctx, as_json) -> None:
    """Drift between the registry and each server. Exit 1 when any server is out of step."""
    with _operations(ctx) as ops:
        drifts = ops.reconcile()
    emit(drifts, as_json, lambda ds: table([{
        "server": d.server, "up": d.up, "expected": len(d.expected), "loaded": len(d.loaded),
        "missing": ",".join(d.missing), "stale": ",".join(d.stale), "unknown": ",".join(d.unknown),
        "error": d.error} for d in ds], ["server", "up", "expected", "loaded", "missing", "stale",
                                        "unknown", "error"]))
    if not all(d.in_step for d in drifts):
        ctx.exit(1)


@server.command()
@click.option("--prune", is_flag=True, help="Also unload versions that are neither active nor canary.")
@json_option
@click.pass_context
def sync(ctx, prune, as_json) -> None:
    """Load on each server what the registry says it must serve. Exit 1 on any failure."""
    with _operations(ctx) as ops:
        reports = ops.sync(prune=prune)
    emit(reports, as_json, lambda rs: table([{
        "server": r.server, "up": r.up, "loaded": ",".join(r.loaded),
        "unloaded": ",".join(r.unloaded), "failed": "; ".join(f"{k}: {v}" for k, v in r.failed.items()),
        "error": r.error} for r in rs], ["server", "up", "loaded", "unloaded", "failed", "error"]))
    if not all(r.up and not r.failed for r in reports):
        ctx.exit(1)


# ---------------------------------------------------------------------------------------------
# hi-moe route


_UNLABELLED = object()  # a task line without an "expected" field


def load_embedder(enabled: bool, settings: Settings, registry: Any = None):
    """Tier 3 if asked for and installed (learning from the registry's labelled gaps too); a
    warning (not a failure) when it is not installed."""
    if not enabled:
        return None
    from core.embeddings import DomainEmbedder, EmbeddingsUnavailable
    from core.tasks_io import TaskFileError

    try:
        return DomainEmbedder.load(settings.home / "models", extra=settings.router_examples,
                                   extra_pairs=registry.labelled_gaps() if registry else ())
    except EmbeddingsUnavailable as exc:
        click.echo(f"warning: {exc.message}; routing with tiers 1-2 only", err=True)
        return None
    except TaskFileError as exc:
        raise click.UsageError(f"HI_MOE_ROUTER_EXAMPLES: {exc.message}") from None


@main.command()
@click.option("--input", "input_file", type=click.File("r"), default="-",
              help="JSON lines {id, objective, context_refs} (default: stdin).")
@click.option("--fleet", type=click.Choice(["seed"]),
              help="Route against the spec's eight seed specialists instead of the registry.")
@click.option("--no-embeddings", is_flag=True, help="Turn tier 3 off.")
@click.option("--threshold", type=float, default=0.8, show_default=True,
              help="Tier 3 probability a domain needs when tiers 1-2 find nothing.")
@click.option("--technical-threshold", type=float, default=0.5, show_default=True,
              help="... when the text looks technical (an identifier, a failure word); "
                   "at most --threshold.")
@click.option("--hinted-threshold", type=float, default=0.5, show_default=True,
              help="... when tiers 1-2 found words of that domain, too few to decide; "
                   "at most --threshold.")
@click.option("--long-threshold", type=float, default=0.6, show_default=True,
              help="... when the text has 8 words or more; at most --threshold.")
@click.option("--overrule-threshold", type=float, default=0.98, show_default=True,
              help="Tier 3 probability another domain needs to overrule tiers 1-2 when their "
                   "lead rests on words alone (no file, code, command or trade's own name); "
                   "above 1: never.")
@click.option("--run", is_flag=True, help="Also send each task to the server and record outcomes.")
@click.option("--explain", is_flag=True, help="Add the evidence and every candidate's score parts.")
@click.option("--max-tokens", default=64, show_default=True, help="With --run.")
@click.pass_context
def route(ctx, input_file, fleet, no_embeddings, threshold, technical_threshold,
          hinted_threshold, long_threshold, overrule_threshold, run, explain,
          max_tokens) -> None:
    """Route tasks; print one JSON line per task. Lines with an "expected" domain (or null) also
    get "correct", and the accuracy per domain goes to stderr. Exit 1 if any input line was bad."""
    from pydantic import ValidationError

    from core.registry import Registry
    from core.evidence import Lexicon, Task
    from core.router import Router, RoutingTable, accuracy_by_domain, domain_of, expected_domain

    settings = settings_of(ctx)
    if run and fleet:
        raise click.UsageError("--run dispatches through the registry's versions; drop --fleet")
    registry = None if fleet else Registry.from_settings(settings)
    routing_table = RoutingTable.seed() if fleet else RoutingTable.from_registry(registry)
    try:
        lexicon = Lexicon.load(settings.router_lexicon) if fleet else \
            Lexicon.for_registry(registry, settings.router_lexicon)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    router = Router(routing_table, lexicon=lexicon,
                    embedder=load_embedder(not no_embeddings, settings, registry),
                    embedding_threshold=threshold, technical_text_threshold=technical_threshold,
                    hinted_text_threshold=hinted_threshold, long_text_threshold=long_threshold,
                    overrule_threshold=overrule_threshold)
    dispatcher = None
    if run:
        from core.dispatch import Dispatcher

        dispatcher = Dispatcher(router, Fleet.from_settings(settings), registry)
    bad = 0
    labelled: list[tuple[str | None, str | None]] = []
    for number, line in enumerate(input_file, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            task = Task.model_validate(raw)
            expected = expected_domain(raw["expected"]) if "expected" in raw else _UNLABELLED
        except json.JSONDecodeError as exc:
            bad += 1
            click.echo(f"Error: input line {number}: not JSON ({exc.msg})", err=True)
            continue
        except ValidationError as exc:
            bad += 1
            problem = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}"
                                for e in exc.errors())
            click.echo(f"Error: input line {number}: {problem}", err=True)
            continue
        except ValueError as exc:
            bad += 1
            click.echo(f"Error: input line {number}: {exc}", err=True)
            continue
        if dispatcher:
            result = dispatcher.dispatch(task, max_tokens=max_tokens)
            decision = result.decision
            out = decision.line() | {"model": result.model, "ok": result.ok,
                                     "latency_ms": round(result.latency_ms, 1),
                                     "answer": result.answer, "error": result.error,
                                     "fallback_reason": result.fallback_reason}
        else:
            decision = router.route(task)
            out = decision.line()
        if explain:
            explained = decision.explain()
            out["evidence"] = explained["extraction"]["evidence"]
            out["candidates"] = explained["candidates"]
            out["domain_scores"] = decision.extraction.scores
            out["similarities"] = explained["extraction"]["similarities"]  # tier 3, when it ran
            out["model_similarities"] = explained["extraction"]["model_similarities"]
        if expected is not _UNLABELLED:
            got = domain_of(decision, router.table)
            out |= {"expected": expected, "correct": got == expected}
            labelled.append((expected, got))
        click.echo(json.dumps(out))
    if registry is not None:
        registry.close()
    if labelled:
        # A labelled file is an experiment: its score goes to stderr, the lines stay JSON.
        click.echo(table([{"expected": domain, "right": right, "tasks": total,
                           "accuracy": f"{right / total:.1%}"}
                          for domain, (right, total) in accuracy_by_domain(labelled).items()],
                         ["expected", "right", "tasks", "accuracy"]), err=True)
        right = sum(e == g for e, g in labelled)
        click.echo(f"overall {right}/{len(labelled)} = {right / len(labelled):.1%}", err=True)
    if bad:
        ctx.exit(1)


# ---------------------------------------------------------------------------------------------
# hi-moe memory


def parse_size(text: str) -> int:
    units = {"gib": 2**30, "gb": 10**9, "mib": 2**20, "mb": 10**6, "tib": 2**40, "tb": 10**12}
    lowered = text.strip().lower()
    for unit, factor in units.items():
        if lowered.endswith(unit):
            return int(float(lowered[: -len(unit)]) * factor)
    return int(lowered)


@main.command()
@click.option("--model", default="qwq-32b", show_default=True,
              help="Preset (qwq-32b, qwen2.5-7b-instruct, ...) or a config.json / model folder.")
@click.option("--quant", default="none", show_default=True,
              type=click.Choice(["none", "awq", "gptq-4bit", "gptq-8bit", "bnb-4bit", "bnb-8bit", "fp8"]))
@click.option("--group-size", default=128, show_default=True)
@click.option("--gpu", default="a100-40gb", show_default=True, help="Preset, or a size like 40GiB.")
@click.option("--tp", default=1, show_default=True, help="Tensor-parallel size.")
@click.option("--max-loras", default=16, show_default=True)
@click.option("--max-cpu-loras", type=int)
@click.option("--max-lora-rank", default=64, show_default=True)
@click.option("--max-model-len", default=4096, show_default=True)
@click.option("--kv-cache-dtype", "kv_dtype", default="auto", type=click.Choice(["auto", "fp8"]),
              show_default=True)
@click.option("--gpu-memory-utilization", default=0.9, show_default=True)
@click.option("--rank", default=16, show_default=True, help="Rank for adapter_bytes.")
@click.option("--target-modules", default="q_proj,k_proj,v_proj,o_proj", show_default=True)
@click.option("--from-registry", is_flag=True,
              help="Take max-lora-rank and target modules from the registry's live adapters.")
@json_option
@click.pass_context
def memory(ctx, model, quant, group_size, gpu, tp, max_loras, max_cpu_loras, max_lora_rank,
           max_model_len, kv_dtype, gpu_memory_utilization, rank, target_modules, from_registry,
           as_json) -> None:
    """Will it fit? Exact per-GPU bytes of weights, LoRA slots and KV cache, and what to change."""
    from core.architecture import load_shape
    from core.memory import GPUS, MemoryPlan, plan_from_registry, plan_memory

    shape = load_shape(model)
    registry_view = None
    targets = [m.strip() for m in target_modules.split(",") if m.strip()]
    if from_registry:
        from core.registry import Registry

        with Registry.from_settings(settings_of(ctx)) as registry:
            registry_view = plan_from_registry(registry, shape)
        max_lora_rank, rank = registry_view["max_lora_rank"], registry_view["max_rank"]
        targets = registry_view["target_modules"]
    plan = MemoryPlan(shape=shape, quant=quant, group_size=group_size,
                      gpu=gpu if gpu in GPUS else "custom",
                      gpu_bytes=None if gpu in GPUS else parse_size(gpu), tp=tp,
                      max_loras=max_loras, max_cpu_loras=max_cpu_loras, max_lora_rank=max_lora_rank,
                      max_model_len=max_model_len, kv_dtype=kv_dtype,
                      gpu_memory_utilization=gpu_memory_utilization, rank=rank,
                      target_modules=targets)
    report = plan_memory(plan)
    out = report.model_dump()
    if registry_view:
        out["registry"] = registry_view

    def human(r: dict) -> str:
        g = lambda b: f"{b / 2**30:8.2f} GiB"  # noqa: E731
        lines = [f"{shape.name} ({quant}) on {gpu} x{tp}, {max_loras} LoRA slots at rank "
                 f"{max_lora_rank}, {max_model_len} tokens:"]
        for label, key in [("weights", "weights_bytes"), ("LoRA slots", "lora_reserved_bytes"),
                           ("activations+overhead", "activation_bytes"), ("KV cache", "kv_cache_bytes")]:
            lines.append(f"  {label:22} {g(r[key])}   (spec's estimate: "
                         f"{g(r['spec_estimate'].get(key.replace('lora_reserved', 'lora'), 0))})"
                         if key != "activation_bytes" else f"  {label:22} {g(r[key])}")
        lines.append(f"  KV tokens {r['kv_tokens']:,} = {r['max_concurrent_seqs']} sequences of "
                     f"{max_model_len}")
        lines.append("  FITS" if r["fits"] else f"  DOES NOT FIT: short by {g(r['shortfall_bytes'])}")
        for s in r["suggestions"]:
            lines.append(f"  - {s['change']}: {'fits' if s['fits'] else 'still short'}, "
                         f"{s['max_concurrent_seqs']} sequences")
        return "\n".join(lines)

    emit(out, as_json, human)


# ---------------------------------------------------------------------------------------------
# hi-moe monitor | alerts | metrics | report


def parse_since(text: str) -> float:
    """'7d', '24h', '30m' or a unix time -> a unix time."""
    import time as _time

    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip().lower()
    try:
        if text[-1:] in units:
            return _time.time() - float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: use a duration like 7d, 24h, 30m, or a unix time")


@main.command()
@click.option("--once", is_flag=True, help="Run one cycle and exit (for cron and tests).")
@click.option("--interval", type=float, help="Seconds between cycles [HI_MOE_MONITOR_INTERVAL, 30].")
@json_option
@click.pass_context
def monitor(ctx, once, interval, as_json) -> None:
    """Health checks, metric scrapes and alerts for every server, every INTERVAL seconds."""
    import logging

    from core.monitor import Monitor, MonitorSettings
    from core.registry import Registry

    settings = settings_of(ctx)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    mon_settings = MonitorSettings(interval_seconds=interval or settings.monitor_interval,
                                   webhook_url=settings.webhook_url)
    with Registry.from_settings(settings) as registry, Fleet.from_settings(settings) as fleet:
        mon = Monitor(registry, fleet, mon_settings)
        try:
            if once:
                report = mon.run_cycle()
                emit(report, as_json, lambda r: "\n".join(
                    [f"{s['server']}: {'up' if s['up'] else 'DOWN'}"
                     + (f", missing {', '.join(s['missing'])}" if s["missing"] else "")
                     for s in r.servers]
                    + [f"opened: {a['message']}" for a in r.opened]
                    + [f"resolved: {a['message']}" for a in r.resolved]
                    + [f"open conditions: {len(r.conditions)}"]))
            else:
                mon.run_forever()
        finally:
            mon.notifier.close(wait=once)


@main.group(cls=HiMoeGroup)
def alerts() -> None:
    """Alerts and their thresholds."""


@alerts.command("list")
@click.option("--all", "show_all", is_flag=True, help="History too, not only open alerts.")
@click.option("--since", default="7d", show_default=True)
@json_option
@click.pass_context
def alerts_list(ctx, show_all, since, as_json) -> None:
    """Open alerts (or, with --all, every alert since --since)."""
    from core.monitor import alert_history, open_alerts
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        rows = alert_history(registry, since=parse_since(since)) if show_all else open_alerts(registry)
    emit(rows, as_json, lambda rs: table([{
        "id": r["id"], "severity": r["severity"], "rule": r["rule"], "subject": r["subject"],
        "state": "open" if r["resolved_at"] is None else "resolved", "message": r["message"][:90]}
        for r in rs], ["id", "severity", "rule", "subject", "state", "message"]))


@alerts.command("thresholds")
@json_option
@click.pass_context
def alerts_thresholds(ctx, as_json) -> None:
    """The alert thresholds in force."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        rows = list(registry.thresholds().values())
    emit(rows, as_json, lambda rs: table(rs, ["key", "value", "description", "updated_by", "updated_at"]))


@alerts.command("set-threshold")
@click.argument("key")
@click.argument("value", type=float)
@json_option
@click.pass_context
def alerts_set_threshold(ctx, key, value, as_json) -> None:
    """Change threshold KEY to VALUE (audited)."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        registry.set_threshold(key, value)
        row = registry.thresholds()[key]
    emit(row, as_json, lambda r: f"{r['key']} = {r['value']}")


@main.group(cls=HiMoeGroup)
def keywords() -> None:
    """Keywords operators teach the router, on top of its keyword file (audited)."""


@keywords.command("list")
@json_option
@click.pass_context
def keywords_list(ctx, as_json) -> None:
    """The keywords added in the registry."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        rows = [k.model_dump() for k in registry.router_keywords()]
    emit(rows, as_json, lambda rs: table(rs, ["domain", "keyword", "weight", "note", "added_by", "added_at"]))


@keywords.command("add")
@click.argument("domain")
@click.argument("keyword")
@click.option("--weight", type=float, default=2.0, show_default=True,
              help="4 = unambiguous on its own, 2 = clear, 0.5 = a hint; negative takes evidence back.")
@click.option("--note", help="Why (shown in the audit log).")
@json_option
@click.pass_context
def keywords_add(ctx, domain, keyword, weight, note, as_json) -> None:
    """Route tasks that say KEYWORD towards DOMAIN ('^word': first word only; 'pre*': prefix)."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        added = registry.add_router_keyword(domain, keyword, weight, note=note)
    emit(added.model_dump(), as_json, lambda k: f"{k['domain']}: {k['keyword']!r} = {k['weight']}")


@keywords.command("remove")
@click.argument("domain")
@click.argument("keyword")
@click.pass_context
def keywords_remove(ctx, domain, keyword) -> None:
    """Forget a keyword added in the registry."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        registry.remove_router_keyword(domain, keyword)
    click.echo(f"removed {domain}: {keyword!r}")


@main.group(cls=HiMoeGroup)
def gaps() -> None:
    """Tasks the dispatcher sent to the base model (routing gaps), and operators' labels on them:
    the domain that should have taken each. Tier 3 learns from the labels."""


@gaps.command("list")
@click.option("--since", default="7d", show_default=True)
@click.option("--reason", help="Only this fallback reason (no_domain_match, non_technical_task, ...).")
@click.option("--limit", default=5000, show_default=True)
@click.option("--for-labelling", is_flag=True,
              help='JSON lines {"id", "objective", "context_refs"} (and "expected" where labelled): '
                   "label the rest in the file and give it to tier 3 as HI_MOE_ROUTER_EXAMPLES, or "
                   "to `hi-moe route --input` to measure.")
@json_option
@click.pass_context
def gaps_list(ctx, since, reason, limit, for_labelling, as_json) -> None:
    """The routing gaps, newest first."""
    from core.registry import Registry
    from core.tasks_io import labelling_line

    with Registry.from_settings(settings_of(ctx)) as registry:
        rows = registry.gaps(since=parse_since(since), reason=reason, limit=limit)
    if for_labelling:
        for row in rows:
            click.echo(json.dumps(labelling_line(row)))
        return
    emit(rows, as_json, lambda rs: table(
        [{"id": r["id"], "time (UTC)": time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["ts"])),
          "reason": r["reason"], "label": r["label"], "objective": r["objective"][:72]} for r in rs],
        ["id", "time (UTC)", "reason", "label", "objective"]))


@gaps.command("label")
@click.argument("gap_id", type=int)
@click.argument("domain")
@json_option
@click.pass_context
def gaps_label(ctx, gap_id, domain, as_json) -> None:
    """Say which DOMAIN should have taken gap GAP_ID ("null": the base model was right)."""
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        gap = registry.label_gap(gap_id, domain)
    emit(gap, as_json, lambda g: f"gap {g['id']}: {g['label']} ({g['objective'][:60]!r})")


@main.command("metrics")
@click.option("--since", default="24h", show_default=True)
@json_option
@click.pass_context
def metrics_cmd(ctx, since, as_json) -> None:
    """Per version over the window: requests, success rate, p50/p95 latency, traffic share."""
    from core.monitor import metrics as compute
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        data = compute(registry, since=parse_since(since))

    def human(d) -> str:
        pct = lambda v: "" if v is None else f"{v:.1%}"  # noqa: E731
        ms = lambda v: "" if v is None else f"{v:.0f}"  # noqa: E731
        rows = [{"version": r["served_name"], "requests": r["requests"],
                 "success": pct(r["success_rate"]), "p50_ms": ms(r["p50_latency_ms"]),
                 "p95_ms": ms(r["p95_latency_ms"]), "share": pct(r["traffic_share"])}
                for r in d["versions"]]
        load = d["adapter_load_latency_ms"]
        return (table(rows, ["version", "requests", "success", "p50_ms", "p95_ms", "share"])
                + f"\nadapter loads: {load['n']} (p50 {ms(load['p50'])} ms, max {ms(load['max'])} ms); "
                  f"cache hits {pct(d['adapter_cache_hits'])}")

    emit(data, as_json, human)


@main.command()
@click.option("--since", default="7d", show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="Write the Markdown here.")
@click.pass_context
def report(ctx, since, output) -> None:
    """The weekly specialist-health review, as Markdown."""
    from core.monitor import review_markdown
    from core.registry import Registry

    with Registry.from_settings(settings_of(ctx)) as registry:
        text = review_markdown(registry, since=parse_since(since))
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


# ---------------------------------------------------------------------------------------------
# hi-moe operators


@main.group(cls=HiMoeGroup)
def operators() -> None:
    """Console operators (HI_MOE_OPERATORS holds NAME:HASH entries, never passwords)."""


@operators.command("hash")
@click.argument("name")
@click.password_option(help="Prompted for when not given.")
def operators_hash(name, password) -> None:
    """Print NAME's HI_MOE_OPERATORS entry (a salted PBKDF2-SHA256 hash of the password)."""
    from console.auth import hash_password

    if ":" in name or "," in name or not name.strip():
        raise click.BadParameter("a name may not be empty or contain ':' or ','")
    click.echo(f"{name}:{hash_password(password)}")


# ---------------------------------------------------------------------------------------------
# hi-moe demo ...


@main.group(cls=HiMoeGroup)
def demo() -> None:
    """The local demo fleet: a tiny model, real adapters, a real CPU vLLM server."""


@demo.command("build")
@click.argument("out", type=click.Path(path_type=Path), required=False)
@click.option("--force", is_flag=True, help="Regenerate even what exists.")
@json_option
@click.pass_context
def demo_build(ctx, out, force, as_json) -> None:
    """Generate the tiny base model and the specialists' adapters in OUT (default HOME/demo)."""
    from core.demo import build_demo_fleet

    summary = build_demo_fleet(out or settings_of(ctx).demo_dir, force=force)
    emit(summary, as_json, lambda s: f"model    {s['model']}\nadapters {s['adapters_root']}\n"
                                     f"written  {len(s['written'])} adapter version(s)")


@demo.command("serve")
@click.option("--dir", "demo_dir", type=click.Path(path_type=Path), help="Demo fleet (default HOME/demo).")
@click.option("--port", default=8000, show_default=True)
@click.option("--max-loras", default=4, show_default=True)
@click.option("--max-cpu-loras", default=8, show_default=True)
@click.option("--max-lora-rank", default=64, show_default=True)
@click.option("--wait", "wait_seconds", default=300.0, show_default=True, help="Seconds to wait for /health.")
@click.pass_context
def demo_serve(ctx, demo_dir, port, max_loras, max_cpu_loras, max_lora_rank, wait_seconds) -> None:
    """Start a real vLLM server on the demo fleet in the background; wait until it is healthy."""
    from core.localserver import ServerStartError, demo_server_options, start_server

    settings = settings_of(ctx)
    demo_dir = demo_dir or settings.demo_dir
    if not (demo_dir / "model" / "config.json").exists():
        raise click.ClickException(f"no demo model in {demo_dir}; run `hi-moe demo build` first")
    options = demo_server_options(demo_dir, port=port, api_key=settings.api_key,
                                  max_loras=max_loras, max_cpu_loras=max_cpu_loras,
                                  max_lora_rank=max_lora_rank)
    try:
        pid = start_server(options, settings.home / "run", name=f"vllm-{port}",
                           wait_seconds=wait_seconds)
    except ServerStartError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"vLLM serving {options.served_model_name} at {options.url} (pid {pid}; "
               f"log {settings.home / 'run' / f'vllm-{port}.log'})")


@demo.command("setup")
@click.option("--dir", "demo_dir", type=click.Path(path_type=Path), help="Demo fleet (default HOME/demo).")
@click.pass_context
def demo_setup(ctx, demo_dir) -> None:
    """Import the demo adapters, make the newest version of each specialist live (python gets
    its previous version live and the newest as a 20% canary) and load them on the servers."""
    from core.registry import semver_key

    demo_dir = demo_dir or settings_of(ctx).demo_dir
    with _operations(ctx) as ops:
        report = ops.import_root(demo_dir / "adapters")
        for label, message in report.errors.items():
            click.echo(f"could not import {label}: {message}", err=True)
        for name in ops.registry.specialists():
            versions = sorted(ops.registry.versions(name, include_retired=False),
                              key=lambda v: semver_key(v.version))
            if ops.registry.get_active(name) or not versions:
                continue
            live = versions[-2] if name == "python-lora" and len(versions) > 1 else versions[-1]
            ops.promote(name, live.version)
            if live is not versions[-1]:
                ops.canary(name, versions[-1].version, 0.2)
        ops.sync()
        live = ops.registry.live_versions()
    click.echo(f"registry {settings_of(ctx).db_path}: {len(live)} live version(s): "
               + ", ".join(v.served_name for v in live))


@demo.command("stop")
@click.option("--port", default=8000, show_default=True)
@click.pass_context
def demo_stop(ctx, port) -> None:
    """Stop the demo vLLM server started by `hi-moe demo serve`."""
    from core.localserver import stop_server

    stopped = stop_server(settings_of(ctx).home / "run", name=f"vllm-{port}")
    click.echo("stopped" if stopped else "not running")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
