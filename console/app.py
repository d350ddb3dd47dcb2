"""Entry point: `streamlit run console/app.py`. One page per file under pages/."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts console/ on the path, not the project root
    sys.path.insert(0, str(ROOT))

from console import ui  # noqa: E402

PAGES = ROOT / "pages"

st.set_page_config(page_title="hi_moe LoRA console", page_icon="🧩", layout="wide")

navigation = st.navigation({
    "Operate": [
        st.Page(PAGES / "overview.py", title="Overview", icon="🩺", default=True),
        st.Page(PAGES / "adapters.py", title="Adapters", icon="🧩"),
        st.Page(PAGES / "try_task.py", title="Try a task", icon="🧭"),
        st.Page(PAGES / "alerts.py", title="Alerts", icon="🚨"),
    ],
    "Review": [
        st.Page(PAGES / "performance.py", title="Performance", icon="📈"),
        st.Page(PAGES / "gaps.py", title="Routing gaps", icon="🕳️"),
        st.Page(PAGES / "audit.py", title="Audit log", icon="📜"),
    ],
    "Plan": [
        st.Page(PAGES / "memory.py", title="Memory planner", icon="🧮"),
    ],
})
ui.sign_in_box()
navigation.run()
