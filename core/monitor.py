"""The monitor: health checks, /metrics scrapes, the spec's metrics, and alert rules.

One cycle (``hi-moe monitor --once``; the worker runs one every ``interval`` seconds):

1. every server: ``/health`` and ``/v1/models`` against what the registry says must be live;
   the result is one ``health_checks`` row (up, latency, loaded, missing, unknown);
2. every server that is up: ``/metrics`` parsed into one ``metric_scrapes`` row;
3. the alert rules are evaluated and alerts opened, kept or resolved (never duplicated: the
   database allows one open alert per rule and subject);
4. retention: old checks, scrapes and raw outcomes are deleted (roll-ups keep the history).

The spec's metrics, as computed here (vLLM has no per-adapter figures, so all come from this
project's own records):

* ``adapter_load_latency_ms``: the duration of each ``/v1/load_lora_adapter`` call this project
  made (``adapter_loads``); plus ``cold_first_request_ms``: the latency of the first request
  through an adapter after each load, where an on-demand load shows up.
* ``adapter_cache_hits``: the share of adapter requests that found their adapter already loaded:
  every request except the first after each load and the ``adapter_not_on_server`` fallbacks.
* ``adapter_utilization``: requests per version and their share of all requests.
* ``specialist_success_rate``: successful outcomes / outcomes per version in the window (the
  operator's good/bad marks included).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from pydantic import BaseModel, Field

from core.db import transaction
from core.registry import Registry
from core.vllm import Fleet, VLLMError

log = logging.getLogger("hi_moe.monitor")

RULES = {
    "server_down": "critical",
    "adapter_missing": "critical",
    "drift": "warning",
    "adapter_load_latency": "warning",
    "specialist_success_rate": "warning",
    "traffic_share": "warning",
}


class MonitorSettings(BaseModel):
    interval_seconds: float = 30.0
    window_seconds: int = 3600            # success rate, share and load latency look this far back
    keep_checks_days: float = 7.0         # health checks and scrapes
    keep_outcomes_days: float = 90.0      # raw outcomes (roll-ups are kept)
    keep_hourly_rollups_days: float = 35.0
    webhook_url: str | None = None


class Condition(BaseModel):
    rule: str
    subject: str
    message: str
    value: float | None = None
    threshold: float | None = None


class CycleReport(BaseModel):
    ts: float
    servers: list[dict[str, Any]] = Field(default_factory=list)
    conditions: list[Condition] = Field(default_factory=list)
    opened: list[dict[str, Any]] = Field(default_factory=list)
    resolved: list[dict[str, Any]] = Field(default_factory=list)
    deleted: dict[str, int] = Field(default_factory=dict)


class Notifier:
    """Posts alert events to a webhook (Slack-compatible ``text`` plus the alert) from a
    background thread, with retries, so a slow or dead webhook never stalls the monitor."""

    def __init__(self, url: str | None, *, retries: int = 3, backoff: float = 1.0,
                 timeout: float = 5.0):
        self.url = url
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hi-moe-webhook")
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()

    def notify(self, event: str, alert: dict[str, Any]) -> None:
        if not self.url:
            return
        icon = {"opened": ":rotating_light:", "resolved": ":white_check_mark:"}.get(event, "")
        payload = {"text": f"{icon} [{alert['severity']}] {event}: {alert['message']}",
                   "event": event, "alert": alert}
        self._pool.submit(self._post, payload)

    def _post(self, payload: dict[str, Any]) -> None:
        for attempt in range(self.retries):
            try:
                response = httpx.post(self.url, json=payload, timeout=self.timeout)
                if response.status_code < 300:
                    with self._lock:
                        self.sent += 1
                    return
            except httpx.HTTPError as exc:
                log.warning("webhook attempt %d failed: %s", attempt + 1, exc)
            time.sleep(self.backoff * (2 ** attempt))
        with self._lock:
            self.failed += 1

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


class Monitor:
    def __init__(self, registry: Registry, fleet: Fleet, settings: MonitorSettings | None = None,
                 notifier: Notifier | None = None):
        self.registry = registry
        self.fleet = fleet
        self.settings = settings or MonitorSettings()
        self.notifier = notifier or Notifier(self.settings.webhook_url)

    # -- one cycle ------------------------------------------------------------------------------

    def run_cycle(self, now: float | None = None) -> CycleReport:
        now = now or time.time()
        report = CycleReport(ts=now)
        live = {v.served_name: v for v in self.registry.live_versions()}
        registered = {v.served_name for v in self.registry.versions()}
        unevaluated: set[tuple[str, str]] = set()
        for client in self.fleet:
            health = client.health_check(live)
            loaded = set(health.adapters)
            unknown = sorted(loaded - registered)
            self.registry.record_health(server=client.url, up=health.up,
                                        latency_ms=health.latency_ms, version=health.version,
                                        loaded=sorted(loaded), missing=health.missing,
                                        unknown=unknown, error=health.error, ts=now)
            report.servers.append({"server": client.url, "up": health.up,
                                   "missing": health.missing, "unknown": unknown,
                                   "error": health.error})
            if not health.up:
                report.conditions.append(Condition(
                    rule="server_down", subject=client.url,
                    message=f"{client.url} is down: {health.error}"))
                # A down server's adapters are unknown, not resolved.
                unevaluated.update(("adapter_missing", f"{client.url} {n}") for n in live)
                unevaluated.add(("drift", client.url))
                continue
            for name in health.missing:
                report.conditions.append(Condition(
                    rule="adapter_missing", subject=f"{client.url} {name}",
                    message=f"{name} is live in the registry but not loaded on {client.url}"))
            if unknown or health.missing:
                parts = ([f"missing {', '.join(health.missing)}"] if health.missing else []) + \
                        ([f"unknown to the registry {', '.join(unknown)}"] if unknown else [])
                report.conditions.append(Condition(
                    rule="drift", subject=client.url, value=len(unknown) + len(health.missing),
                    message=f"{client.url} differs from the registry: {'; '.join(parts)}"))
            self._scrape(client, now)
        report.conditions += self.rule_conditions(now)
        report.opened, report.resolved = self.sync_alerts(report.conditions, unevaluated, now)
        report.deleted = self.apply_retention(now)
        return report

    def _scrape(self, client: Any, now: float) -> None:
        try:
            snap = client.scrape_metrics()
        except VLLMError as exc:
            log.warning("metrics scrape of %s failed: %s", client.url, exc.message)
            return
        e2e = snap.histograms.get("e2e_request_latency_seconds")
        ttft = snap.histograms.get("time_to_first_token_seconds")
        with transaction(self.registry.db):
            self.registry.db.execute(
                "insert into metric_scrapes (ts, server, max_lora, running_adapters, "
                "waiting_adapters, requests_running, requests_waiting, kv_cache_usage, e2e_count, "
                "e2e_sum, ttft_count, ttft_sum) values (?,?,?,?,?,?,?,?,?,?,?,?)",
                [now, client.url, snap.max_lora, json.dumps(snap.running_adapters),
                 json.dumps(snap.waiting_adapters), snap.requests_running, snap.requests_waiting,
                 snap.kv_cache_usage, e2e.count if e2e else None, e2e.sum if e2e else None,
                 ttft.count if ttft else None, ttft.sum if ttft else None])

    # -- rules on recorded figures -------------------------------------------------------------

    def rule_conditions(self, now: float) -> list[Condition]:
        thresholds = {k: v["value"] for k, v in self.registry.thresholds().items()}
        since = now - self.settings.window_seconds
        out: list[Condition] = []
        min_requests = thresholds.get("min_requests", 20)
        summary = self.registry.summary(since=since, until=now + 1)
        total = sum(row["requests"] for row in summary)
        for row in summary:
            if row["adapter_id"] is None:
                continue
            rate, limit = row["success_rate"], thresholds["specialist_success_rate"]
            if row["requests"] >= min_requests and rate is not None and rate < limit:
                out.append(Condition(
                    rule="specialist_success_rate", subject=row["served_name"], value=rate,
                    threshold=limit, message=f"{row['served_name']} success rate {rate:.1%} "
                    f"is under {limit:.0%} over {row['requests']} requests"))
            share, cap = row["traffic_share"], thresholds["traffic_share"]
            if total >= min_requests and share > cap:
                out.append(Condition(
                    rule="traffic_share", subject=row["served_name"], value=share, threshold=cap,
                    message=f"{row['served_name']} takes {share:.0%} of traffic (over {cap:.0%}): "
                            "routing is imbalanced"))
        limit = thresholds["adapter_load_latency_ms"]
        for row in self.registry.db.query(
                "select served_name, max(latency_ms) as worst, count(*) as n from adapter_loads "
                "where action = 'load' and ok = 1 and ts >= ? and ts <= ? group by served_name",
                [since, now + 1]):
            if row["worst"] is not None and row["worst"] > limit:
                out.append(Condition(
                    rule="adapter_load_latency", subject=row["served_name"], value=row["worst"],
                    threshold=limit, message=f"loading {row['served_name']} took "
                    f"{row['worst']:.0f} ms (over {limit:.0f} ms): cold starts"))
        return out

    # -- alert state ---------------------------------------------------------------------------

    def sync_alerts(self, conditions: list[Condition], unevaluated: set[tuple[str, str]],
                    now: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        opened, resolved = [], []
        db = self.registry.db
        with transaction(db):
            current = {(c.rule, c.subject): c for c in conditions}
            open_rows = {(r["rule"], r["subject"]): r for r in db.query(
                "select * from alerts where resolved_at is null")}
            for key, cond in current.items():
                if key in open_rows:
                    db.execute("update alerts set last_seen_at = ?, value = ?, message = ? "
                               "where id = ?", [now, cond.value, cond.message, open_rows[key]["id"]])
                    continue
                db.execute("insert into alerts (rule, subject, severity, message, value, threshold, "
                           "opened_at, last_seen_at) values (?,?,?,?,?,?,?,?)",
                           [cond.rule, cond.subject, RULES[cond.rule], cond.message, cond.value,
                            cond.threshold, now, now])
                opened.append({**cond.model_dump(), "severity": RULES[cond.rule], "opened_at": now})
            for key, row in open_rows.items():
                if key not in current and key not in unevaluated:
                    db.execute("update alerts set resolved_at = ? where id = ?", [now, row["id"]])
                    resolved.append({**row, "resolved_at": now})
        for alert in opened:
            self.notifier.notify("opened", alert)
        for alert in resolved:
            self.notifier.notify("resolved", alert)
        return opened, resolved

    # -- retention -----------------------------------------------------------------------------

    def apply_retention(self, now: float) -> dict[str, int]:
        s = self.settings
        deleted = {}
        with transaction(self.registry.db):
            for table, days in (("health_checks", s.keep_checks_days),
                                ("metric_scrapes", s.keep_checks_days),
                                ("outcomes", s.keep_outcomes_days),
                                ("adapter_loads", s.keep_outcomes_days)):
                cur = self.registry.db.execute(f"delete from {table} where ts < ?",
                                               [now - days * 86400])
                deleted[table] = cur.rowcount
            cur = self.registry.db.execute("delete from rollups_hour where bucket < ?",
                                           [now - s.keep_hourly_rollups_days * 86400])
            deleted["rollups_hour"] = cur.rowcount
        return deleted

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.is_set():
            started = time.monotonic()
            try:
                report = self.run_cycle()
                log.info("cycle: %d servers, %d conditions, %d opened, %d resolved",
                         len(report.servers), len(report.conditions), len(report.opened),
                         len(report.resolved))
            except Exception:  # the worker must outlive any single bad cycle
                log.exception("monitor cycle failed")
            stop.wait(max(0.0, self.settings.interval_seconds - (time.monotonic() - started)))


# ---------------------------------------------------------------------------------------------
# Reading


def open_alerts(registry: Registry) -> list[dict[str, Any]]:
    return list(registry.db.query("select * from alerts where resolved_at is null "
                                  "order by opened_at desc"))


def alert_history(registry: Registry, *, since: float | None = None,
                  limit: int = 1000) -> list[dict[str, Any]]:
    return list(registry.db.query("select * from alerts where opened_at >= ? "
                                  "order by opened_at desc limit ?", [since or 0, limit]))


def metrics(registry: Registry, *, since: float, until: float | None = None) -> dict[str, Any]:
    """The spec's metrics over a window (see the module docstring for the definitions)."""
    until = until or time.time()
    versions = registry.summary(since=since, until=until)
    loads = list(registry.db.query(
        "select latency_ms from adapter_loads where action = 'load' and ok = 1 and ts >= ? "
        "and ts < ? order by latency_ms", [since, until]))
    load_ms = [row["latency_ms"] for row in loads if row["latency_ms"] is not None]
    # The first request through an adapter after each load on a server: a cold start.
    cold = list(registry.db.query("""
        select l.served_name, l.server, l.ts,
               (select o.latency_ms from outcomes o where o.adapter_id = l.adapter_id
                  and o.server = l.server and o.ts >= l.ts and o.fallback = 0
                order by o.ts limit 1) as first_ms
        from adapter_loads l where l.action = 'load' and l.ok = 1 and l.ts >= ? and l.ts < ?""",
                                  [since, until]))
    cold_ms = sorted(row["first_ms"] for row in cold if row["first_ms"] is not None)
    adapter_requests = sum(r["requests"] for r in versions if r["adapter_id"] is not None)
    missing = registry.db.execute(
        "select count(*) from outcomes where fallback_reason = 'adapter_not_on_server' and ts >= ? "
        "and ts < ?", [since, until]).fetchone()[0]
    misses = len(cold_ms) + missing
    total_with_adapter = adapter_requests + missing
    return {
        "since": since, "until": until,
        "versions": versions,
        "adapter_load_latency_ms": _spread(load_ms),
        "cold_first_request_ms": _spread(cold_ms),
        "adapter_cache_hits": (total_with_adapter - misses) / total_with_adapter
        if total_with_adapter else None,
        "requests": sum(r["requests"] for r in versions),
    }


