"""The one place that speaks to vLLM servers.

Chat goes through the ``openai`` client (the adapter's served name, or the base model, is the
``model``); admin calls (``/health``, ``/v1/models``, ``/v1/load_lora_adapter``,
``/v1/unload_lora_adapter``, ``/metrics``) go through ``httpx``. There is a blocking
:class:`VLLMClient` for Streamlit scripts and the CLI and an :class:`AsyncVLLMClient` for async
code; both build requests and read answers with the same functions below, so they cannot drift.

vLLM's error bodies come in two shapes (``{"error": {...}}`` and the older flat
``{"object": "error", ...}``) and its load/unload successes are plain text with no content type;
:func:`raise_for_response` turns all of them into the typed errors of this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from core.errors import HiMoeError

# ---------------------------------------------------------------------------------------------
# Errors a caller can act on


class VLLMError(HiMoeError):
    """Base class of every error this module raises."""

    def __init__(self, message: str, *, url: str | None = None):
        super().__init__(message)
        self.url = url


class ServerUnreachable(VLLMError):
    """Nothing answers at the server's address (refused, DNS, connection cut)."""


class ServerTimeout(VLLMError):
    """The server took longer than the configured timeout."""


class APIError(VLLMError):
    """The server answered with an error status."""

    def __init__(self, message: str, *, url: str | None = None, status: int = 0,
                 error_type: str | None = None, param: str | None = None):
        super().__init__(message, url=url)
        self.status = status
        self.error_type = error_type
        self.param = param


class AuthenticationFailed(APIError):
    """The server was started with ``--api-key`` and ours is missing or wrong."""


class RuntimeUpdatesDisabled(APIError):
    """The server runs without ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=true``: no load/unload routes."""


class AdapterNotFound(APIError):
    """The adapter path does not exist or holds no adapter, as seen by the server."""


class AdapterAlreadyLoaded(APIError):
    """An adapter with that name is already loaded on the server."""


class AdapterRankTooHigh(APIError):
    """The adapter's rank is above the server's ``--max-lora-rank``."""


class UnknownModel(APIError):
    """No base model or adapter of that name is served (chat, or unload of an unknown name)."""


class InvalidResponse(VLLMError):
    """The server answered something this client cannot read (not vLLM, or a proxy error page)."""


# ---------------------------------------------------------------------------------------------
# Typed results


class ModelCard(BaseModel):
    id: str
    root: str | None = None
    parent: str | None = None
    max_model_len: int | None = None

    @property
    def is_adapter(self) -> bool:
        return self.parent is not None


class HealthReport(BaseModel):
    url: str
    up: bool
    latency_ms: float | None = None
    version: str | None = None
    base_models: list[str] = Field(default_factory=list)
    adapters: list[str] = Field(default_factory=list)
    expected: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    error: str | None = None

    @property
    def healthy(self) -> bool:
        """Up and serving every expected adapter: the spec's ``health_check() -> bool``."""
        return self.up and not self.missing


class LoadResult(BaseModel):
    url: str
    name: str
    path: str | None = None
    latency_ms: float
    message: str = ""


class WarmupResult(BaseModel):
    url: str
    name: str
    ok: bool
    latency_ms: float
    error: str | None = None


class ChatResult(BaseModel):
    url: str
    model: str
    text: str
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


class Histogram(BaseModel):
    """A Prometheus histogram summed over label sets: cumulative bucket counts by upper bound."""

    buckets: dict[float, float] = Field(default_factory=dict)
    sum: float = 0.0
    count: float = 0.0


class MetricsSnapshot(BaseModel):
    url: str
    scraped_at: float
    max_lora: int | None = None
    running_adapters: list[str] = Field(default_factory=list)
    waiting_adapters: list[str] = Field(default_factory=list)
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None
    prefix_cache_queries: float | None = None
    prefix_cache_hits: float | None = None
    histograms: dict[str, Histogram] = Field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Shared request/response handling


