"""Memory planner: will this configuration fit, and what does it leave for the KV cache?"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from console import ui
from core.architecture import PRESETS
from core.errors import HiMoeError
from core.memory import GIB, GPUS, QUANTIZATIONS, VLLM_LORA_RANKS, MemoryPlan, plan_memory

ui.page_header("Memory planner", "Exact per-GPU bytes, counted the way vLLM allocates them: "
               "LoRA slots are reserved at --max-lora-rank for every linear layer, whatever the "
               "adapters' real ranks.")

c1, c2, c3, c4 = st.columns(4)
model = c1.selectbox("Model", list(PRESETS), index=0)
quant = c2.selectbox("Quantization", QUANTIZATIONS, index=1)
gpu = c3.selectbox("GPU", list(GPUS) + ["custom"], index=0)
custom_gib = c4.number_input("Custom GPU memory (GiB)", 1.0, 1024.0, 40.0, disabled=gpu != "custom")
c1, c2, c3, c4 = st.columns(4)
tp = c1.select_slider("Tensor parallel", [1, 2, 4, 8], value=1)
max_loras = c2.slider("--max-loras", 1, 64, 16)
max_rank = c3.select_slider("--max-lora-rank", VLLM_LORA_RANKS, value=64)
context = c4.select_slider("--max-model-len", [1024, 2048, 4096, 8192, 16384, 32768], value=4096)
c1, c2, c3 = st.columns(3)
kv = c1.selectbox("KV cache dtype", ["auto", "fp8"])
util = c2.slider("--gpu-memory-utilization", 0.5, 0.99, 0.9, 0.01)
rank = c3.select_slider("Adapters' rank (for one adapter's size)",
                        [r for r in VLLM_LORA_RANKS if r <= max_rank], value=min(16, max_rank))

try:
    report = plan_memory(MemoryPlan(
        shape=PRESETS[model], quant=quant, gpu=gpu if gpu != "custom" else "custom",
        gpu_bytes=int(custom_gib * GIB) if gpu == "custom" else None, tp=tp, max_loras=max_loras,
        max_lora_rank=max_rank, max_model_len=context, kv_dtype=kv, gpu_memory_utilization=util,
        rank=rank))
except HiMoeError as exc:
    st.error(exc.message)
    st.stop()

gib = lambda b: b / GIB  # noqa: E731
if report.fits:
    st.success(f"Fits: {report.kv_tokens:,} KV tokens, {report.max_concurrent_seqs} concurrent "
               f"sequences of {context} tokens per GPU.")
else:
    st.error(f"Does not fit: {gib(report.shortfall_bytes):.2f} GiB short of one {context}-token sequence.")

parts = [("weights", sum(v for k, v in report.breakdown.items() if k.startswith("weights."))),
         ("LoRA slots", report.lora_reserved_bytes),
         ("activations + overhead", report.activation_bytes),
         ("KV cache", report.kv_cache_bytes),
         ("not used (1 - utilization)", report.breakdown["unused"])]
fig = go.Figure([go.Bar(name=label, x=[gib(value)], y=["per GPU"], orientation="h",
                        text=[f"{gib(value):.1f} GiB"]) for label, value in parts])
fig.update_layout(barmode="stack", title=f"Budget of {gib(report.gpu_bytes):.0f} GiB per GPU",
                  xaxis_title="GiB", height=260)
st.plotly_chart(fig, width="stretch")

m = st.columns(4)
m[0].metric("Parameters", f"{report.params / 1e9:.2f} B")
m[1].metric("LoRA slots", f"{gib(report.lora_reserved_bytes):.2f} GiB")
m[2].metric("One rank-%d adapter" % rank, f"{report.adapter_bytes / 2**20:.0f} MiB")
m[3].metric("KV per token", f"{report.kv_bytes_per_token / 1024:.0f} KiB")

left, right = st.columns(2)
with left:
    st.markdown("**Cheapest changes**")
    st.dataframe(pd.DataFrame([{"change": s["change"], "fits": s["fits"],
                                "sequences": s["max_concurrent_seqs"],
                                "KV cache gained (GiB)": round(gib(s["kv_cache_gained_bytes"]), 2)}
                               for s in report.suggestions]), hide_index=True, width="stretch")
with right:
    st.markdown("**The spec's rough estimate beside the exact figure**")
    spec = report.spec_estimate
    st.dataframe(pd.DataFrame([
        {"item": "weights", "spec (GiB)": round(gib(spec["weights_bytes"]), 2),
         "exact (GiB)": round(gib(report.weights_bytes), 2)},
        {"item": f"LoRA for {max_loras} adapters", "spec (GiB)": round(gib(spec["lora_bytes"]), 2),
         "exact (GiB)": round(gib(report.lora_reserved_bytes), 2)},
        {"item": "KV cache", "spec (GiB)": round(gib(spec["kv_cache_bytes"]), 2),
         "exact (GiB)": round(gib(report.kv_cache_bytes), 2)},
    ]), hide_index=True, width="stretch")
    st.caption("The spec sizes adapters with 2 × r × hidden × layers × modules × 2 B (square "
               "modules only) and forgets that vLLM reserves every slot at --max-lora-rank over all "
               "seven linear modules.")
