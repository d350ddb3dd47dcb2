"""AppTest: every page renders without exception on an empty registry and on a populated one,
with its key elements. In-process; no browser. No server is needed: pages must degrade to
clear messages when the server is unreachable."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from console.auth import hash_password
from core.registry import Outcome, Registry
from tests.helpers import manifest

APP = str(Path(__file__).resolve().parent.parent / "console" / "app.py")
PAGES = {
    "overview": "Overview", "adapters": "Adapters", "try_task": "Try a task", "alerts": "Alerts",
    "performance": "Performance", "gaps": "Routing gaps", "audit": "Audit log",
    "memory": "Memory planner",
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("HI_MOE_HOME", str(tmp_path))
    monkeypatch.setenv("HI_MOE_VLLM_URLS", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("HI_MOE_TIMEOUT", "2")
    monkeypatch.setenv("HI_MOE_OPERATORS", "alice:" + hash_password("wonderland", iterations=1000))
    return tmp_path


def populate(db_path: Path) -> None:
    with Registry.open(db_path, operator="alice") as reg:
        ids = {}
        for name, version in [("python-lora", "1.0.0"), ("python-lora", "1.1.0"), ("math-lora", "1.0.0")]:
            ids[(name, version)] = reg.register(manifest(f"/a/{name}/{version}"), name=name,
                                                version=version, domains=[name.split("-")[0]]).lora_int_id
        reg.promote("python-lora", "1.0.0")
        reg.promote("math-lora", "1.0.0")
        reg.set_canary("python-lora", "1.1.0", 0.2)
        now = time.time()
        reg.record_outcomes([Outcome(adapter_id=ids[("python-lora", "1.0.0" if i % 5 else "1.1.0")],
                                     specialist="python-lora", success=i % 7 != 0,
                                     latency_ms=20 + i % 30, ts=now - 3600 * (i % 48))
                             for i in range(400)])
        reg.record_gap("write a haiku about autumn", reason="non_technical_task")
        reg.record_gap("do the thing", reason="no_domain_match")


def run_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page != "overview":
        at.switch_page(f"../pages/{page}.py").run()
    return at


@pytest.mark.parametrize("page", list(PAGES))
def test_page_on_empty_registry(env, page):
    at = run_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == PAGES[page]


@pytest.mark.parametrize("page", list(PAGES))
def test_page_on_populated_registry(env, page):
    populate(env / "registry.db")
    at = run_page(page)
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == PAGES[page]


def test_overview_elements(env):
    populate(env / "registry.db")
    at = run_page("overview")
    assert any("is down" in e.value for e in at.error)
    assert {m.label for m in at.metric} >= {"Requests", "Success rate", "Base-model fallbacks"}
    assert [m.value for m in at.metric if m.label == "Requests"][0] != "0"


def test_adapters_page_is_read_only_until_sign_in(env):
    populate(env / "registry.db")
    at = run_page("adapters")
    frame = at.dataframe[0].value
    assert set(frame["served name"]) == {"python-lora@1.0.0", "python-lora@1.1.0", "math-lora@1.0.0"}
    assert any("read-only" in w.value for w in at.warning)
    assert not [b for b in at.button if b.label == "Promote"]


def test_sign_in_reveals_actions(env):
    populate(env / "registry.db")
    at = run_page("adapters")
    at.sidebar.text_input[0].input("alice")
    at.sidebar.text_input[1].input("wrong")
    at.sidebar.button[0].click().run()
    assert any("wrong password" in e.value for e in at.sidebar.error)
    at.sidebar.text_input[0].input("alice")
    at.sidebar.text_input[1].input("wonderland")
    at.sidebar.button[0].click().run()
    assert at.session_state["operator"] == "alice"
    assert [b for b in at.button if b.label == "Promote"]


def test_performance_shows_canary_comparison(env):
    populate(env / "registry.db")
    at = run_page("performance")
    canaries = at.dataframe[-1].value
    assert list(canaries["specialist"]) == ["python-lora"]
    assert canaries["canary share"][0] == "20%"
    assert "n = " in canaries["canary success"][0] and "n = " in canaries["active success"][0]


def test_try_task_routes_and_explains(env):
    populate(env / "registry.db")
    at = run_page("try_task")
    at.text_area[0].input("Fix the failing pytest in test_api.py").run()
    [b for b in at.button if b.label == "Route"][0].click().run()
    assert any("python-lora" in s.value for s in at.success)
    evidence = at.dataframe[0].value
    assert "pytest" in set(evidence["matched"])


def test_memory_page_verdict(env):
    at = run_page("memory")
    assert any("Does not fit" in e.value for e in at.error)  # the spec's own plan
    assert any(m.label == "LoRA slots" and m.value == "16.00 GiB" for m in at.metric)


def test_gaps_page_teaches_the_router_a_keyword(env):
    populate(env / "registry.db")
    with Registry.open(env / "registry.db", operator="alice") as reg:
        for text in ("The zorblax plugin fails to import", "Upgrade zorblax to 2.0 in the service"):
            reg.record_gap(text, reason="no_domain_match")
    at = run_page("gaps")
    assert any("Sign in" in w.value for w in at.warning)  # read-only until then
    at.sidebar.text_input[0].input("alice")
    at.sidebar.text_input[1].input("wonderland")
    at.sidebar.button[0].click().run()
    [t for t in at.text_input if t.label == "Keyword or phrase"][0].input("zorblax").run()
    [s for s in at.selectbox if s.label == "Domain"][0].select("python").run()
    assert any("2 of the 4 gaps shown would go to the python specialist" in c.value for c in at.caption)
    [b for b in at.button if b.label == "Add keyword"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("The router now reads 'zorblax' as python evidence" in s.value for s in at.success)
    assert list(at.dataframe[-1].value["keyword"]) == ["zorblax"]
    with Registry.open(env / "registry.db") as reg:
        assert [(k.domain, k.keyword, k.added_by) for k in reg.router_keywords()] == [("python", "zorblax", "alice")]
        assert reg.audit_log(action="router-keyword-add")[0].target == "python:zorblax"
    # label a gap for tier 3: stored, audited, and shown in the table
    gap_title = [o for o in [s for s in at.selectbox if s.label == "Gap"][0].options if "plugin" in o][0]
    [s for s in at.selectbox if s.label == "Gap"][0].select(gap_title).run()
    [s for s in at.selectbox if s.label == "Should have gone to"][0].select("python").run()
    [b for b in at.button if b.label == "Save label"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("labelled python" in s.value for s in at.success)
    with Registry.open(env / "registry.db") as reg:
        assert reg.labelled_gaps() == [("The zorblax plugin fails to import", "python")]
        assert reg.audit_log(action="gap-label")[0].operator == "alice"
    # the dispatcher's router (Try a task) now sends such a task to the python specialist
    at.switch_page("../pages/try_task.py").run()
    at.text_area[0].input("Why does zorblax crash on start?").run()
    [b for b in at.button if b.label == "Route"][0].click().run()
    assert any("python-lora" in s.value for s in at.success)


def test_try_a_task_turns_tier3_on_once_its_model_is_built(env):
    from core.embeddings import MODEL_FILE

    toggles = lambda at: {t.label: t.value for t in at.toggle}  # noqa: E731
    assert not any(toggles(run_page("try_task")).values())  # not built: off, no 25 s first wait
    (env / "models").mkdir()
    (env / "models" / MODEL_FILE).write_bytes(b"")  # what `make demo` leaves behind
    assert all(toggles(run_page("try_task")).values()) and len(toggles(run_page("try_task"))) == 2
