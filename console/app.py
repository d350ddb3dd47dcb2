"""Entry point: `streamlit run console/app.py`. One page per file under pages/."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts console/ on the path, not the project root
    sys.path.insert(0, str(ROOT))

PAGES = ROOT / "pages"

st.set_page_config(page_title="hi_moe LoRA console", page_icon="🧩", layout="wide")

navigation = st.navigation([
    st.Page(PAGES / "overview.py", title="Overview", icon="🩺", default=True),
])
navigation.run()
