"""Reading and validating a PEFT LoRA adapter folder without loading any weights.

A folder holds ``adapter_config.json`` and ``adapter_model.safetensors``. The safetensors header
(an 8-byte length and a JSON table of tensor names, dtypes and shapes) is enough to check every
tensor against the rank and the base model's dimensions, so validation needs neither torch nor a
server.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from core.architecture import LINEAR_MODULES, ModelShape
from core.errors import HiMoeError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
METADATA_FILE = "hi_moe.json"  # optional: {"domains": [...], "description": "..."}
VLLM_MAX_RANK = 512  # the largest --max-lora-rank vLLM accepts

_TENSOR = re.compile(r"layers\.(\d+)\..*?([a-z_]+)\.lora_([AB])(?:\.default)?\.weight$")
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


class AdapterValidationError(HiMoeError):
    """The adapter folder cannot be registered; ``problems`` lists every reason."""

    def __init__(self, path: Path | str, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"adapter at {path} is not valid: " + "; ".join(problems))


class TensorInfo(BaseModel):
    dtype: str
    shape: list[int]

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= dim
        return count * DTYPE_BYTES.get(self.dtype, 0)


class AdapterManifest(BaseModel):
    path: str
    rank: int
    alpha: float
    target_modules: list[str]
    base_model: str
    peft_type: str
    rank_pattern: dict[str, int] = Field(default_factory=dict)
    size_bytes: int
    tensor_bytes: int
    checksum: str
    tensors: dict[str, TensorInfo] = Field(default_factory=dict, repr=False)
    domains: list[str] | None = None
    description: str | None = None


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    with open(path, "rb") as handle:
        raw_len = handle.read(8)
        if len(raw_len) != 8:
            raise ValueError("file is shorter than a safetensors header")
        (length,) = struct.unpack("<Q", raw_len)
        if length > 100_000_000:
            raise ValueError(f"header length {length} is implausible")
        header = json.loads(handle.read(length))
    return {name: TensorInfo(dtype=entry["dtype"], shape=entry["shape"])
            for name, entry in header.items() if name != "__metadata__"}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _leaf_modules(target: Any) -> list[str]:
    if isinstance(target, str):  # a regex in PEFT; take the module names it mentions
        return sorted(m for m in LINEAR_MODULES if m in target)
    return sorted({str(name).rsplit(".", 1)[-1] for name in target or []})


def read_adapter(path: Path) -> AdapterManifest:
    """Parse the folder; raise :class:`AdapterValidationError` naming every problem found."""
    path = Path(path)
    problems: list[str] = []
    if not path.is_dir():
        raise AdapterValidationError(path, ["folder does not exist"])
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterValidationError(path, [f"{CONFIG_FILE} is missing"])
    try:
        config = json.loads(config_path.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise AdapterValidationError(path, [f"{CONFIG_FILE} does not parse: {exc}"]) from exc

    peft_type = str(config.get("peft_type", ""))
    if peft_type.upper() != "LORA":
        problems.append(f"peft_type is {peft_type or 'missing'!r}, vLLM serves only LORA")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        problems.append(f"rank r={rank!r} is not a positive integer")
        rank = 0
    elif rank > VLLM_MAX_RANK:
        problems.append(f"rank {rank} is above {VLLM_MAX_RANK}, the largest vLLM accepts")
    base_model = config.get("base_model_name_or_path")
    if not base_model:
        problems.append("base_model_name_or_path is missing")
    targets = _leaf_modules(config.get("target_modules"))
    if not targets:
        problems.append("target_modules is empty")
    if config.get("use_dora"):
        problems.append("DoRA adapters are not served by vLLM")

    weights = path / WEIGHTS_FILE
    tensors: dict[str, TensorInfo] = {}
    if not weights.is_file():
        problems.append(f"{WEIGHTS_FILE} is missing")
    else:
        try:
            tensors = read_safetensors_header(weights)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{WEIGHTS_FILE} is not a readable safetensors file: {exc}")
    if problems:
        raise AdapterValidationError(path, problems)

    meta: dict[str, Any] = {}
    if (path / METADATA_FILE).is_file():
        try:
            meta = json.loads((path / METADATA_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise AdapterValidationError(path, [f"{METADATA_FILE} does not parse: {exc}"]) from exc

    return AdapterManifest(
        path=str(path),
        rank=rank,
        alpha=float(config.get("lora_alpha") or rank),
        target_modules=targets,
        base_model=str(base_model),
        peft_type="LORA",
        rank_pattern={str(k).rsplit(".", 1)[-1]: int(v)
                      for k, v in (config.get("rank_pattern") or {}).items()},
        size_bytes=sum(f.stat().st_size for f in path.iterdir() if f.is_file()),
        tensor_bytes=sum(t.nbytes for t in tensors.values()),
        checksum=_sha256(weights),
        tensors=tensors,
        domains=meta.get("domains"),
        description=meta.get("description"),
    )


def check_shapes(manifest: AdapterManifest, shape: ModelShape) -> list[str]:
    """Problems with the tensors against the rank and the base model's dimensions (none = ok)."""
    problems: list[str] = []
    seen_modules: set[str] = set()
    lora_tensors = 0
    for name, info in manifest.tensors.items():
        match = _TENSOR.search(name)
        if not match:
            continue
        lora_tensors += 1
        layer, module, side = int(match.group(1)), match.group(2), match.group(3)
        seen_modules.add(module)
        if layer >= shape.num_hidden_layers:
            problems.append(f"{name}: layer {layer} does not exist in a "
                            f"{shape.num_hidden_layers}-layer base model")
            continue
        if module not in LINEAR_MODULES:
            continue
        d_in, d_out = shape.module_dims(module)
        rank = manifest.rank_pattern.get(module, manifest.rank)
        expected = [rank, d_in] if side == "A" else [d_out, rank]
        if info.shape != expected:
            problems.append(f"{name} has shape {info.shape}, expected {expected} "
                            f"(rank {rank}, base {shape.name})")
        if len(problems) >= 5:
            problems.append("(further shape problems not listed)")
            break
    if lora_tensors == 0:
        problems.append(f"{WEIGHTS_FILE} holds no lora_A/lora_B tensors")
    missing = set(manifest.target_modules) - seen_modules
    if lora_tensors and missing:
        problems.append(f"target modules {sorted(missing)} have no tensors")
    return problems
