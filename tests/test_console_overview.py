"""AppTest: the console's overview page in-process, against the real server and a dead one."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import adapter_path

APP = str(Path(__file__).resolve().parent.parent / "console" / "app.py")


@pytest.mark.server
def test_overview_shows_health_and_served_adapters(vllm_server, fleet_dir, monkeypatch, tmp_path):
    from core.vllm import VLLMClient

    monkeypatch.setenv("HI_MOE_HOME", str(tmp_path))
    monkeypatch.setenv("HI_MOE_VLLM_URLS", vllm_server.url)
    with VLLMClient(vllm_server.url) as client:
        client.load_adapter("t-overview@1.0.0", adapter_path(fleet_dir, "data", "1.0.0"))
        try:
            at = AppTest.from_file(APP, default_timeout=60).run()
        finally:
            client.unload_adapter("t-overview@1.0.0")
    assert not at.exception
    assert at.title[0].value == "Overview"
    assert any(vllm_server.url in s.value and "is up" in s.value for s in at.success)
    frame = at.dataframe[0].value
    assert "t-overview@1.0.0" in set(frame["served name"])


def test_overview_with_server_down(monkeypatch, tmp_path):
    monkeypatch.setenv("HI_MOE_HOME", str(tmp_path))
    monkeypatch.setenv("HI_MOE_VLLM_URLS", "http://127.0.0.1:9")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("is down" in e.value for e in at.error)
    assert any("No adapter is loaded" in i.value for i in at.info)
