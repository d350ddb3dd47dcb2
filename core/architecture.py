"""The shapes of a decoder-only transformer, read from a Hugging Face ``config.json``.

The memory planner counts bytes from these shapes, and adapter validation checks LoRA tensor
shapes against them. Presets carry the public ``config.json`` values of common bases so that
planning needs no download.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.errors import HiMoeError

# The linear layers of a Llama/Qwen2/Mistral block that LoRA can adapt, in vLLM's terms:
# q/k/v are one column-parallel "qkv" layer with three slices, gate/up one with two slices,
# o_proj and down_proj are row-parallel.
ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")
LINEAR_MODULES = ATTENTION_MODULES + MLP_MODULES
ROW_PARALLEL = {"o_proj", "down_proj"}


class ModelShape(BaseModel):
    name: str = "custom"
    architecture: str = "LlamaForCausalLM"
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    max_position_embeddings: int | None = None
    torch_dtype: str = "bfloat16"

    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "custom") -> ModelShape:
        try:
            heads = int(config["num_attention_heads"])
            hidden = int(config["hidden_size"])
            arch = (config.get("architectures") or ["LlamaForCausalLM"])[0]
            return cls(
                name=name,
                architecture=arch,
                hidden_size=hidden,
                intermediate_size=int(config["intermediate_size"]),
                num_hidden_layers=int(config["num_hidden_layers"]),
                num_attention_heads=heads,
                num_key_value_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                vocab_size=int(config["vocab_size"]),
                tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
                # Qwen2 puts biases on q, k and v (and nowhere else); Llama has attention_bias.
                qkv_bias=bool(config.get("attention_bias", arch.startswith("Qwen2"))),
                max_position_embeddings=config.get("max_position_embeddings"),
                torch_dtype=str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HiMoeError(f"config of {name!r} lacks a field the planner needs: {exc}") from exc

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def module_dims(self, module: str) -> tuple[int, int]:
        """(input size, output size) of one LoRA-capable linear layer, GQA-aware."""
        dims = {
            "q_proj": (self.hidden_size, self.q_size),
            "k_proj": (self.hidden_size, self.kv_size),
            "v_proj": (self.hidden_size, self.kv_size),
            "o_proj": (self.q_size, self.hidden_size),
            "gate_proj": (self.hidden_size, self.intermediate_size),
            "up_proj": (self.hidden_size, self.intermediate_size),
            "down_proj": (self.intermediate_size, self.hidden_size),
        }
        if module not in dims:
            raise HiMoeError(f"unknown target module {module!r}; known: {', '.join(LINEAR_MODULES)}")
        return dims[module]


def _preset(name: str, arch: str, hidden: int, inter: int, layers: int, heads: int, kv: int,
            vocab: int, *, tie: bool = False, max_pos: int = 32768) -> ModelShape:
    return ModelShape.from_config(dict(
        architectures=[arch], hidden_size=hidden, intermediate_size=inter,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
        vocab_size=vocab, tie_word_embeddings=tie, max_position_embeddings=max_pos,
        torch_dtype="bfloat16"), name=name)


# Public config.json values of each model (Hugging Face model cards, bf16 checkpoints).
PRESETS: dict[str, ModelShape] = {p.name: p for p in [
    _preset("qwq-32b", "Qwen2ForCausalLM", 5120, 27648, 64, 40, 8, 152064, max_pos=40960),
    _preset("qwen2.5-7b-instruct", "Qwen2ForCausalLM", 3584, 18944, 28, 28, 4, 152064),
    _preset("qwen2.5-14b-instruct", "Qwen2ForCausalLM", 5120, 13824, 48, 40, 8, 152064),
    _preset("qwen2.5-32b-instruct", "Qwen2ForCausalLM", 5120, 27648, 64, 40, 8, 152064),
    _preset("llama-3.1-8b-instruct", "LlamaForCausalLM", 4096, 14336, 32, 32, 8, 128256,
            max_pos=131072),
    _preset("llama-3.1-70b-instruct", "LlamaForCausalLM", 8192, 28672, 80, 64, 8, 128256,
            max_pos=131072),
    _preset("mistral-7b-instruct-v0.3", "MistralForCausalLM", 4096, 14336, 32, 32, 8, 32768),
]}
PRESET_ALIASES = {
    "qwen/qwq-32b": "qwq-32b", "qwen/qwq-32b-preview": "qwq-32b", "qwen/qwq-32b-awq": "qwq-32b",
    "qwen/qwq-32b-preview-awq": "qwq-32b", "mistral-7b": "mistral-7b-instruct-v0.3",
    "qwen2.5-7b": "qwen2.5-7b-instruct", "qwen2.5-14b": "qwen2.5-14b-instruct",
    "qwen2.5-32b": "qwen2.5-32b-instruct", "llama-3.1-8b": "llama-3.1-8b-instruct",
    "llama-3.1-70b": "llama-3.1-70b-instruct",
}


def resolve_preset(name: str) -> ModelShape | None:
    key = name.strip().lower()
    key = PRESET_ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    tail = key.rsplit("/", 1)[-1]
    return PRESETS.get(PRESET_ALIASES.get(tail, tail))


def load_shape(model: str) -> ModelShape:
    """A preset name, a Hugging Face id that a preset covers, a ``config.json`` or a folder
    holding one."""
    preset = resolve_preset(model)
    if preset is not None:
        return preset
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HiMoeError(f"cannot read model config {path}: {exc}") from exc
        return ModelShape.from_config(config, name=str(model))
    raise HiMoeError(f"unknown model {model!r}: not a preset ({', '.join(PRESETS)}) "
                     "and not a config.json or a folder holding one")
