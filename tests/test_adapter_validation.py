"""Every bad adapter folder is refused with a message naming the problem, and the registry is
left exactly as it was. Real adapter folders from the demo generator, no server needed."""

from __future__ import annotations

import json
import os

import pytest

from core.adapter_files import read_adapter, read_safetensors_header
from core.errors import HiMoeError
from core.lifecycle import Operations
from core.registry import Registry
from core.vllm import Fleet
from tests.helpers import copy_adapter, edit_config, write_safetensors


@pytest.fixture
def root(tmp_path, fleet_dir):
    root = tmp_path / "adapters"
    for specialist, version in [("python", "1.0.0"), ("python", "1.1.0"), ("math", "1.0.0"),
                                ("devops", "1.1.0")]:
        copy_adapter(fleet_dir / "adapters" / specialist / f"v{version}",
                     root / specialist / f"v{version}")
    return root


@pytest.fixture
def ops(tmp_path, root):
    registry = Registry.open(tmp_path / "r.db", operator="bob")
    with Operations(registry, Fleet([]), adapter_roots=[root], max_lora_rank=64) as ops:
        yield ops


def snapshot(ops: Operations):
    db = ops.registry.db
    return (db.execute("select count(*) from adapters").fetchone()[0],
            db.execute("select count(*) from audit").fetchone()[0],
            ops.registry.next_id_preview())


def refused(ops, path, match, **kwargs):
    before = snapshot(ops)
    with pytest.raises(HiMoeError, match=match):
        ops.register(path, **kwargs)
    assert snapshot(ops) == before


def test_valid_adapter_registers_with_metadata(ops, root, fleet_dir):
    version = ops.register(root / "python" / "v1.0.0")
    assert (version.name, version.version, version.served_name) == (
        "python-lora", "1.0.0", "python-lora@1.0.0")
    assert version.rank == 32 and version.alpha == 64
    assert version.target_modules == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert version.domains[0] == "python"
    assert version.base_model == str(fleet_dir / "model")
    assert len(version.checksum) == 64 and version.size_bytes > 0
    assert not version.active


def test_import_scans_the_spec_layout(ops, root):
    report = ops.import_root(root)
    assert [v.served_name for v in report.registered] == [
        "devops-lora@1.1.0", "math-lora@1.0.0", "python-lora@1.0.0", "python-lora@1.1.0"]
    again = ops.import_root(root)
    assert again.registered == [] and len(again.skipped) == 4


def test_missing_config(ops, root):
    (root / "python" / "v1.0.0" / "adapter_config.json").unlink()
    refused(ops, root / "python" / "v1.0.0", "adapter_config.json is missing")


def test_config_that_does_not_parse(ops, root):
    (root / "python" / "v1.0.0" / "adapter_config.json").write_text("{not json")
    refused(ops, root / "python" / "v1.0.0", "adapter_config.json does not parse")


def test_not_lora(ops, root):
    edit_config(root / "python" / "v1.0.0", peft_type="IA3")
    refused(ops, root / "python" / "v1.0.0", "peft_type is 'IA3'")


def test_rank_above_server_maximum(tmp_path, root):
    with Operations(Registry.open(tmp_path / "r2.db"), Fleet([]), adapter_roots=[root],
                    max_lora_rank=32) as ops:
        refused(ops, root / "math" / "v1.0.0", "rank 64 is above the servers' --max-lora-rank 32")


def test_rank_vllm_never_accepts(ops, root):
    edit_config(root / "python" / "v1.0.0", r=1024)
    refused(ops, root / "python" / "v1.0.0", "rank 1024 is above 512")


def test_rank_that_disagrees_with_tensors(ops, root):
    edit_config(root / "python" / "v1.0.0", r=16)
    refused(ops, root / "python" / "v1.0.0", r"lora_A.weight has shape \[32, 128\], expected \[16, 128\]")


def test_base_model_mismatch_with_configured_base(tmp_path, root):
    with Operations(Registry.open(tmp_path / "r3.db"), Fleet([]), adapter_roots=[root],
                    base_model="Qwen/QwQ-32B-AWQ") as ops:
        refused(ops, root / "python" / "v1.0.0", "is not the configured base model 'Qwen/QwQ-32B-AWQ'")


