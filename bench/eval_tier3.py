"""Tier 3 fidelity: the int8 ONNX model the router runs against the fp32 sentence model it was
built from (torch, as sentence-transformers runs it), on every labelled task (dev set + holdout).

Prints the largest change of a domain similarity, the cosine between the two embeddings of each
task, and how often the nearest domain centroid is the labelled domain for each model.

Run: .venv/bin/python bench/eval_tier3.py
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.embeddings import EXAMPLES_FILE, MAX_TOKENS, DomainEmbedder, _packaged_model  # noqa: E402

SETS = [ROOT.parent / "shared" / "data" / "routing_dev.jsonl", ROOT / "tests" / "data" / "router_holdout.jsonl"]


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    rows = [json.loads(line) for path in SETS if path.exists()
            for line in path.read_text().splitlines() if line.strip()]
    examples = tomllib.loads(EXAMPLES_FILE.read_text())
    domains = list(examples)
    int8 = DomainEmbedder.load()
    source = _packaged_model()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model = AutoModel.from_pretrained(source, local_files_only=True).eval()

    def fp32(texts: list[str]):
        out = []
        for text in texts:
            batch = tokenizer([text], truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                vector = model(**batch).last_hidden_state[0].mean(dim=0)
            out.append((vector / vector.norm()).numpy())
        return np.stack(out)

    def centroids(embed) -> np.ndarray:
        rows_ = []
        for domain in domains:
            texts = [examples[domain].get("description", "")] + list(examples[domain].get("examples", []))
            mean = embed([t for t in texts if t]).mean(axis=0)
            rows_.append(mean / np.linalg.norm(mean))
        return np.stack(rows_)

    texts = [row["objective"] for row in rows]
    want = [row["expected"] or "null" for row in rows]
    reference, quantised = fp32(texts), int8.embed(texts)
    sims_ref, sims_q = reference @ centroids(fp32).T, quantised @ int8.centroids.T
    cosines = (reference * quantised).sum(axis=1)
    print(f"{len(rows)} labelled tasks")
    print(f"largest change of a domain similarity, int8 vs fp32: {np.abs(sims_q - sims_ref).max():.3f}")
    print(f"cosine(int8, fp32) per task: min {cosines.min():.3f}, median {np.median(cosines):.4f}")
    for label, sims in (("fp32", sims_ref), ("int8", sims_q)):
        right = sum(domains[i] == w for i, w in zip(sims.argmax(axis=1), want))
        print(f"nearest centroid is the labelled domain ({label}): {right}/{len(rows)} = "
              f"{right / len(rows):.1%}")
    changed = int((sims_ref.argmax(axis=1) != sims_q.argmax(axis=1)).sum())
    print(f"tasks whose nearest centroid differs between the two: {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
