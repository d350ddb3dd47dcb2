"""GPU memory budget of a vLLM server with LoRA, counted the way vLLM allocates it.

All figures are exact integers of bytes PER GPU, from the model's shapes
(:mod:`core.architecture`):

* weights: every parameter at its stored size: quantised linear layers as packed integers plus
  their scales and zeros, embeddings, lm_head and norms at the model dtype;
* LoRA: vLLM reserves, for every LoRA-capable linear layer and each of its slices (q, k and v are
  separate slices, so are gate and up), ``lora_a = max_loras x max_lora_rank x input_size`` and
  ``lora_b = max_loras x output_size x max_lora_rank`` in the LoRA dtype, whatever ranks the
  loaded adapters really have. Under tensor parallelism column-parallel layers shard
  ``lora_b`` (the output) and row-parallel layers shard ``lora_a`` (the input), as vLLM's
  ``ColumnParallelLinearWithLoRA`` / ``RowParallelLinearWithLoRA`` do without
  ``--fully-sharded-loras``;
* KV cache: what is left of ``gpu_memory_utilization x GPU memory`` after weights, the LoRA
  reservation and an activation/overhead estimate (see :func:`activation_bytes`).

Where the spec's "Memory Budget" section differs, :func:`spec_estimate` gives its numbers so the
two can be shown side by side.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.architecture import ATTENTION_MODULES, LINEAR_MODULES, ROW_PARALLEL, ModelShape
from core.errors import HiMoeError

GIB = 1 << 30
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "fp16": 2, "bf16": 2, "float32": 4, "fp32": 4, "auto": 2}

# GPU memory as the driver reports it (nvidia-smi "Total"), in bytes.
GPUS: dict[str, int] = {
    "a100-40gb": 40 * GIB,
    "a100-80gb": 80 * GIB,
    "a6000": 48 * GIB,
    "l40s": 48 * GIB,
    "h100-80gb": 80 * GIB,
    "h200": 141 * 10**9,
    "rtx4090": 24 * GIB,
}
QUANTIZATIONS = ("none", "awq", "gptq-4bit", "gptq-8bit", "bnb-4bit", "bnb-8bit", "fp8")


class PlanError(HiMoeError):
    pass


class MemoryPlan(BaseModel):
    """Inputs of one plan."""

    shape: ModelShape
    quant: str = "none"
    group_size: int = 128
    gpu: str = "a100-40gb"
    gpu_bytes: int | None = None  # custom size; overrides ``gpu``
    tp: int = 1
    max_loras: int = 16
    max_cpu_loras: int | None = None
    max_lora_rank: int = 64
    lora_dtype: str = "auto"
    max_model_len: int = 4096
    kv_dtype: str = "auto"        # "auto" (the model dtype) or "fp8"
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_num_batched_tokens: int = 8192
    max_num_seqs: int = 256
    overhead_bytes: int = GIB     # CUDA context, cuBLAS workspaces, CUDA graphs: an estimate
    rank: int = 16                # for adapter_bytes
    target_modules: list[str] = Field(default_factory=lambda: list(ATTENTION_MODULES))


class MemoryReport(BaseModel):
    params: int
    weights_bytes: int
    lora_reserved_bytes: int
    adapter_bytes: int
    cpu_lora_cache_bytes: int
    activation_bytes: int
    kv_bytes_per_token: int
    budget_bytes: int
    kv_cache_bytes: int
    kv_tokens: int
    max_concurrent_seqs: int
    fits: bool
    shortfall_bytes: int
    gpu_bytes: int
    tp: int
    suggestions: list[dict[str, Any]] = Field(default_factory=list)
    breakdown: dict[str, int] = Field(default_factory=dict)
    spec_estimate: dict[str, int] = Field(default_factory=dict)


def _dtype_bytes(name: str, shape: ModelShape) -> int:
    if name == "auto":
        name = shape.torch_dtype
    try:
        return DTYPE_BYTES[name]
    except KeyError:
        raise PlanError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_BYTES)}") from None


def _per_gpu(value: int, tp: int) -> int:
    return -(-value // tp)  # ceil: an uneven shard still needs the larger piece


def _linear_layers(shape: ModelShape) -> list[tuple[str, int, int]]:
    """(module, input size, output size) of every linear layer of one block."""
    return [(m, *shape.module_dims(m)) for m in LINEAR_MODULES]


def param_count(shape: ModelShape) -> dict[str, int]:
    """Exact parameter count by part."""
    per_layer_linear = sum(d_in * d_out for _, d_in, d_out in _linear_layers(shape))
    bias = (shape.q_size + 2 * shape.kv_size) if shape.qkv_bias else 0
    norms = 2 * shape.hidden_size
    layers = shape.num_hidden_layers
    embed = shape.vocab_size * shape.hidden_size
    return {
        "embed_tokens": embed,
        "lm_head": 0 if shape.tie_word_embeddings else embed,
        "linear": per_layer_linear * layers,
        "bias": bias * layers,
        "norms": norms * layers + shape.hidden_size,
    }


def _quantized_linear_bytes(d_in: int, d_out: int, quant: str, group: int) -> int:
    """Stored bytes of one quantised linear weight (packed values + scales + zeros)."""
    groups = -(-d_in // group)
    if quant == "awq":      # qweight [in, out/8] int32, qzeros [in/g, out/8] int32, scales [in/g, out] fp16
        return d_in * d_out // 2 + groups * d_out // 2 + groups * d_out * 2
    if quant == "gptq-4bit":  # qweight [in/8, out] int32, qzeros [in/g, out/8], scales [in/g, out], g_idx [in]
        return d_in * d_out // 2 + groups * d_out // 2 + groups * d_out * 2 + 4 * d_in
    if quant == "gptq-8bit":  # qweight [in/4, out] int32, qzeros [in/g, out/4] int32
        return d_in * d_out + groups * d_out + groups * d_out * 2 + 4 * d_in
    if quant == "bnb-4bit":   # NF4 packed 2 per byte, one fp32 absmax per 64 values
        return d_in * d_out // 2 + -(-(d_in * d_out) // 64) * 4
    if quant == "bnb-8bit":   # int8 plus one fp32 scale per output row
        return d_in * d_out + 4 * d_out
    if quant == "fp8":        # e4m3 plus one fp32 per-tensor scale
        return d_in * d_out + 4
    raise PlanError(f"unknown quantization {quant!r}; use one of {', '.join(QUANTIZATIONS)}")


def weights_bytes(plan: MemoryPlan) -> dict[str, int]:
    """Bytes of weights per GPU, by part."""
    shape, tp = plan.shape, plan.tp
    dtype = _dtype_bytes("auto", shape)
    counts = param_count(shape)
    if plan.quant == "none":
        per_layer = sum(_per_gpu(d_in * d_out, tp) for _, d_in, d_out in _linear_layers(shape)) * dtype
    else:
        per_layer = sum(_per_gpu(_quantized_linear_bytes(d_in, d_out, plan.quant, plan.group_size), tp)
                        for _, d_in, d_out in _linear_layers(shape))
    return {
        "linear": per_layer * shape.num_hidden_layers,
        # vocab-parallel embedding and lm_head; biases of column-parallel q/k/v are sharded;
        # norms are replicated
        "embed_tokens": _per_gpu(counts["embed_tokens"], tp) * dtype,
        "lm_head": _per_gpu(counts["lm_head"], tp) * dtype,
        "bias": _per_gpu(counts["bias"], tp) * dtype,
        "norms": counts["norms"] * dtype,
    }


def lora_slices(shape: ModelShape, tp: int = 1) -> list[tuple[str, int, int]]:
    """(module, input per GPU for lora_a, output per GPU for lora_b) of each LoRA slice."""
    out = []
    for module, d_in, d_out in _linear_layers(shape):
        if module in ROW_PARALLEL:
            out.append((module, _per_gpu(d_in, tp), d_out))
        else:
            out.append((module, d_in, _per_gpu(d_out, tp)))
    return out


def lora_reserved_bytes(plan: MemoryPlan) -> int:
    """What vLLM reserves per GPU for ``max_loras`` slots at ``max_lora_rank``."""
    dtype = _dtype_bytes(plan.lora_dtype, plan.shape)
    per_layer = sum(plan.max_loras * plan.max_lora_rank * (a_in + b_out)
                    for _, a_in, b_out in lora_slices(plan.shape, plan.tp))
    return per_layer * plan.shape.num_hidden_layers * dtype


def adapter_bytes(shape: ModelShape, rank: int, target_modules: list[str], dtype_bytes: int = 2) -> int:
    """Size of one adapter's tensors: sum over targets of r x (d_in + d_out) x layers x bytes."""
    total = 0
    for module in target_modules:
        d_in, d_out = shape.module_dims(module)
        total += rank * (d_in + d_out)
    return total * shape.num_hidden_layers * dtype_bytes