def _spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return {"n": len(values), "p50": pick(0.5), "p95": pick(0.95), "max": values[-1]}


def review_markdown(registry: Registry, *, since: float, until: float | None = None) -> str:
    """The weekly specialist-health review."""
    until = until or time.time()
    data = metrics(registry, since=since, until=until)
    fmt_t = lambda t: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))  # noqa: E731
    pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731
    ms = lambda v: "n/a" if v is None else f"{v:.0f}"  # noqa: E731
    thresholds = {k: v["value"] for k, v in registry.thresholds().items()}
    lines = ["# Specialist health review", "",
             f"Window: {fmt_t(since)} to {fmt_t(until)}; {data['requests']:,} requests.", "",
             "## Per version", "",
             "| version | requests | traffic share | success rate | p50 ms | p95 ms | fallbacks |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in data["versions"]:
        flag = " ⚠" if (row["success_rate"] is not None and row["adapter_id"] is not None
                        and row["success_rate"] < thresholds["specialist_success_rate"]) else ""
        lines.append(f"| {row['served_name']}{flag} | {row['requests']:,} | {pct(row['traffic_share'])} "
                     f"| {pct(row['success_rate'])} | {ms(row['p50_latency_ms'])} "
                     f"| {ms(row['p95_latency_ms'])} | {row['fallbacks']:,} |")
    load, cold = data["adapter_load_latency_ms"], data["cold_first_request_ms"]
    lines += ["", "## Adapter loading", "",
              f"- loads: {load['n']}, p50 {ms(load['p50'])} ms, p95 {ms(load['p95'])} ms, "
              f"max {ms(load['max'])} ms (alert above {thresholds['adapter_load_latency_ms']:.0f} ms)",
              f"- first request after a load: p50 {ms(cold['p50'])} ms, max {ms(cold['max'])} ms",
              f"- adapter cache hits: {pct(data['adapter_cache_hits'])}"]
    gaps = registry.gaps(since=since)
    reasons: dict[str, int] = {}
    for gap in gaps:
        reasons[gap["reason"]] = reasons.get(gap["reason"], 0) + 1
    lines += ["", "## Routing gaps", "", f"{len(gaps)} tasks fell back to the base model."]
    lines += [f"- {reason}: {n}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    alerts = alert_history(registry, since=since)
    lines += ["", "## Alerts", "", f"{len(alerts)} opened in the window, "
              f"{sum(1 for a in alerts if a['resolved_at'] is None)} still open."]
    lines += [f"- [{a['severity']}] {a['message']} ({'open' if a['resolved_at'] is None else 'resolved'})"
              for a in alerts[:30]]
    return "\n".join(lines) + "\n"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a success rate: honest at small n, unlike p +- 2 sigma."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def canary_comparison(registry: Registry, *, since: float,
                      until: float | None = None) -> list[dict[str, Any]]:
    """For each specialist with a canary: active and canary side by side, with sample sizes,
    intervals and a plain-language reading."""
    rows = {row["adapter_id"]: row for row in registry.summary(since=since, until=until)}
    out = []
    for name in registry.specialists():
        canary, active = registry.get_canary(name), registry.get_active(name)
        if canary is None or active is None:
            continue
        sides = {}
        for label, version in (("active", active), ("canary", canary)):
            row = rows.get(version.lora_int_id, {})
            n, ok = row.get("requests", 0), row.get("successes", 0)
            sides[label] = {"served_name": version.served_name, "requests": n,
                            "success_rate": ok / n if n else None,
                            "interval": wilson_interval(ok, n),
                            "p50_latency_ms": row.get("p50_latency_ms"),
                            "p95_latency_ms": row.get("p95_latency_ms")}
        a, c = sides["active"]["interval"], sides["canary"]["interval"]
        if a is None or c is None:
            verdict = "no data for one side yet"
        elif c[0] > a[1]:
            verdict = "canary is better (intervals do not overlap)"
        elif c[1] < a[0]:
            verdict = "canary is worse (intervals do not overlap): consider ending it"
        else:
            verdict = "no significant difference yet: keep collecting"
        out.append({"specialist": name, "share": canary.canary_share, **{
            f"{side}_{k}": v for side, values in sides.items() for k, v in values.items()},
            "verdict": verdict})
    return out
