"""All configuration in one place.

Every setting comes from an environment variable with the ``HI_MOE_`` prefix (and can be
overridden per call, which is how the CLI options work). Defaults live under ``var/`` in the
working directory so that ``make demo`` works with no configuration at all.

Settings are read when :func:`load_settings` is called, never at import time: Streamlit pages and
tests change the environment between runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

ENV_PREFIX = "HI_MOE_"

# Documented in the README; each maps to a field of Settings.
ENV_VARS = {
    "HOME": "home",
    "DB": "db",
    "VLLM_URLS": "vllm_urls",
    "VLLM_API_KEY": "vllm_api_key",
    "ADAPTER_ROOTS": "adapter_roots",
    "TIMEOUT": "timeout",
    "OPERATOR": "operator",
    "BASE_MODEL": "base_model",
    "MAX_LORAS": "max_loras",
    "MAX_CPU_LORAS": "max_cpu_loras",
    "MAX_LORA_RANK": "max_lora_rank",
    "EMA_ALPHA": "ema_alpha",
    "SUCCESS_WINDOW": "success_window",
    "MONITOR_INTERVAL": "monitor_interval",
    "WEBHOOK_URL": "webhook_url",
    "OPERATORS": "operators",
    "RESOLVER_DIR": "resolver_dir",
    "ROUTER_LEXICON": "router_lexicon",
    "ROUTER_EXAMPLES": "router_examples",
}


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    home: Path = Field(default=Path("var"), description="Folder for the registry, demo fleet, pids and logs")
    db: Path | None = Field(default=None, description="Registry SQLite file (default: HOME/registry.db)")
    vllm_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8000"])
    vllm_api_key: SecretStr | None = None
    adapter_roots: list[Path] | None = Field(default=None, description="Default: HOME/demo/adapters")
    timeout: float = Field(default=30.0, gt=0, description="Seconds for one admin or chat call")
    operator: str = Field(default_factory=lambda: os.environ.get("USER") or "operator")
    # vLLM does not report its launch flags; these say what the fleet was started with.
    base_model: str | None = Field(default=None, description="Expected base (served name or path) "
                                   "when no server answers; adapters must name it")
    max_loras: int = Field(default=4, ge=1)
    max_cpu_loras: int = Field(default=8, ge=1)
    max_lora_rank: int = Field(default=64, ge=1, le=512)
    ema_alpha: float = Field(default=0.1, gt=0, le=1, description="Weight of a new latency in the EMA")
    success_window: int = Field(default=100, ge=1, description="Outcomes in the rolling success rate")
    monitor_interval: float = Field(default=30.0, gt=0, description="Seconds between monitor cycles")
    webhook_url: str | None = Field(default=None, description="Alert notifications (Slack-compatible)")
    # vLLM's filesystem resolver folder (VLLM_LORA_RESOLVER_CACHE_DIR of the servers): the
    # registry keeps a link per live version there, so a restarted server loads on demand.
    resolver_dir: Path | None = None
    router_lexicon: Path | None = Field(default=None, description="The router's keyword file "
                                        "(default: the packaged core/data/router.toml)")
    router_examples: Path | None = Field(default=None, description="Labelled tasks of your own "
                                         "traffic (JSONL or CSV with an 'expected' domain) that "
                                         "tier 3 also learns from")
    # "name:pbkdf2_sha256$iterations$salt$hash,name2:..." (see console/auth.py); never plain text.
    operators: SecretStr | None = None

    @field_validator("vllm_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            # "none" means no server at all: lifecycle commands then change only the registry.
            value = [part for part in value.replace(",", " ").split() if part.lower() != "none"]
        if isinstance(value, list):
            value = [str(url).rstrip("/") for url in value if str(url).lower() != "none"]
            for url in value:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"vLLM URL {url!r} must start with http:// or https://")
        return value

    @field_validator("adapter_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part for part in value.split(os.pathsep) if part]
        return value

    @property
    def db_path(self) -> Path:
        return self.db if self.db is not None else self.home / "registry.db"

    @property
    def demo_dir(self) -> Path:
        return self.home / "demo"

    @property
    def roots(self) -> list[Path]:
        if self.adapter_roots is not None:
            return list(self.adapter_roots)
        return [self.demo_dir / "adapters"]

    @property
    def api_key(self) -> str | None:
        return self.vllm_api_key.get_secret_value() if self.vllm_api_key else None


def load_settings(**overrides: Any) -> Settings:
    """Settings from ``HI_MOE_*`` environment variables, then ``overrides`` (None means unset)."""
    values: dict[str, Any] = {}
    for suffix, field in ENV_VARS.items():
        raw = os.environ.get(ENV_PREFIX + suffix)
        if raw not in (None, ""):
            values[field] = raw
    values.update({key: value for key, value in overrides.items() if value is not None})
    return Settings(**values)