def test_tensor_shapes_against_the_base_model(ops, root):
    folder = root / "python" / "v1.0.0"
    # A rank-32 adapter made for a wider model (hidden 256): right rank, wrong base.
    write_safetensors(folder / "adapter_model.safetensors", {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": ("F32", [32, 256]),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": ("F32", [128, 32]),
    })
    edit_config(folder, target_modules=["q_proj"])
    refused(ops, folder, r"q_proj.lora_A.weight has shape \[32, 256\], expected \[32, 128\]")


def test_gqa_shapes_are_checked(ops, root):
    folder = root / "python" / "v1.0.0"
    # k_proj outputs kv_heads x head_dim = 2 x 32 = 64, not hidden (128).
    write_safetensors(folder / "adapter_model.safetensors", {
        "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight": ("F32", [32, 128]),
        "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight": ("F32", [128, 32]),
    })
    edit_config(folder, target_modules=["k_proj"])
    refused(ops, folder, r"k_proj.lora_B.weight has shape \[128, 32\], expected \[64, 32\]")


def test_layer_beyond_the_base_model(ops, root):
    folder = root / "python" / "v1.0.0"
    write_safetensors(folder / "adapter_model.safetensors", {
        "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight": ("F32", [32, 128]),
        "base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight": ("F32", [128, 32]),
    })
    edit_config(folder, target_modules=["q_proj"])
    refused(ops, folder, "layer 7 does not exist in a 2-layer base model")


def test_missing_weights(ops, root):
    (root / "python" / "v1.0.0" / "adapter_model.safetensors").unlink()
    refused(ops, root / "python" / "v1.0.0", "adapter_model.safetensors is missing")


def test_weights_not_safetensors(ops, root):
    (root / "python" / "v1.0.0" / "adapter_model.safetensors").write_bytes(b"\x01")
    refused(ops, root / "python" / "v1.0.0", "not a readable safetensors file")


def test_version_not_semantic(ops, root):
    os.rename(root / "python" / "v1.0.0", root / "python" / "latest")
    refused(ops, root / "python" / "latest", "invalid version 'latest'")
    refused(ops, root / "python" / "latest", "invalid version '1.0'", version="1.0")


def test_invalid_name(ops, root):
    refused(ops, root / "python" / "v1.0.0", "invalid specialist name 'Python!'", name="Python!")


def test_same_name_and_version_twice(ops, root):
    ops.register(root / "python" / "v1.0.0")
    refused(ops, root / "python" / "v1.1.0", "python-lora@1.0.0 is already registered",
            version="1.0.0")


def test_outside_adapter_roots(ops, tmp_path, root):
    outside = copy_adapter(root / "python" / "v1.0.0", tmp_path / "elsewhere" / "python" / "v1.0.0")
    refused(ops, outside, "outside the adapter roots")


def test_symlink_escaping_the_root(ops, tmp_path, root):
    outside = copy_adapter(root / "python" / "v1.0.0", tmp_path / "elsewhere" / "python" / "v2.0.0")
    (root / "python" / "v2.0.0").symlink_to(outside)
    refused(ops, root / "python" / "v2.0.0", "resolves to .*elsewhere.*outside the adapter roots")


def test_folder_that_does_not_exist(ops, root):
    refused(ops, root / "python" / "v9.0.0", "folder does not exist")


def test_metadata_file_sets_domains(ops, root):
    folder = root / "python" / "v1.1.0"
    (folder / "hi_moe.json").write_text(json.dumps({"domains": ["python", "asyncio"],
                                                     "description": "async specialist"}))
    version = ops.register(folder)
    assert version.domains == ["python", "asyncio"] and version.description == "async specialist"


def test_header_reader_matches_the_real_file(root):
    manifest = read_adapter(root / "devops" / "v1.1.0")
    header = read_safetensors_header(root / "devops" / "v1.1.0" / "adapter_model.safetensors")
    assert set(header) == set(manifest.tensors)
    assert manifest.target_modules == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj",
                                       "up_proj", "v_proj"]
