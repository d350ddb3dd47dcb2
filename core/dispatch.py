"""Dispatch: route a task, send it to a server through the chosen adapter (or the base model),
measure it, and record what happened.

vLLM keeps no per-adapter latency or success figures (notes/vllm.md), so the outcome recorded
here, by the client that sent the request, is the source of every per-specialist metric.
When the server answers that the routed adapter does not exist (unloaded, or lost in a restart),
the task is answered by the base model instead and recorded as an ``adapter_not_on_server``
fallback, so nothing is dropped and the gap is visible.
"""

from __future__ import annotations

import hashlib
import time

from pydantic import BaseModel

from core.registry import Outcome, Registry
from core.evidence import Task
from core.router import ADAPTER_NOT_ON_SERVER, RouteDecision, Router
from core.vllm import Fleet, UnknownModel, VLLMClient, VLLMError


class DispatchResult(BaseModel):
    decision: RouteDecision
    server: str
    model: str
    ok: bool
    answer: str | None = None
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallback_reason: str | None = None
    error: str | None = None
    outcome_id: int | None = None

    @property
    def answered_by_adapter(self) -> bool:
        return self.fallback_reason is None and self.decision.served_name is not None


class Dispatcher:
    def __init__(self, router: Router, fleet: Fleet, registry: Registry | None = None):
        if not len(fleet):
            raise VLLMError("dispatch needs at least one vLLM server (HI_MOE_VLLM_URLS)")
        self.router = router
        self.fleet = fleet
        self.registry = registry
        self._base: dict[str, str] = {}

    def base_model(self, client: VLLMClient) -> str:
        if client.url not in self._base:
            self._base[client.url] = client.base_model().id
        return self._base[client.url]

    def client_for(self, task_key: str) -> VLLMClient:
        """Spread tasks over the replicas; the same task always goes to the same server."""
        clients = self.fleet.clients
        digest = hashlib.sha256(task_key.encode()).digest()
        return clients[int.from_bytes(digest[:4], "big") % len(clients)]

    def dispatch(self, task: Task, *, max_tokens: int = 64, temperature: float = 0.0,
                 record: bool = True) -> DispatchResult:
        decision = self.router.route(task)
        return self.send(task, decision, max_tokens=max_tokens, temperature=temperature,
                         record=record)

    def send(self, task: Task, decision: RouteDecision, *, max_tokens: int = 64,
             temperature: float = 0.0, record: bool = True) -> DispatchResult:
        client = self.client_for(task.id or task.objective)
        fallback = decision.fallback_reason
        model = decision.served_name or self.base_model(client)
        start = time.perf_counter()
        try:
            try:
                answer = client.chat(model, task.objective, max_tokens=max_tokens,
                                     temperature=temperature)
            except UnknownModel:
                if decision.served_name is None:
                    raise
                fallback = ADAPTER_NOT_ON_SERVER
                model = self.base_model(client)
                answer = client.chat(model, task.objective, max_tokens=max_tokens,
                                     temperature=temperature)
        except VLLMError as exc:
            result = DispatchResult(decision=decision, server=client.url, model=model, ok=False,
                                    latency_ms=(time.perf_counter() - start) * 1000,
                                    fallback_reason=fallback, error=exc.message)
        else:
            result = DispatchResult(
                decision=decision, server=client.url, model=model, ok=True, answer=answer.text,
                latency_ms=(time.perf_counter() - start) * 1000, fallback_reason=fallback,
                prompt_tokens=answer.prompt_tokens, completion_tokens=answer.completion_tokens)
        if record and self.registry is not None:
            self._record(task, result)
        return result

    def _record(self, task: Task, result: DispatchResult) -> None:
        decision = result.decision
        by_adapter = result.fallback_reason is None and decision.served_name is not None
        if decision.fallback_reason is not None:
            # The spec's routing gap: no specialist for this task.
            self.registry.record_gap(task.objective, reason=decision.fallback_reason,
                                     extracted_domains=list(decision.extraction.scores),
                                     context_refs=task.context_refs, task_id=task.id)
        result.outcome_id = self.registry.record_outcome(Outcome(
            adapter_id=decision.lora_int_id if by_adapter else None,
            specialist=decision.specialist if by_adapter else None,
            success=result.ok, latency_ms=result.latency_ms, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            fallback=result.fallback_reason is not None, fallback_reason=result.fallback_reason,
            task_id=task.id, server=result.server))
