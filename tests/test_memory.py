"""The memory planner: figures derived by hand, checked against real adapter files made by the
demo generator and against the allocation vLLM's source performs."""

from __future__ import annotations

import inspect
import json

import pytest
from click.testing import CliRunner

from core.adapter_files import read_safetensors_header
from core.architecture import ModelShape, load_shape
from core.cli import main
from core.memory import (
    MemoryPlan,
    PlanError,
    adapter_bytes,
    kv_bytes_per_token,
    lora_reserved_bytes,
    param_count,
    plan_memory,
    weights_bytes,
)

# Model A: Llama-style, no GQA, no biases, untied. hidden 64, intermediate 128, 2 layers,
# 4 heads of 16, vocab 100.
LLAMA_TINY = ModelShape.from_config(dict(
    architectures=["LlamaForCausalLM"], hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=4, vocab_size=100, torch_dtype="bfloat16"))


def test_llama_by_hand():
    # per layer: q,k,v,o 64x64 = 4096 each; gate, up, down 64x128 = 8192 each -> 40960; x2 layers
    # embed 6400 + lm_head 6400; norms 2 per layer x 64 x 2 layers + final 64 = 320
    assert sum(param_count(LLAMA_TINY).values()) == 81920 + 12800 + 320
    plan = MemoryPlan(shape=LLAMA_TINY, max_loras=2, max_lora_rank=8, rank=8,
                      target_modules=["q_proj", "v_proj"], gpu_bytes=10**9)
    assert sum(weights_bytes(plan).values()) == 95040 * 2
    # each slot, each layer: 8 x (q 64+64, k 64+64, v 64+64, o 64+64, gate 64+128, up 64+128,
    # down 128+64) = 8 x 1088; x 2 slots x 2 layers x 2 bytes
    assert lora_reserved_bytes(plan) == 8 * 1088 * 2 * 2 * 2
    # q and v: 8 x (64 + 64) each, x 2 layers x 2 bytes
    assert adapter_bytes(LLAMA_TINY, 8, ["q_proj", "v_proj"]) == 8 * 256 * 2 * 2
    assert kv_bytes_per_token(plan) == 2 * 2 * 4 * 16 * 2


