"""Small builders shared by the tests: real adapter folders and manifests."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

from core.adapter_files import AdapterManifest


def manifest(path: str, rank: int = 16) -> AdapterManifest:
    """A manifest for registry-level tests that do not need files on disk."""
    return AdapterManifest(path=path, rank=rank, alpha=2.0 * rank, target_modules=["q_proj"],
                           base_model="base", peft_type="LORA", size_bytes=1, tensor_bytes=1,
                           checksum="0" * 64)


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_config(folder: Path, **changes) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    path.write_text(json.dumps(config))


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """A valid safetensors file with zero-filled tensors of the given dtypes and shapes."""
    sizes = {"F32": 4, "F16": 2, "BF16": 2}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for dim in shape:
            n *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)