def kv_bytes_per_token(plan: MemoryPlan) -> int:
    """2 (K and V) x layers x KV heads on this GPU x head_dim x dtype."""
    shape = plan.shape
    kv_heads = max(1, shape.num_key_value_heads // plan.tp)  # fewer KV heads than GPUs: replicated
    dtype = 1 if plan.kv_dtype == "fp8" else _dtype_bytes(plan.kv_dtype, shape)
    return 2 * shape.num_hidden_layers * kv_heads * shape.head_dim * dtype


def activation_bytes(plan: MemoryPlan) -> int:
    """Estimate of the peak vLLM measures in its profiling run, plus fixed overhead: the hidden
    states and MLP intermediates of one ``max_num_batched_tokens`` step and the sampler's fp32
    logits for ``max_num_seqs`` sequences. vLLM measures this on the GPU; no formula is exact."""
    shape = plan.shape
    dtype = _dtype_bytes("auto", shape)
    per_token = (4 * shape.hidden_size + 2 * _per_gpu(shape.intermediate_size, plan.tp)) * dtype
    logits = plan.max_num_seqs * shape.vocab_size * 4
    return plan.max_num_batched_tokens * per_token + logits + plan.overhead_bytes


def _gpu_bytes(plan: MemoryPlan) -> int:
    if plan.gpu_bytes:
        return plan.gpu_bytes
    try:
        return GPUS[plan.gpu]
    except KeyError:
        raise PlanError(f"unknown GPU {plan.gpu!r}; use one of {', '.join(GPUS)} or give a size") from None


def spec_estimate(plan: MemoryPlan) -> dict[str, int]:
    """The spec's rough numbers: params x bytes for weights, its per-adapter formula
    ``2 x r x hidden x layers x modules x 2 B`` times max_loras, and ~8 GB of KV cache at 4K."""
    shape = plan.shape
    params = sum(param_count(shape).values())
    per_param = {"none": 2.0, "awq": 0.5, "gptq-4bit": 0.5, "gptq-8bit": 1.0, "bnb-4bit": 0.5,
                 "bnb-8bit": 1.0, "fp8": 1.0}[plan.quant]
    adapter = 2 * plan.max_lora_rank * shape.hidden_size * shape.num_hidden_layers \
        * len(plan.target_modules) * 2
    return {"weights_bytes": int(params * per_param) // plan.tp,
            "lora_bytes": adapter * plan.max_loras // plan.tp,
            "adapter_bytes": adapter,
            "kv_cache_bytes": 8 * 10**9 * plan.max_model_len // 4096}


def _compute(plan: MemoryPlan) -> MemoryReport:
    if plan.tp < 1 or plan.shape.num_attention_heads % plan.tp:
        raise PlanError(f"tensor parallel size {plan.tp} must divide the "
                        f"{plan.shape.num_attention_heads} attention heads")
    if plan.max_lora_rank not in VLLM_LORA_RANKS:
        raise PlanError(f"--max-lora-rank must be one of {VLLM_LORA_RANKS} (vLLM refuses others)")
    if plan.max_cpu_loras is not None and plan.max_cpu_loras < plan.max_loras:
        raise PlanError("--max-cpu-loras may not be smaller than --max-loras (vLLM refuses it)")
    if plan.rank > plan.max_lora_rank:
        raise PlanError(f"adapter rank {plan.rank} is above --max-lora-rank {plan.max_lora_rank}")
    weights = weights_bytes(plan)
    weights_total = sum(weights.values())
    lora = lora_reserved_bytes(plan)
    one_adapter = adapter_bytes(plan.shape, plan.rank, plan.target_modules,
                                _dtype_bytes(plan.lora_dtype, plan.shape))
    activation = activation_bytes(plan)
    gpu = _gpu_bytes(plan)
    budget = int(gpu * plan.gpu_memory_utilization)
    kv_cache = budget - weights_total - lora - activation
    per_token = kv_bytes_per_token(plan)
    kv_tokens = max(kv_cache, 0) // per_token
    needed_for_one = per_token * plan.max_model_len  # vLLM refuses to start below this
    return MemoryReport(
        params=sum(param_count(plan.shape).values()),
        weights_bytes=weights_total,
        lora_reserved_bytes=lora,
        adapter_bytes=one_adapter,
        cpu_lora_cache_bytes=(plan.max_cpu_loras or plan.max_loras) * one_adapter,
        activation_bytes=activation,
        kv_bytes_per_token=per_token,
        budget_bytes=budget,
        kv_cache_bytes=max(kv_cache, 0),
        kv_tokens=kv_tokens,
        max_concurrent_seqs=kv_tokens // plan.max_model_len,
        fits=kv_cache >= needed_for_one,
        shortfall_bytes=max(0, needed_for_one - kv_cache),
        gpu_bytes=gpu,
        tp=plan.tp,
        breakdown={**{f"weights.{k}": v for k, v in weights.items()}, "lora_reserved": lora,
                   "activation_and_overhead": activation, "kv_cache": max(kv_cache, 0),
                   "unused": gpu - budget},
        spec_estimate=spec_estimate(plan),
    )


# Cheapest first: flags before hardware.
def _alternatives(plan: MemoryPlan) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    lower_ranks = [r for r in VLLM_LORA_RANKS if plan.rank <= r < plan.max_lora_rank]
    if lower_ranks:
        out.append((f"--max-lora-rank {lower_ranks[0]} (the adapters' rank)",
                    {"max_lora_rank": lower_ranks[0]}))
    if plan.max_loras > 1:
        out.append((f"--max-loras {plan.max_loras // 2}", {"max_loras": plan.max_loras // 2,
                    "max_cpu_loras": max(plan.max_cpu_loras or 0, plan.max_loras // 2) or None}))
    if plan.kv_dtype != "fp8":
        out.append(("--kv-cache-dtype fp8", {"kv_dtype": "fp8"}))
    if plan.max_model_len > 2048:
        out.append((f"--max-model-len {plan.max_model_len // 2}", {"max_model_len": plan.max_model_len // 2}))
    if plan.gpu_memory_utilization < 0.95:
        out.append(("--gpu-memory-utilization 0.95", {"gpu_memory_utilization": 0.95}))
    if plan.quant == "none":
        out.append(("AWQ 4-bit weights", {"quant": "awq"}))
    if plan.shape.num_attention_heads % (plan.tp * 2) == 0:
        out.append((f"--tensor-parallel-size {plan.tp * 2}", {"tp": plan.tp * 2}))
    return out


def plan_memory(plan: MemoryPlan) -> MemoryReport:
    report = _compute(plan)
    for label, change in _alternatives(plan):
        other = _compute(plan.model_copy(update=change))
        report.suggestions.append({
            "change": label, "fits": other.fits, "kv_tokens": other.kv_tokens,
            "max_concurrent_seqs": other.max_concurrent_seqs,
            "kv_cache_gained_bytes": other.kv_cache_bytes - report.kv_cache_bytes})
    if not report.fits:
        report.suggestions.sort(key=lambda s: not s["fits"])  # the ones that make it fit first
    return report


def plan_from_registry(registry: Any, shape: ModelShape) -> dict[str, Any]:
    """What the registered live adapters need: the rank to start the servers with, and each
    adapter's size from its own rank and target modules."""
    live = registry.live_versions()
    if not live:
        raise PlanError("the registry has no live (active or canary) adapters to plan from")
    sizes = {v.served_name: adapter_bytes(shape, v.rank, v.target_modules) for v in live}
    max_rank = max(v.rank for v in live)
    return {"live": len(live), "max_rank": max_rank,
            "max_lora_rank": next(r for r in VLLM_LORA_RANKS if r >= max_rank),
            "target_modules": sorted({m for v in live for m in v.target_modules}),
            "adapter_bytes": sizes, "cpu_cache_bytes_all_live": sum(sizes.values())}