def test_qwen2_gqa_by_hand(fleet_dir):
    shape = load_shape(str(fleet_dir / "model"))  # the demo base: Qwen2, 4 heads, 2 KV heads
    assert (shape.hidden_size, shape.num_key_value_heads, shape.head_dim, shape.qkv_bias) == (128, 2, 32, True)
    counts = param_count(shape)
    # q 128x128, k and v 128x64 (GQA), o 128x128, gate/up/down 128x256: 147456 a layer
    assert counts["linear"] == 147456 * 2
    assert counts["bias"] == (128 + 64 + 64) * 2
    # the real checkpoint holds exactly this many parameters
    header = read_safetensors_header(fleet_dir / "model" / "model.safetensors")
    numel = sum(t.nbytes // 4 for t in header.values())
    assert sum(counts.values()) == numel == 427136
    plan = MemoryPlan(shape=shape, max_loras=4, max_lora_rank=16, gpu_bytes=10**9)
    # 16 x (256 + 192 + 192 + 256 + 384 + 384 + 384) x 4 slots x 2 layers x 2 bytes (bf16 plan)
    plan = plan.model_copy(update={"lora_dtype": "bfloat16"})
    assert lora_reserved_bytes(plan) == 16 * 2048 * 4 * 2 * 2
    # TP=2: column-parallel layers halve lora_b, row-parallel halve lora_a
    tp2 = plan.model_copy(update={"tp": 2})
    assert lora_reserved_bytes(tp2) == 16 * (192 + 160 + 160 + 192 + 256 + 256 + 256) * 4 * 2 * 2
    assert kv_bytes_per_token(plan.model_copy(update={"kv_dtype": "bfloat16"})) == 2 * 2 * 2 * 32 * 2
    assert kv_bytes_per_token(tp2.model_copy(update={"kv_dtype": "bfloat16"})) == 2 * 2 * 1 * 32 * 2
    assert kv_bytes_per_token(plan.model_copy(update={"kv_dtype": "fp8"})) == 2 * 2 * 2 * 32


def test_quantized_weights_by_hand():
    awq = MemoryPlan(shape=LLAMA_TINY, quant="awq", group_size=64, gpu_bytes=10**9, max_loras=1,
                     max_lora_rank=8, rank=8)
    # a 64x128 layer: 64*128/2 packed + 1 group x 128/8 int32 zeros + 1 x 128 fp16 scales
    gate = 64 * 128 // 2 + 128 // 2 + 128 * 2
    square = 64 * 64 // 2 + 64 // 2 + 64 * 2
    down = 128 * 64 // 2 + 2 * 64 // 2 + 2 * 64 * 2  # 128 inputs = 2 groups
    assert weights_bytes(awq)["linear"] == (4 * square + 2 * gate + down) * 2
    assert weights_bytes(awq)["embed_tokens"] == 6400 * 2  # embeddings stay bf16


@pytest.mark.parametrize("specialist,version,rank,targets", [
    ("python", "1.0.0", 32, ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("math", "1.0.0", 64, ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("docs", "1.0.0", 16, ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("devops", "1.1.0", 16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
])
def test_adapter_size_equals_real_safetensors(fleet_dir, specialist, version, rank, targets):
    shape = load_shape(str(fleet_dir / "model"))
    header = read_safetensors_header(fleet_dir / "adapters" / specialist / f"v{version}" /
                                     "adapter_model.safetensors")
    real = sum(t.nbytes for t in header.values())
    assert {t.dtype for t in header.values()} == {"F32"}
    assert adapter_bytes(shape, rank, targets, dtype_bytes=4) == real


def test_reservation_matches_vllm_allocation_code():
    """vLLM's allocation cannot be observed on the CPU server: there is no GPU memory profiling
    (the KV cache size is set by VLLM_CPU_KVCACHE_SPACE) and the demo model's LoRA buffers (about
    1 MB) drown in the process's RSS noise. So this checks the installed vLLM's own allocation:
    each LoRA linear layer allocates, per slice, lora_a (max_loras, 1, rank, input_size) and
    lora_b (max_loras, 1, output_size, rank), with input sharded only for row-parallel layers."""
    base_linear = pytest.importorskip("vllm.lora.layers.base_linear")
    source = inspect.getsource(base_linear.BaseLinearLayerWithLoRA.create_lora_weights)
    compact = "".join(source.split())
    assert "torch.zeros(max_loras,1,lora_a_out_size,self.input_size" in compact
    assert "torch.zeros(max_loras,1,lora_b_out_size,lora_config.max_lora_rank" in compact
    assert "for_inrange(self.n_slices)" in compact
    row = pytest.importorskip("vllm.lora.layers.row_parallel_linear")
    assert "self.input_size=self.base_layer.input_size_per_partition" in "".join(
        inspect.getsource(row).split())


def test_spec_single_gpu_question():
    """The spec: QwQ-32B AWQ on a 40 GB GPU, 16 LoRAs at rank 64, 4K context."""
    report = plan_memory(MemoryPlan(shape=load_shape("qwq-32b"), quant="awq", gpu="a100-40gb",
                                    max_loras=16, max_lora_rank=64, max_model_len=4096))
    assert report.params == 32_763_876_352
    # 16 slots x rank 64 over all seven modules of 64 layers in bf16: 16 GiB, not the spec's ~1 GB
    assert report.lora_reserved_bytes == 16 * 64 * 64 * 2 * (
        (5120 + 5120) * 2 + (5120 + 1024) * 2 + (5120 + 27648) * 3)
    assert report.lora_reserved_bytes == 16 * 2**30
    assert report.kv_bytes_per_token == 256 * 1024
    assert not report.fits and report.shortfall_bytes > 0
    assert report.spec_estimate["lora_bytes"] < report.lora_reserved_bytes / 3
    fixes = [s for s in report.suggestions if s["fits"]]
    assert fixes and fixes[0]["change"].startswith("--max-lora-rank")


def test_bad_plans_are_refused():
    shape = load_shape("qwq-32b")
    with pytest.raises(PlanError, match="must be one of"):
        plan_memory(MemoryPlan(shape=shape, max_lora_rank=48, rank=16))
    with pytest.raises(PlanError, match="must divide the 40 attention heads"):
        plan_memory(MemoryPlan(shape=shape, tp=3))
    with pytest.raises(PlanError, match="may not be smaller"):
        plan_memory(MemoryPlan(shape=shape, max_loras=8, max_cpu_loras=4))
    with pytest.raises(PlanError, match="unknown GPU"):
        plan_memory(MemoryPlan(shape=shape, gpu="tpu-v9"))


def test_memory_cli_json():
    result = CliRunner().invoke(main, ["memory", "--model", "qwq-32b", "--quant", "awq", "--gpu",
                                       "a100-40gb", "--tp", "1", "--max-loras", "16",
                                       "--max-lora-rank", "64", "--max-model-len", "4096", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in ("params", "weights_bytes", "lora_reserved_bytes", "adapter_bytes",
                "kv_bytes_per_token", "kv_cache_bytes", "kv_tokens", "max_concurrent_seqs", "fits",
                "suggestions"):
        assert key in data
    assert all(isinstance(data[k], int) for k in ("weights_bytes", "lora_reserved_bytes", "kv_tokens"))
    assert data["fits"] is False


def test_memory_cli_unknown_model():
    result = CliRunner().invoke(main, ["memory", "--model", "gpt-17"])
    assert result.exit_code == 1 and "unknown model 'gpt-17'" in result.output
