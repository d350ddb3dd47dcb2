"""The Streamlit console: entry point (app.py) and shared UI helpers (ui.py)."""
