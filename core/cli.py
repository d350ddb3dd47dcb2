"""``hi-moe``: the operator CLI.

Every command prints a human table by default and one JSON document with ``--json``; a failure is
one line on stderr (``Error: ...``) and exit status 1. Global options override the ``HI_MOE_*``
environment variables (see :mod:`core.config`).
"""

from __future__ import annotations

import json
import sys
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
