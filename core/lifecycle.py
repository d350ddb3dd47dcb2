"""Lifecycle operations that keep the registry and the vLLM servers in step.

The rule: the server action comes first, the registry change second. Promote, rollback and
canary first make sure the version is loaded on EVERY server; if any load fails, what this
operation loaded is unloaded again, the operation is refused and the registry is untouched. So
the registry never says "live" for an adapter a server cannot serve.

With no server configured (``HI_MOE_VLLM_URLS=none``) the same commands change only the registry
and say so in their report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.adapter_files import AdapterManifest, AdapterValidationError, check_shapes, read_adapter
from core.architecture import ModelShape, load_shape, resolve_preset
from core.errors import HiMoeError
from core.registry import (
    AdapterVersion,
    Registry,
    RegistryError,
    semver_key,
    served_name,
    specialist_from_folder,
    validate_name,
    validate_version,
    version_from_folder,
)
from core.vllm import AdapterAlreadyLoaded, Fleet, UnknownModel, VLLMError

SEED_FLEET = Path(__file__).with_name("data") / "fleet.json"


def seed_fleet() -> list[dict[str, Any]]:
    return json.loads(SEED_FLEET.read_text())["specialists"]


def default_domains(name: str) -> list[str]:
    for spec in seed_fleet():
        if spec["name"] == name:
            return list(spec["domains"])
    return [name.removesuffix("-lora")]


class OperationReport(BaseModel):
    """What an operation did, step by step, for the CLI and the console."""

    action: str
    target: str
    ok: bool = True
    registry_only: bool = False
    steps: list[str] = Field(default_factory=list)
    version: AdapterVersion | None = None
    previous: AdapterVersion | None = None


class ServerDrift(BaseModel):
    server: str
    up: bool
    error: str | None = None
    expected: list[str] = Field(default_factory=list)
    loaded: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)     # live in the registry, not on the server
    stale: list[str] = Field(default_factory=list)       # registered, not live, still loaded
    unknown: list[str] = Field(default_factory=list)     # loaded, not in the registry at all
    wrong_path: list[str] = Field(default_factory=list)  # served from another path than registered

    @property
    def in_step(self) -> bool:
        return self.up and not (self.missing or self.unknown or self.wrong_path)


class SyncReport(BaseModel):
    server: str
    up: bool
    loaded: list[str] = Field(default_factory=list)
    unloaded: list[str] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    error: str | None = None


class ImportReport(BaseModel):
    registered: list[AdapterVersion] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    errors: dict[str, str] = Field(default_factory=dict)


class Operations:
    """Registry + fleet. ``fleet`` may be empty: then only the registry changes."""

    def __init__(self, registry: Registry, fleet: Fleet, *, adapter_roots: list[Path],
                 max_lora_rank: int = 64, base_model: str | None = None,
                 resolver_dir: Path | None = None):
        self.registry = registry
        self.fleet = fleet
        self.resolver_dir = Path(resolver_dir) if resolver_dir else None
        self.adapter_roots = [Path(root).resolve() for root in adapter_roots]
        self.max_lora_rank = max_lora_rank
        self.base_model = base_model

    @classmethod
    def from_settings(cls, settings: Any, registry: Registry | None = None,
                      fleet: Fleet | None = None) -> Operations:
        return cls(registry or Registry.from_settings(settings),
                   fleet if fleet is not None else Fleet.from_settings(settings),
                   adapter_roots=settings.roots, max_lora_rank=settings.max_lora_rank,
                   base_model=settings.base_model, resolver_dir=settings.resolver_dir)

    def close(self) -> None:
        self.registry.close()
        self.fleet.close()

    def __enter__(self) -> Operations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def has_servers(self) -> bool:
        return len(self.fleet) > 0

    # -- validation and registration -------------------------------------------------------------

    def _served_base(self) -> tuple[set[str], list[str]]:
        """Names and paths the servers serve as base model, and servers that did not answer."""
        names: set[str] = set()
        down: list[str] = []
        for client in self.fleet:
            try:
                base = client.base_model()
            except VLLMError as exc:
                down.append(f"{client.url} ({exc.message})")
                continue
            names.update(filter(None, [base.id, base.root]))
        return names, down

    def validate(self, path: Path, *, name: str | None = None,
                 version: str | None = None) -> tuple[AdapterManifest, str, str, list[str]]:
        """Every check before anything is written; raises with a message naming the problem."""
        path = Path(path)
        resolved = path.resolve()
        name = name or specialist_from_folder(resolved.parent.name)
        version = version or version_from_folder(resolved.name)
        validate_name(name)
        validate_version(version)
        if not any(resolved.is_relative_to(root) for root in self.adapter_roots):
            roots = ", ".join(str(r) for r in self.adapter_roots) or "none configured"
            raise RegistryError(f"{path} resolves to {resolved}, outside the adapter roots "
                                f"({roots}); set HI_MOE_ADAPTER_ROOTS or move the adapter")
        manifest = read_adapter(resolved)
        problems: list[str] = []
        if manifest.rank > self.max_lora_rank:
            problems.append(f"rank {manifest.rank} is above the servers' --max-lora-rank "
                            f"{self.max_lora_rank}")
        if self.has_servers:
            served, down = self._served_base()
            if down and not served:
                raise RegistryError("cannot check the base model: no configured server answers ("
                                    + "; ".join(down) + "); start one, or register offline "
                                    "with HI_MOE_VLLM_URLS=none")
            if manifest.base_model not in served:
                problems.append(f"base model {manifest.base_model!r} is not the served base "
                                f"model ({', '.join(sorted(served))})")
        elif self.base_model and manifest.base_model != self.base_model:
            problems.append(f"base model {manifest.base_model!r} is not the configured base "
                            f"model {self.base_model!r}")
        shape = self._base_shape(manifest.base_model)
        if shape is not None:
            problems += check_shapes(manifest, shape)
        if problems:
            raise AdapterValidationError(path, problems)
        domains = manifest.domains or default_domains(name)
        return manifest, name, version, domains

    @staticmethod
    def _base_shape(base_model: str) -> ModelShape | None:
        if resolve_preset(base_model) is not None or Path(base_model, "config.json").is_file():
            try:
                return load_shape(base_model)
            except HiMoeError:
                return None
        return None

    def register(self, path: Path, *, name: str | None = None, version: str | None = None,
                 domains: list[str] | None = None, description: str | None = None) -> AdapterVersion:
        manifest, name, version, default = self.validate(path, name=name, version=version)
        return self.registry.register(manifest, name=name, version=version,
                                      domains=domains or default,
                                      description=description or manifest.description)

    def import_root(self, root: Path) -> ImportReport:
        """Register every ``ROOT/<specialist>/vX.Y.Z/`` not yet registered; report the rest."""
        report = ImportReport()
        root = Path(root)
        if not root.is_dir():
            raise RegistryError(f"{root} is not a folder")
        known = {v.path for v in self.registry.versions()}
        for spec_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for version_dir in sorted((p for p in spec_dir.iterdir() if p.is_dir()),
                                      key=lambda p: _version_sort(p.name)):
                label = f"{spec_dir.name}/{version_dir.name}"
                if str(version_dir.resolve()) in known:
                    report.skipped.append(label)
                    continue
                try:
                    report.registered.append(self.register(version_dir))
                except HiMoeError as exc:
                    report.errors[label] = exc.message
        return report

    # -- keeping servers in step ----------------------------------------------------------------

    def ensure_loaded(self, version: AdapterVersion, steps: list[str]) -> None:
        """Load ``version`` on every server that lacks it; on any failure undo this call's loads
        and raise, so the caller changes nothing."""
        done: list[tuple[Any, str]] = []
        for client in self.fleet:
            try:
                loaded = {card.id for card in client.list_adapters()}
                if version.served_name in loaded:
                    steps.append(f"{client.url}: {version.served_name} already loaded")
                    continue
                result = self._load(client, version)
            except AdapterAlreadyLoaded:
                steps.append(f"{client.url}: {version.served_name} already loaded")
                continue
            except VLLMError as exc:
                for undo_client, name in done:
                    try:
                        undo_client.unload_adapter(name)
                        steps.append(f"{undo_client.url}: unloaded {name} again")
                    except VLLMError:
                        steps.append(f"{undo_client.url}: could not unload {name} again")
                raise RegistryError(f"refused: {version.served_name} could not be loaded on "
                                    f"{client.url}: {exc.message}. Nothing was changed.") from exc
            done.append((client, version.served_name))
            steps.append(f"{client.url}: loaded {version.served_name} in {result.latency_ms:.0f} ms")

    def _load(self, client: Any, version: AdapterVersion) -> Any:
        """Load one version on one server and record the call (adapter_load_latency_ms); an
        "already loaded" answer is no load and is not recorded."""
        try:
            result = client.load_adapter(version.served_name, version.path)
        except AdapterAlreadyLoaded:
            raise
        except VLLMError as exc:
            self.registry.record_load(server=client.url, served=version.served_name, action="load",
                                      ok=False, latency_ms=None, error=exc.message,
                                      adapter_id=version.lora_int_id)
            raise
        self.registry.record_load(server=client.url, served=version.served_name, action="load",
                                  ok=True, latency_ms=result.latency_ms,
                                  adapter_id=version.lora_int_id)
        return result

    def _report(self, action: str, target: str) -> OperationReport:
        report = OperationReport(action=action, target=target, registry_only=not self.has_servers)
        if not self.has_servers:
            report.steps.append("no server configured: only the registry changes")
        return report

    def promote(self, name: str, version: str) -> OperationReport:
        target = self.registry.get(name, version)
        report = self._report("promote", target.served_name)
        if target.retired_at:
            raise RegistryError(f"{target.served_name} is retired; register it again to use it")
        if target.active:
            raise RegistryError(f"{target.served_name} is already the active version")
        self.ensure_loaded(target, report.steps)
        previous, report.version = self.registry.promote(name, version)
        report.previous = previous
        self.publish_links(report.steps)
        report.steps.append(f"registry: {target.served_name} is live"
                            + (f", {previous.served_name} kept loaded for rollback" if previous else ""))
        return report

    def rollback(self, name: str) -> OperationReport:
        current, previous = self.registry.rollback_target(name)
        report = self._report("rollback", previous.served_name)
        self.ensure_loaded(previous, report.steps)
        current, report.version = self.registry.rollback(name)
        report.previous = current
        self.publish_links(report.steps)
        report.steps.append(f"registry: {previous.served_name} is live again "
                            f"(was {current.served_name})")
        return report

    def canary(self, name: str, version: str, share: float) -> OperationReport:
        target = self.registry.get(name, version)
        report = self._report("canary", target.served_name)
        if not 0 < share < 1:
            raise RegistryError(f"canary share must be between 0 and 1 (exclusive), got {share}")
        if target.active:
            raise RegistryError(f"{target.served_name} is the active version; a canary must be "
                                "another version")
        self.ensure_loaded(target, report.steps)
        report.version = self.registry.set_canary(name, version, share)
        self.publish_links(report.steps)
        report.steps.append(f"registry: {target.served_name} gets {share:.0%} of {name}'s tasks")
        return report

    def end_canary(self, name: str) -> OperationReport:
        """Stop sending tasks to NAME's canary (it stays loaded; ``sync --prune`` unloads it)."""
        ended = self.registry.clear_canary(name)
        report = self._report("canary-end", ended.served_name)
        report.version = ended
        report.steps.append(f"registry: {ended.served_name} gets no more tasks")
        self.publish_links(report.steps)
        return report

    def retire(self, name: str, version: str, *, force: bool = False, delete: bool = False,
               unload: bool = True) -> OperationReport:
        report = self._report("delete" if delete else "retire", served_name(name, version))
        report.version = self.registry.retire(name, version, force=force, delete=delete)
        report.steps.append(f"registry: {report.target} {'deleted' if delete else 'retired'}")
        self.publish_links(report.steps)
        if unload:
            for client in self.fleet:
                self._unload(client, report.version, report.steps)
        return report

    def _unload(self, client: Any, version: AdapterVersion, steps: list[str]) -> bool:
        try:
            result = client.unload_adapter(version.served_name)
        except UnknownModel:
            steps.append(f"{client.url}: {version.served_name} was not loaded")
            return False
        except VLLMError as exc:
            steps.append(f"{client.url}: unload of {version.served_name} failed: {exc.message}")
            self.registry.record_load(server=client.url, served=version.served_name,
                                      action="unload", ok=False, latency_ms=None, error=exc.message,
                                      adapter_id=version.lora_int_id)
            return False
        self.registry.record_load(server=client.url, served=version.served_name, action="unload",
                                  ok=True, latency_ms=result.latency_ms,
                                  adapter_id=version.lora_int_id)
        steps.append(f"{client.url}: unloaded {version.served_name}")
        return True

    def reconcile(self) -> list[ServerDrift]:
        """Compare what the registry says must be served with what each server serves."""
        live = {v.served_name: v for v in self.registry.live_versions()}
        registered = {v.served_name: v for v in self.registry.versions()}
        out = []
        for client in self.fleet:
            try:
                cards = client.list_adapters()
            except VLLMError as exc:
                out.append(ServerDrift(server=client.url, up=False, error=exc.message,
                                       expected=sorted(live), missing=sorted(live)))
                continue
            loaded = {card.id: card for card in cards}
            out.append(ServerDrift(
                server=client.url, up=True, expected=sorted(live), loaded=sorted(loaded),
                missing=sorted(set(live) - set(loaded)),
                stale=sorted(n for n in loaded if n in registered and n not in live),
                unknown=sorted(n for n in loaded if n not in registered),
                wrong_path=sorted(n for n, card in loaded.items() if n in registered
                                  and card.root and Path(card.root).resolve()
                                  != Path(registered[n].path).resolve()),
            ))
        return out

    def sync(self, *, prune: bool = False) -> list[SyncReport]:
        """Load what each server is missing (after a restart, say); with ``prune`` also unload
        registered versions that are neither active nor canary."""
        live = {v.served_name: v for v in self.registry.live_versions()}
        registered = {v.served_name: v for v in self.registry.versions()}
        reports = []
        for drift in self.reconcile():
            report = SyncReport(server=drift.server, up=drift.up, error=drift.error)
            reports.append(report)
            if not drift.up:
                continue
            client = self.fleet.client(drift.server)
            for name in drift.missing:
                try:
                    self._load(client, live[name])
                except AdapterAlreadyLoaded:
                    continue
                except VLLMError as exc:
                    report.failed[name] = exc.message
                    continue
                report.loaded.append(name)
            if prune:
                for name in drift.stale:
                    if self._unload(client, registered[name], []):
                        report.unloaded.append(name)
        self.publish_links([])
        self.registry.audit("sync", None, prune=prune, reports=[r.model_dump() for r in reports])
        return reports

    def publish_links(self, steps: list[str]) -> None:
        """Keep one link per live version in vLLM's resolver folder (``NAME@VERSION`` -> its
        path) and none for other versions, so a server that restarted, and lost its
        runtime-loaded adapters, loads a live one on its first request for it."""
        if self.resolver_dir is None:
            return
        self.resolver_dir.mkdir(parents=True, exist_ok=True)
        live = {v.served_name: Path(v.path) for v in self.registry.live_versions()}
        for entry in self.resolver_dir.iterdir():
            # only links this registry made (served names contain '@'); never anything else
            if entry.is_symlink() and "@" in entry.name and live.get(entry.name) != entry.resolve():
                entry.unlink()
        for name, path in live.items():
            link = self.resolver_dir / name
            if not link.is_symlink():
                link.symlink_to(path, target_is_directory=True)
        steps.append(f"resolver: {len(live)} live version(s) linked in {self.resolver_dir}")

    def load(self, name: str, version: str) -> OperationReport:
        """Load one version on every server without changing its status."""
        target = self.registry.get(name, version)
        report = self._report("load", target.served_name)
        self.ensure_loaded(target, report.steps)
        self.registry.audit("load", target.served_name, steps=report.steps)
        return report

    def unload(self, name: str, version: str) -> OperationReport:
        target = self.registry.get(name, version)
        if target.active or target.canary_share is not None:
            raise RegistryError(f"{target.served_name} is {target.status}; unloading it would "
                                "break routing. Promote or end the canary first")
        report = self._report("unload", target.served_name)
        for client in self.fleet:
            self._unload(client, target, report.steps)
        self.registry.audit("unload", target.served_name, steps=report.steps)
        return report


def _version_sort(folder: str) -> tuple:
    return semver_key(version_from_folder(folder))