def _error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """(message, type, param) from any of vLLM's error shapes, or the raw text."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return (response.text.strip()[:500] or response.reason_phrase, None, None)
    if isinstance(body, dict):
        err = body.get("error") if isinstance(body.get("error"), dict) else body
        message = err.get("message") or err.get("detail") or json.dumps(body)[:500]
        if isinstance(message, list):  # FastAPI validation errors
            message = "; ".join(str(item.get("msg", item)) for item in message)
        return (str(message), err.get("type"), err.get("param"))
    return (str(body)[:500], None, None)


def raise_for_response(response: httpx.Response, *, action: str) -> None:
    """Raise the typed error for a failed admin call; return quietly on 2xx."""
    if response.is_success:
        return
    url = str(response.request.url)
    message, error_type, param = _error_fields(response)
    status = response.status_code
    kwargs = dict(url=url, status=status, error_type=error_type, param=param)
    text = f"{action} failed ({status}): {message}"
    lowered = message.lower()
    if status in (401, 403):
        raise AuthenticationFailed(text, **kwargs)
    if status == 404 and message == "Not Found" and "lora_adapter" in url:
        raise RuntimeUpdatesDisabled(
            f"{action} failed: the server has no runtime LoRA routes; start it with "
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING=true", **kwargs)
    if "max_lora_rank" in lowered or "greater than max" in lowered:
        raise AdapterRankTooHigh(text, **kwargs)
    if "already been loaded" in lowered or "load_inplace" in lowered:
        raise AdapterAlreadyLoaded(text, **kwargs)
    if status == 404 and ("no adapter found" in lowered or "failed" in lowered and "lora" in lowered):
        raise AdapterNotFound(text, **kwargs)
    if status == 404 or "does not exist" in lowered or param == "model":
        raise UnknownModel(text, **kwargs)
    raise APIError(text, **kwargs)


def _models_from_response(response: httpx.Response, url: str) -> list[ModelCard]:
    try:
        return [ModelCard.model_validate(card) for card in response.json()["data"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidResponse(f"{url}/v1/models did not return a model list: {exc}", url=url) from exc


def _health_report(url: str, cards: list[ModelCard], expected: Iterable[str], latency_ms: float,
                   version: str | None) -> HealthReport:
    adapters = sorted(card.id for card in cards if card.is_adapter)
    expected = sorted(set(expected))
    return HealthReport(
        url=url, up=True, latency_ms=latency_ms, version=version,
        base_models=sorted(card.id for card in cards if not card.is_adapter),
        adapters=adapters, expected=expected,
        missing=sorted(set(expected) - set(adapters)),
    )


def parse_metrics(text: str, url: str = "") -> MetricsSnapshot:
    """Read vLLM's Prometheus exposition into the figures this project uses."""
    snap = MetricsSnapshot(url=url, scraped_at=time.time())
    lora_info: tuple[float, dict[str, str]] | None = None
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise InvalidResponse(f"{url}/metrics is not Prometheus text: {exc}", url=url) from exc
    for family in families:
        name = family.name
        if name == "vllm:lora_requests_info":
            # The gauge's VALUE is the time of its last update and old label sets stay, so the
            # current state is the sample with the largest value.
            for sample in family.samples:
                if lora_info is None or sample.value > lora_info[0]:
                    lora_info = (sample.value, sample.labels)
        elif name in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                      "vllm:kv_cache_usage_perc", "vllm:prefix_cache_queries",
                      "vllm:prefix_cache_hits"):
            total = sum(s.value for s in family.samples if not s.name.endswith("_created"))
            field = {
                "vllm:num_requests_running": "requests_running",
                "vllm:num_requests_waiting": "requests_waiting",
                "vllm:kv_cache_usage_perc": "kv_cache_usage",
                "vllm:prefix_cache_queries": "prefix_cache_queries",
                "vllm:prefix_cache_hits": "prefix_cache_hits",
            }[name]
            setattr(snap, field, total)
        elif family.type == "histogram" and name.startswith("vllm:"):
            hist = Histogram()
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    hist.buckets[bound] = hist.buckets.get(bound, 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    hist.sum += sample.value
                elif sample.name.endswith("_count"):
                    hist.count += sample.value
            snap.histograms[name.removeprefix("vllm:")] = hist
    if lora_info is not None:
        labels = lora_info[1]
        snap.max_lora = int(float(labels.get("max_lora", "0") or 0)) or None
        snap.running_adapters = _split_names(labels.get("running_lora_adapters", ""))
        snap.waiting_adapters = _split_names(labels.get("waiting_lora_adapters", ""))
    return snap


def _split_names(joined: str) -> list[str]:
    return sorted(name for name in joined.split(",") if name)


def _transport_error(exc: Exception, url: str, action: str) -> VLLMError:
    if isinstance(exc, (httpx.TimeoutException, openai.APITimeoutError)):
        return ServerTimeout(f"{action}: {url} did not answer in time", url=url)
    return ServerUnreachable(f"{action}: cannot reach {url} ({type(exc).__name__}: {exc})", url=url)


def _openai_error(exc: openai.APIStatusError, url: str, model: str) -> VLLMError:
    message, error_type, param = _error_fields(exc.response)
    kwargs = dict(url=url, status=exc.status_code, error_type=error_type, param=param)
    if exc.status_code in (401, 403):
        return AuthenticationFailed(f"chat with {model!r} refused ({exc.status_code}): {message}", **kwargs)
    if exc.status_code == 404:
        return UnknownModel(f"{url} does not serve {model!r}: {message}", **kwargs)
    return APIError(f"chat with {model!r} failed ({exc.status_code}): {message}", **kwargs)


def _chat_result(url: str, model: str, completion: Any, latency_ms: float) -> ChatResult:
    choice = completion.choices[0] if completion.choices else None
    usage = completion.usage
    return ChatResult(
        url=url, model=model, latency_ms=latency_ms,
        text=(choice.message.content or "") if choice else "",
        finish_reason=choice.finish_reason if choice else None,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
    )


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


WARMUP_PROMPT = [{"role": "user", "content": "x"}]


# ---------------------------------------------------------------------------------------------
# Blocking client


class VLLMClient:
    """A blocking client for one vLLM server. Use as a context manager, or call :meth:`close`.

    The API key is kept out of ``repr`` and of every error message.
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.Client(base_url=self.url, headers=_headers(api_key), timeout=timeout,
                                  transport=transport)
        self._openai = openai.OpenAI(base_url=self.url + "/v1", api_key=api_key or "EMPTY",
                                     timeout=timeout, max_retries=0, http_client=httpx.Client(
                                         timeout=timeout, transport=transport))
        self._api_key = api_key

    def __repr__(self) -> str:
        return f"VLLMClient({self.url!r})"

    def __enter__(self) -> VLLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()
        self._openai.close()

    def _request(self, method: str, path: str, action: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url, action) from exc
        raise_for_response(response, action=action)
        return response

    def ping(self) -> float:
        """GET /health; the round trip in ms."""
        start = time.perf_counter()
        self._request("GET", "/health", "health")
        return _ms_since(start)

    def version(self) -> str | None:
        try:
            return self._request("GET", "/version", "version").json().get("version")
        except (APIError, ValueError):
            return None

    def list_models(self) -> list[ModelCard]:
        return _models_from_response(self._request("GET", "/v1/models", "list models"), self.url)

    def list_adapters(self) -> list[ModelCard]:
        return [card for card in self.list_models() if card.is_adapter]

    def base_model(self) -> ModelCard:
        for card in self.list_models():
            if not card.is_adapter:
                return card
        raise InvalidResponse(f"{self.url} lists no base model", url=self.url)

    def health_check(self, expected_adapters: Iterable[str] = ()) -> HealthReport:
        """Never raises: a server that is down is a report with ``up=False``."""
        expected = list(expected_adapters)
        try:
            latency = self.ping()
            cards = self.list_models()
        except VLLMError as exc:
            return HealthReport(url=self.url, up=False, expected=sorted(set(expected)),
                                missing=sorted(set(expected)), error=exc.message)
        return _health_report(self.url, cards, expected, latency, self.version())

    def load_adapter(self, name: str, path: str) -> LoadResult:
        start = time.perf_counter()
        response = self._request("POST", "/v1/load_lora_adapter", f"load {name!r} on {self.url}",
                                 json={"lora_name": name, "lora_path": path})
        return LoadResult(url=self.url, name=name, path=path, latency_ms=_ms_since(start),
                          message=response.text.strip())

    def unload_adapter(self, name: str) -> LoadResult:
        start = time.perf_counter()
        response = self._request("POST", "/v1/unload_lora_adapter", f"unload {name!r} on {self.url}",
                                 json={"lora_name": name})
        return LoadResult(url=self.url, name=name, latency_ms=_ms_since(start),
                          message=response.text.strip())

    def chat(self, model: str, messages: Sequence[dict[str, str]] | str, *, max_tokens: int = 64,
             temperature: float = 0.0, **extra: Any) -> ChatResult:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        start = time.perf_counter()
        try:
            completion = self._openai.chat.completions.create(
                model=model, messages=list(messages), max_tokens=max_tokens,
                temperature=temperature, **extra)
        except openai.APIStatusError as exc:
            raise _openai_error(exc, self.url, model) from exc
        except openai.APIConnectionError as exc:
            raise _transport_error(exc, self.url, f"chat with {model!r}") from exc
        return _chat_result(self.url, model, completion, _ms_since(start))

    def warmup(self, names: Iterable[str]) -> list[WarmupResult]:
        """One 1-token request per adapter, all in parallel; one failure never fails the rest."""
        return _run_sync(_warmup_with_new_client(self.url, self._api_key, self.timeout, list(names)))

    def metrics_text(self) -> str:
        return self._request("GET", "/metrics", "scrape metrics").text

    def scrape_metrics(self) -> MetricsSnapshot:
        return parse_metrics(self.metrics_text(), self.url)


# ---------------------------------------------------------------------------------------------
# Async client


class AsyncVLLMClient:
    """The async twin of :class:`VLLMClient`, for event-loop code (dispatchers, warm-up)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 30.0,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(api_key), timeout=timeout,
                                       transport=transport)
        self._openai = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=api_key or "EMPTY",
                                          timeout=timeout, max_retries=0,
                                          http_client=httpx.AsyncClient(timeout=timeout,
                                                                        transport=transport))

    def __repr__(self) -> str:
        return f"AsyncVLLMClient({self.url!r})"

    async def __aenter__(self) -> AsyncVLLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._openai.close()

    async def _request(self, method: str, path: str, action: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, self.url, action) from exc
        raise_for_response(response, action=action)
        return response

    async def ping(self) -> float:
        start = time.perf_counter()
        await self._request("GET", "/health", "health")
        return _ms_since(start)

    async def version(self) -> str | None:
        try:
            return (await self._request("GET", "/version", "version")).json().get("version")
        except (APIError, ValueError):
            return None

    async def list_models(self) -> list[ModelCard]:
        response = await self._request("GET", "/v1/models", "list models")
        return _models_from_response(response, self.url)

    async def list_adapters(self) -> list[ModelCard]:
        return [card for card in await self.list_models() if card.is_adapter]

    async def health_check(self, expected_adapters: Iterable[str] = ()) -> HealthReport:
        expected = list(expected_adapters)
        try:
            latency = await self.ping()
            cards = await self.list_models()
        except VLLMError as exc:
            return HealthReport(url=self.url, up=False, expected=sorted(set(expected)),
                                missing=sorted(set(expected)), error=exc.message)
        return _health_report(self.url, cards, expected, latency, await self.version())

    async def load_adapter(self, name: str, path: str) -> LoadResult:
        start = time.perf_counter()
        response = await self._request("POST", "/v1/load_lora_adapter",
                                       f"load {name!r} on {self.url}",
                                       json={"lora_name": name, "lora_path": path})
        return LoadResult(url=self.url, name=name, path=path, latency_ms=_ms_since(start),
                          message=response.text.strip())

    async def unload_adapter(self, name: str) -> LoadResult:
        start = time.perf_counter()
        response = await self._request("POST", "/v1/unload_lora_adapter",
                                       f"unload {name!r} on {self.url}", json={"lora_name": name})
        return LoadResult(url=self.url, name=name, latency_ms=_ms_since(start),
                          message=response.text.strip())

    async def chat(self, model: str, messages: Sequence[dict[str, str]] | str, *,
                   max_tokens: int = 64, temperature: float = 0.0, **extra: Any) -> ChatResult:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        start = time.perf_counter()
        try:
            completion = await self._openai.chat.completions.create(
                model=model, messages=list(messages), max_tokens=max_tokens,
                temperature=temperature, **extra)
        except openai.APIStatusError as exc:
            raise _openai_error(exc, self.url, model) from exc
        except openai.APIConnectionError as exc:
            raise _transport_error(exc, self.url, f"chat with {model!r}") from exc
        return _chat_result(self.url, model, completion, _ms_since(start))

    async def warmup(self, names: Iterable[str]) -> list[WarmupResult]:
        async def one(name: str) -> WarmupResult:
            start = time.perf_counter()
            try:
                await self.chat(name, WARMUP_PROMPT, max_tokens=1)
            except VLLMError as exc:
                return WarmupResult(url=self.url, name=name, ok=False,
                                    latency_ms=_ms_since(start), error=exc.message)
            return WarmupResult(url=self.url, name=name, ok=True, latency_ms=_ms_since(start))

        return list(await asyncio.gather(*(one(name) for name in names)))

    async def scrape_metrics(self) -> MetricsSnapshot:
        response = await self._request("GET", "/metrics", "scrape metrics")
        return parse_metrics(response.text, self.url)


