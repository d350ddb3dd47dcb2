"""Console page render time in a real browser (Debian's Chromium) with a large registry.

Uses the database that bench_registry.py leaves with --keep (10,000 versions, 1,000,000
outcomes); runs the real console on it with no vLLM server configured (HI_MOE_VLLM_URLS=none) so
only the console and SQLite are measured; for every page, the time from navigation until the
app is idle with the page's title shown, median and worst of 5 loads after one warm-up.
Target (issue 7): under 1.5 s per page.

Run: .venv/bin/python bench/bench_registry.py --keep var/bench/registry.db
     .venv/bin/python bench/bench_console.py [--db var/bench/registry.db]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.test_console_browser import CHROMIUM_ARGS, IDLE  # noqa: E402

PAGES = {"": "Overview", "adapters": "Adapters", "try_task": "Try a task", "alerts": "Alerts",
         "performance": "Performance", "gaps": "Routing gaps", "audit": "Audit log",
         "memory": "Memory planner"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, default=ROOT / "var" / "bench" / "registry.db")
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    if not args.db.exists():
        print(f"{args.db} is missing: run bench/bench_registry.py --keep {args.db} first")
        return 1
    port = free_port()
    env = {**os.environ, "HI_MOE_DB": str(args.db), "HI_MOE_VLLM_URLS": "none"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "console" / "app.py"),
                             "--server.port", str(port), "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                             "--server.fileWatcherType", "none"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(url + "/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        worst_all = 0.0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            print(f"registry {args.db} ({args.db.stat().st_size / 1e6:.0f} MB); {args.loads} loads per page")
            for path, title in PAGES.items():
                times = []
                for i in range(args.loads + 1):
                    start = time.perf_counter()
                    page.goto(f"{url}/{path}")
                    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
                    page.wait_for_selector(IDLE, timeout=60_000)
                    if page.get_by_test_id("stException").count():
                        raise RuntimeError(f"{title}: the page shows an exception")
                    if i:  # the first load warms caches and imports
                        times.append(time.perf_counter() - start)
                worst_all = max(worst_all, max(times))
                print(f"{title:16s} median {statistics.median(times):5.2f} s   worst {max(times):5.2f} s")
            browser.close()
        print(f"slowest page load: {worst_all:.2f} s (target < 1.5 s)")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
