"""Several processes on one registry file: ids never reused, one active version, and a writer
killed mid-transaction leaves a consistent file."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap

from core.registry import Registry
from tests.helpers import manifest

WORKERS = 4
ROUNDS = 25


def _register_and_delete(path: str, worker: int, out) -> None:
    got = []
    with Registry.open(path, operator=f"w{worker}") as reg:
        for i in range(ROUNDS):
            version = reg.register(manifest(f"/a/w{worker}/v{i}"), name=f"w{worker}-lora",
                                   version=f"1.0.{i}", domains=["x"])
            got.append(version.lora_int_id)
            if i % 2:
                reg.retire(version.name, version.version, delete=True)
    out.put(got)


def test_concurrent_register_and_delete_never_reuse_an_id(tmp_path):
    path = str(tmp_path / "r.db")
    Registry.open(path).close()
    out = mp.Queue()
    procs = [mp.Process(target=_register_and_delete, args=(path, w, out)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    per_worker = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    all_ids = [i for ids in per_worker for i in ids]
    assert len(all_ids) == len(set(all_ids)) == WORKERS * ROUNDS
    assert sorted(all_ids) == list(range(1, WORKERS * ROUNDS + 1))
    for ids in per_worker:  # each process saw strictly increasing ids
        assert ids == sorted(ids)
    with Registry.open(path) as reg:
        assert len(reg.versions()) == WORKERS * ((ROUNDS + 1) // 2)
        assert reg.next_id_preview() == WORKERS * ROUNDS + 1


def _promote_loop(path: str, version: str, rounds: int) -> None:
    with Registry.open(path) as reg:
        for _ in range(rounds):
            if reg.get_active("python-lora").version != version:
                reg.promote("python-lora", version)


def test_two_processes_promoting_at_once_leave_exactly_one_active(tmp_path):
    path = str(tmp_path / "r.db")
    with Registry.open(path) as reg:
        for v in ("1.0.0", "1.1.0", "1.2.0"):
            reg.register(manifest(f"/a/python/v{v}"), name="python-lora", version=v, domains=["python"])
        reg.promote("python-lora", "1.0.0")
    procs = [mp.Process(target=_promote_loop, args=(path, v, 40)) for v in ("1.1.0", "1.2.0")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with Registry.open(path) as reg:
        active = [v for v in reg.versions("python-lora") if v.active]
        assert len(active) == 1
        promotes = reg.audit_log(action="promote", limit=10_000)
        assert len(promotes) >= 3


KILLED_PROMOTE = textwrap.dedent("""
    import sys, time
    from core.registry import Registry
    reg = Registry.open(sys.argv[1])
    original = reg._audit
    def stall(*args, **kwargs):
        original(*args, **kwargs)   # the promote's writes are done, the commit is not
        print("inside", flush=True)
        time.sleep(120)
    reg._audit = stall
    reg.promote("python-lora", "1.1.0")
""")


def test_process_killed_mid_promote_leaves_registry_consistent(tmp_path):
    path = str(tmp_path / "r.db")
    with Registry.open(path) as reg:
        for v in ("1.0.0", "1.1.0"):
            reg.register(manifest(f"/a/python/v{v}"), name="python-lora", version=v, domains=["python"])
        reg.promote("python-lora", "1.0.0")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PROMOTE, path], stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    assert proc.stdout.readline().strip() == "inside"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Registry.open(path) as reg:
        assert reg.db.execute("pragma integrity_check").fetchone()[0] == "ok"
        assert [v.version for v in reg.versions("python-lora") if v.active] == ["1.0.0"]
        assert reg.get("python-lora", "1.1.0").previous_version is None
        assert [e.action for e in reg.audit_log()].count("promote") == 1
        # and the file is writable again: the killed writer's lock is gone
        reg.promote("python-lora", "1.1.0")
        assert reg.get_active("python-lora").version == "1.1.0"