def _run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from blocking code, also where this thread already runs an
    event loop (Jupyter, Playwright's sync API, some servers): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _warmup_with_new_client(url: str, api_key: str | None, timeout: float,
                                  names: list[str]) -> list[WarmupResult]:
    async with AsyncVLLMClient(url, api_key=api_key, timeout=timeout) as client:
        return await client.warmup(names)


# ---------------------------------------------------------------------------------------------
# A fleet: replicas of one base model


class Fleet:
    """The configured servers, addressed together. Blocking; one :class:`VLLMClient` per URL."""

    def __init__(self, urls: Sequence[str], *, api_key: str | None = None, timeout: float = 30.0):
        self.clients = [VLLMClient(url, api_key=api_key, timeout=timeout) for url in urls]

    @classmethod
    def from_settings(cls, settings: Any) -> Fleet:
        return cls(settings.vllm_urls, api_key=settings.api_key, timeout=settings.timeout)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def __iter__(self):
        return iter(self.clients)

    def __len__(self) -> int:
        return len(self.clients)

    @property
    def urls(self) -> list[str]:
        return [client.url for client in self.clients]

    def client(self, url: str) -> VLLMClient:
        for client in self.clients:
            if client.url == url.rstrip("/"):
                return client
        raise KeyError(f"{url} is not one of the configured servers: {', '.join(self.urls)}")

    def health(self, expected_adapters: Iterable[str] = ()) -> list[HealthReport]:
        expected = list(expected_adapters)
        return [client.health_check(expected) for client in self.clients]
