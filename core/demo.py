"""A demo fleet that a real vLLM server can serve on a CPU: a tiny random-weight base model and
real PEFT LoRA adapters for the spec's eight specialists.

Nothing can be downloaded here, so everything is generated: a Qwen2-architecture model (the
production base, QwQ-32B, is a Qwen2ForCausalLM) with grouped-query attention, a byte-level BPE
tokenizer trained on the fly with a ChatML chat template, and adapters with random non-zero
``lora_A``/``lora_B`` so every version answers differently at temperature 0.

Layout (the spec's "Versioning Strategy")::

    DIR/model/                              config.json, model.safetensors, tokenizer files
    DIR/adapters/<specialist>/vX.Y.Z/       adapter_config.json, adapter_model.safetensors

Needs the ``server`` extra (torch, transformers, peft), imported only when called.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

# The production base is QwQ-32B; the demo's shape is that architecture shrunk until a CPU serves
# it in milliseconds. head_dim 32 is one the CPU attention backend accepts (notes/vllm.md).
TINY_BASE = dict(
    architectures=["Qwen2ForCausalLM"],
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)
SERVED_BASE_NAME = "hi-moe-tiny"
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
ALL_LINEAR = ATTENTION + ["gate_proj", "up_proj", "down_proj"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


class DemoAdapter(BaseModel):
    specialist: str
    version: str
    rank: int
    target_modules: list[str]


# The spec's fleet table (ranks as given), with several versions for some specialists so that
# canary, promote and rollback have something to act on. devops v1.1.0 adapts every linear layer.
DEMO_ADAPTERS = [
    DemoAdapter(specialist="python", version="1.0.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="python", version="1.1.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="python", version="1.2.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="cuda", version="1.0.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="cuda", version="1.1.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="math", version="1.0.0", rank=64, target_modules=ATTENTION),
    DemoAdapter(specialist="systems", version="1.0.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="web", version="1.0.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="data", version="1.0.0", rank=32, target_modules=ATTENTION),
    DemoAdapter(specialist="devops", version="1.0.0", rank=16, target_modules=ATTENTION),
    DemoAdapter(specialist="devops", version="1.1.0", rank=16, target_modules=ALL_LINEAR),
    DemoAdapter(specialist="docs", version="1.0.0", rank=16, target_modules=ATTENTION),
]

_CORPUS = """\
Write a Python function that parses a CSV file and returns a pandas DataFrame.
Fix the CUDA kernel so that the shared memory reduction does not race between warps.
Prove that the algorithm runs in O(n log n) time and that the invariant holds.
The C++ service segfaults in the destructor; find the use-after-free with valgrind.
Build a React component in TypeScript that renders the shopping cart with CSS grid.
Write a SQL query joining orders and customers, grouped by month, for the data pipeline.
The Kubernetes deployment fails its readiness probe; fix the Dockerfile and the CI workflow.
Document the public API in Markdown with examples and a changelog entry.
"""


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("/".join(parts).encode()).digest()[:4], "little")


def build_tokenizer(model_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None, model_max_length=TINY_BASE["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(model_dir)
    return fast


def build_base_model(model_dir: Path, *, seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(model_dir)
    vocab = len(tokenizer)
    config = Qwen2Config(
        vocab_size=vocab,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        bos_token_id=None,
        torch_dtype="float32",
        **{key: value for key, value in TINY_BASE.items() if key != "architectures"},
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(model_dir, safe_serialization=True)
    return model


def build_adapter(base, out_dir: Path, spec: DemoAdapter, base_ref: str) -> Path:
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(_seed(spec.specialist, spec.version))
    config = LoraConfig(r=spec.rank, lora_alpha=2 * spec.rank, target_modules=spec.target_modules,
                        lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                        init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(base), config)
    # peft's init_lora_weights=False draws A and B at random; scale them up so the tiny model's
    # near-uniform logits really change and each version has its own greedy answer.
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                param.normal_(0.0, 0.5)
    peft_model.peft_config["default"].base_model_name_or_path = base_ref
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def build_demo_fleet(out: Path, *, adapters: list[DemoAdapter] | None = None,
                     force: bool = False) -> dict:
    """Write the tiny base model and the adapters under ``out``; skip what is already there.

    Returns a summary (model path, served name, adapter folders). ``base_model_name_or_path`` of
    each adapter is the model folder's absolute path, which is the ``--model`` string the local
    server is started with: vLLM's filesystem resolver only loads adapters whose base matches it
    exactly.
    """
    out = out.resolve()
    model_dir = out / "model"
    base_ref = str(model_dir)
    marker = model_dir / "config.json"
    base = build_base_model(model_dir) if force or not marker.exists() else None
    written = []
    for spec in adapters or DEMO_ADAPTERS:
        adapter_dir = out / "adapters" / spec.specialist / f"v{spec.version}"
        if not force and (adapter_dir / "adapter_model.safetensors").exists():
            continue
        if base is None:  # the model exists; load it only when an adapter is missing
            from transformers import Qwen2ForCausalLM

            base = Qwen2ForCausalLM.from_pretrained(model_dir)
        build_adapter(base, adapter_dir, spec, base_ref)
        written.append(str(adapter_dir))
    (out / "resolver").mkdir(exist_ok=True)
    summary = {
        "model": base_ref,
        "served_model_name": SERVED_BASE_NAME,
        "adapters_root": str(out / "adapters"),
        "written": written,
    }
    (out / "fleet.json").write_text(json.dumps(summary, indent=2))
    return summary
