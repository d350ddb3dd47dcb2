"""hi_moe LoRA operations core: registry, router, vLLM client, memory planner. No Streamlit here."""
