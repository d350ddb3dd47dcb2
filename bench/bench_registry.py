"""Registry at production scale: 10,000 versions and 1,000,000 request outcomes.

Prints outcomes recorded per second (in batches of 1,000, each batch one transaction that also
keeps every aggregate current) and the time of each aggregation query the console uses.
Targets (issue 3): >= 20,000 outcomes/s; every aggregation < 200 ms.
Run: .venv/bin/python bench/bench_registry.py [--outcomes N] [--keep PATH]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.adapter_files import AdapterManifest  # noqa: E402
from core.registry import Outcome, Registry  # noqa: E402

SPECIALISTS = 100
VERSIONS_EACH = 100
BATCH = 1000
DAYS = 30


def manifest(path: str) -> AdapterManifest:
    return AdapterManifest(path=path, rank=32, alpha=64, target_modules=["q_proj", "v_proj"],
                           base_model="Qwen/QwQ-32B-AWQ", peft_type="LORA", size_bytes=1 << 20,
                           tensor_bytes=1 << 20, checksum="0" * 64)


def populate_versions(reg: Registry) -> list[tuple[int, str]]:
    """10,000 versions; the newest of each specialist live, every fifth with a canary."""
    reg.db.conn.execute("BEGIN IMMEDIATE")  # one transaction for setup speed; not what is measured
    live = []
    for s in range(SPECIALISTS):
        name = f"s{s:03d}-lora"
        for v in range(VERSIONS_EACH):
            reg.register(manifest(f"/adapters/{name}/v1.{v}.0"), name=name, version=f"1.{v}.0",
                         domains=[f"d{s}"])
        reg.promote(name, f"1.{VERSIONS_EACH - 1}.0")
        if s % 5 == 0:
            reg.set_canary(name, f"1.{VERSIONS_EACH - 2}.0", 0.1)
    reg.db.conn.execute("COMMIT")
    for version in reg.live_versions():
        live.append((version.lora_int_id, version.name))
    return live


def record(reg: Registry, live: list[tuple[int, str]], total: int) -> float:
    rng = random.Random(0)
    now = time.time()
    start_ts = now - DAYS * 86400
    weights = [1.0 / (i + 1) for i in range(len(live))]  # skewed, like real traffic
    elapsed = 0.0
    done = 0
    while done < total:
        n = min(BATCH, total - done)
        picks = rng.choices(live, weights, k=n)
        batch = [Outcome(adapter_id=aid, specialist=name, success=rng.random() < 0.93,
                         latency_ms=rng.lognormvariate(7.9, 0.4), prompt_tokens=400,
                         completion_tokens=300, ts=start_ts + (done + i) * (DAYS * 86400 / total))
                 for i, (aid, name) in enumerate(picks)]
        t0 = time.perf_counter()
        reg.record_outcomes(batch)
        elapsed += time.perf_counter() - t0
        done += n
    return done / elapsed


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outcomes", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Write the database here and keep it.")
    args = parser.parse_args()
    path = args.keep or Path(tempfile.mkdtemp()) / "bench.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    reg = Registry.open(path)
    t0 = time.perf_counter()
    live = populate_versions(reg)
    print(f"setup: {SPECIALISTS * VERSIONS_EACH} versions ({len(live)} live) in "
          f"{time.perf_counter() - t0:.1f} s")
    rate = record(reg, live, args.outcomes)
    print(f"record_outcomes: {args.outcomes:,} outcomes in batches of {BATCH}: "
          f"{rate:,.0f} outcomes/s (target >= 20,000)")
    now = time.time()
    queries = {
        "versions_table (all 10,000 rows)": lambda: reg.versions_table(),
        "live_versions": lambda: reg.live_versions(),
        "summary last 24 h": lambda: reg.summary(since=now - 86400),
        "summary last 7 d": lambda: reg.summary(since=now - 7 * 86400),
        "summary last 30 d": lambda: reg.summary(since=now - 30 * 86400),
        "timeseries 7 d hourly by version": lambda: reg.timeseries(since=now - 7 * 86400),
        "timeseries 30 d daily by specialist": lambda: reg.timeseries(
            since=now - 30 * 86400, bucket_seconds=86400, by_version=False),
        "timeseries 30 d daily, one specialist": lambda: reg.timeseries(
            since=now - 30 * 86400, bucket_seconds=86400, specialist="s000-lora"),
        "audit_log 500": lambda: reg.audit_log(limit=500),
        "gaps 7 d": lambda: reg.gaps(since=now - 7 * 86400),
    }
    worst = 0.0
    for label, fn in queries.items():
        ms = timed(fn)
        worst = max(worst, ms)
        print(f"{label:40s} {ms:8.1f} ms")
    print(f"slowest aggregation: {worst:.1f} ms (target < 200 ms)")
    print(f"database size: {path.stat().st_size / 1e6:.0f} MB")
    reg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
