"""Helpers every page shares: settings, registry and fleet handles, sign-in, formatting.

Settings are read per run (never at import): AppTest and the browser tests point the same
process at different databases and servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import streamlit as st

from console.auth import OperatorConfigError, authenticate, parse_operators
from core.config import Settings, load_settings
from core.errors import HiMoeError
from core.registry import Registry
from core.evidence import Lexicon
from core.router import Router, RoutingTable
from core.vllm import Fleet

FLEET_TIMEOUT = 10.0


def settings() -> Settings:
    return load_settings()


@contextmanager
def registry() -> Iterator[Registry]:
    cfg = settings()
    operator = st.session_state.get("operator") or "console"
    with Registry.open(cfg.db_path, operator=operator, ema_alpha=cfg.ema_alpha,
                       success_window=cfg.success_window) as reg:
        yield reg


def router(extra: Iterable[tuple[str, str, float]] = (), embedder: Any = None) -> Router:
    """The dispatcher's router: the live versions, the keyword file and the operators' keywords
    (plus ``extra`` ones, to try a keyword before adding it)."""
    with registry() as reg:
        table = RoutingTable.from_registry(reg)
        lexicon = Lexicon.for_registry(reg, settings().router_lexicon, extra=extra)
    return Router(table, lexicon=lexicon, embedder=embedder)


@contextmanager
def fleet() -> Iterator[Fleet]:
    cfg = settings()
    with Fleet(cfg.vllm_urls, api_key=cfg.api_key, timeout=min(cfg.timeout, FLEET_TIMEOUT)) as f:
        yield f


@contextmanager
def operations() -> Iterator[Any]:
    from core.lifecycle import Operations

    cfg = settings()
    with registry() as reg, fleet() as fl:
        yield Operations(reg, fl, adapter_roots=cfg.roots, max_lora_rank=cfg.max_lora_rank,
                         base_model=cfg.base_model)


def page_header(title: str, help_text: str) -> None:
    st.title(title)
    st.caption(help_text)


@contextmanager
def operator_errors() -> Iterator[None]:
    """Show an operator-facing error as a message, not a traceback."""
    try:
        yield
    except HiMoeError as exc:
        st.error(exc.message)


# -- sign-in --------------------------------------------------------------------------------------


def signed_in() -> str | None:
    return st.session_state.get("operator")


def sign_in_box() -> None:
    """The sidebar's sign-in / sign-out box, on every page."""
    with st.sidebar:
        name = signed_in()
        if name:
            st.success(f"Signed in as **{name}**")
            if st.button("Sign out", key="sign_out"):
                st.session_state.pop("operator", None)
                st.rerun()
            return
        cfg = settings()
        try:
            operators = parse_operators(cfg.operators.get_secret_value() if cfg.operators else None)
        except OperatorConfigError as exc:
            st.error(f"Operator configuration: {exc}")
            return
        if not operators:
            st.info("Read-only: no operators are configured (HI_MOE_OPERATORS).")
            return
        with st.form("sign_in", clear_on_submit=True):
            st.caption("Sign in to change anything.")
            user = st.text_input("Operator")
            password = st.text_input("Password", type="password")
            if st.form_submit_button("Sign in"):
                if authenticate(operators, user.strip(), password):
                    st.session_state["operator"] = user.strip()
                    st.rerun()
                else:
                    st.error("Unknown operator or wrong password.")


def require_operator(action: str) -> str | None:
    """The signed-in operator, or None after telling a visitor why the action is unavailable."""
    name = signed_in()
    if not name:
        st.warning(f"Sign in (sidebar) to {action}. The console is read-only until then.")
    return name


def confirmed(key: str, question: str) -> bool:
    """A two-step confirmation: the first click asks, the second one acts."""
    return st.checkbox(question, key=f"confirm_{key}")


def run_steps(label: str, fn: Callable[[], Any]) -> Any:
    """Run an action in a status box that shows its steps and its outcome."""
    with st.status(label, expanded=True) as status:
        try:
            result = fn()
        except HiMoeError as exc:
            status.update(label=f"{label}: refused", state="error")
            st.error(exc.message)
            return None
        for step in getattr(result, "steps", []) or []:
            st.write(step)
        status.update(label=f"{label}: done", state="complete")
    return result


# -- formatting -------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def ago(ts: float | str | None) -> str:
    if ts is None:
        return "never"
    if isinstance(ts, str):
        return ts
    seconds = time.time() - ts
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


WINDOWS = {"last hour": 3600, "last 24 hours": 86400, "last 7 days": 7 * 86400,
           "last 30 days": 30 * 86400}
