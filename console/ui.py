"""Helpers every page shares. Settings are read per run (never at import): AppTest and the
browser tests point the same process at different databases and servers."""

from __future__ import annotations

from contextlib import contextmanager

import streamlit as st

from core.config import Settings, load_settings
from core.errors import HiMoeError
from core.vllm import Fleet


def settings() -> Settings:
    return load_settings()


@contextmanager
def fleet():
    cfg = settings()
    with Fleet(cfg.vllm_urls, api_key=cfg.api_key, timeout=min(cfg.timeout, 10.0)) as f:
        yield f


def page_header(title: str, help_text: str) -> None:
    st.title(title)
    st.caption(help_text)


@contextmanager
def operator_errors():
    """Show an operator-facing error as a message, not a traceback."""
    try:
        yield
    except HiMoeError as exc:
        st.error(exc.message)
