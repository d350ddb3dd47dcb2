"""Tier 3: how often it is right on tasks it was not trained on, what it adds to tiers 1-2, and
how close the int8 ONNX model stays to the fp32 sentence model it was built from.

Tier 3's two models (the sentence model's domain prototypes and the lexical model) are trained
on the domain examples and the holdout (core/data/router_holdout.jsonl). So:
- the holdout is scored leave-one-batch-out: each batch's tasks are scored by models trained
  without that batch (batches were written one at a time, so a batch is the honest unit), or,
  with --folds N, in N folds of whole batches (minutes instead of most of an hour);
- the dev set (shared/data/routing_dev.jsonl) is scored by the shipped models, which never
  saw it.

Run: .venv/bin/python bench/eval_tier3.py [--folds N] [--no-fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.embeddings import (EXAMPLES_FILE, LABELLED_FILE, MAX_TOKENS, DomainEmbedder,  # noqa: E402
                             _packaged_model, _softmax, _tf_idf, joint_probabilities,
                             train_prototypes, train_word_model, training_examples, word_counts)
from core.evidence import Task  # noqa: E402
from core.router import LONG_TEXT_WORDS, Router, RoutingTable, domain_of  # noqa: E402

DEV = ROOT.parent / "shared" / "data" / "routing_dev.jsonl"
VERBOSE = False
ROUTER_OPTIONS: dict = {}  # thresholds given on the command line; the router's defaults otherwise
BASE_MOVED = "base model's task sent to a specialist"


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Fixed:
    """An embedder that answers with probabilities computed beforehand (leave-one-batch-out)."""

    def __init__(self, probabilities: dict[str, dict[str, float]]):
        self.probabilities = probabilities

    def similarities(self, text: str) -> dict[str, float]:
        return self.probabilities[text]


class HoldoutModels:
    """The domain examples and the holdout, embedded and counted once; tier 3's two models
    trained on the examples and any part of the holdout, scoring any other part."""

    def __init__(self, holdout: list[dict], embedder: DomainEmbedder):
        import numpy as np

        self.base_pairs = training_examples(tomllib.loads(EXAMPLES_FILE.read_text()), labelled=None)
        base_texts = [text for text, _ in self.base_pairs]
        hold_texts = [row["objective"] for row in holdout]
        self.base_x, self.hold_x = embedder.embed(base_texts), embedder.embed(hold_texts)
        self.base_c = word_counts(base_texts, embedder.vectorisers)
        self.hold_c = word_counts(hold_texts, embedder.vectorisers)
        self.labels = np.array([row["expected"] or "null" for row in holdout])

    def scores(self, train: Any, test: Any) -> tuple[list[str], Any, Any]:
        """(classes, sentence model's, lexical model's probabilities) for the ``test`` rows, both
        models trained on the examples and the ``train`` rows (boolean masks over the holdout)."""
        import numpy as np
        from scipy.sparse import vstack

        labels = [label for _, label in self.base_pairs] + list(self.labels[train])
        classes, weights, biases = train_prototypes(np.vstack([self.base_x, self.hold_x[train]]),
                                                    labels)
        _, idf, word_weights, word_biases = train_word_model(
            vstack([self.base_c, self.hold_c[train]]).tocsr(), labels)
        return (classes, _softmax(self.hold_x[test] @ weights + biases),
                _softmax(_tf_idf(self.hold_c[test], idf) @ word_weights.T + word_biases))


def pipeline(rows: list[dict], embedder) -> tuple[int, int, Counter]:
    """Right answers with tiers 1+2 and with tiers 1+2+3; how tier 3 changed decisions."""
    table = RoutingTable.seed()
    plain = Router(table)
    full = Router(table, embedder=embedder, **ROUTER_OPTIONS)
    right12 = right123 = 0
    changes: Counter = Counter()
    for row in rows:
        task = Task(objective=row["objective"], context_refs=row["context_refs"])
        want = row["expected"]
        got12, got123 = domain_of(plain.route(task), table), domain_of(full.route(task), table)
        right12 += got12 == want
        right123 += got123 == want
        if got12 != got123:
            changes["fixed" if got123 == want else "broke" if got12 == want else "other"] += 1
            if want is None and got12 is None:
                changes[BASE_MOVED] += 1
            if VERBOSE:
                print(f"    {want} -> tiers 1+2 {got12}, 1+2+3 {got123}: {row['objective'][:90]!r}")
    return right12, right123, changes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-fp32", action="store_true", help="Skip the int8-vs-fp32 comparison.")
    parser.add_argument("--changes", action="store_true", help="Print every decision tier 3 changes.")
    parser.add_argument("--only", choices=["sentence", "lexical"],
                        help="Route the holdout with one of the two models alone.")
    parser.add_argument("--threshold", type=float, help="Tier 3's threshold (default: the router's).")
    parser.add_argument("--hinted-threshold", type=float,
                        help="Tier 3's threshold when tiers 1-2 found too few words of its domain.")
    parser.add_argument("--long-threshold", type=float,
                        help=f"Tier 3's threshold for a text of {LONG_TEXT_WORDS} words or more.")
    parser.add_argument("--folds", type=int, default=0,
                        help="Score the holdout in this many folds of whole batches instead of "
                             "leaving one batch out at a time.")
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.changes
    for option, value in [("embedding_threshold", args.threshold),
                          ("hinted_text_threshold", args.hinted_threshold),
                          ("long_text_threshold", args.long_threshold)]:
        if value is not None:
            ROUTER_OPTIONS[option] = value
    import numpy as np

    holdout, dev = rows_of(LABELLED_FILE), rows_of(DEV) if DEV.exists() else []
    int8 = DomainEmbedder.load()
    models = HoldoutModels(holdout, int8)
    hold_x, labels = models.hold_x, models.labels
    batches = np.array([row["id"].rsplit("-", 1)[0] for row in holdout])
    order = list(dict.fromkeys(batches))
    if args.folds:
        fold_of = {batch: k % args.folds for k, batch in enumerate(order)}
        groups = [np.array([fold_of[b] == k for b in batches]) for k in range(args.folds)]
        how = f"in {args.folds} folds of whole batches"
    else:
        groups = [batches == batch for batch in order]
        how = "leave-one-batch-out"

    probabilities: dict[str, dict[str, float]] = {}
    alone = {"sentence": 0, "lexical": 0, "both": 0}
    for test in groups:
        classes, sentence, lexical = models.scores(~test, test)
        both = joint_probabilities(sentence, lexical)
        for name, p in (("sentence", sentence), ("lexical", lexical), ("both", both)):
            alone[name] += int((np.array(classes)[p.argmax(axis=1)] == labels[test]).sum())
        routed = {"sentence": sentence, "lexical": lexical}.get(args.only, both)
        for row, probs in zip((r for r, t in zip(holdout, test) if t), routed):
            probabilities[row["objective"]] = dict(zip(classes, map(float, probs)))
    print(f"holdout, {len(holdout)} tasks in {len(order)} batches, {how}"
          + (f", routed with the {args.only} model alone" if args.only else "") + ":")
    print("  tier 3 alone (likeliest domain): " + ", ".join(
        f"{name} {n}/{len(holdout)} = {n / len(holdout):.1%}" for name, n in alone.items()))
    right12, right123, changes = pipeline(holdout, Fixed(probabilities))
    print(f"  tiers 1+2: {right12}/{len(holdout)}; tiers 1+2+3: {right123}/{len(holdout)} "
          f"(tier 3 fixed {changes['fixed']}, broke {changes['broke']}, other {changes['other']}; "
          f"of the {int((labels == 'null').sum())} base model's tasks, "
          f"{changes[BASE_MOVED]} sent to a specialist)")
    if dev:
        right12, right123, changes = pipeline(dev, int8)
        print(f"dev set, {len(dev)} tasks, shipped prototypes (never trained on it): tiers 1+2: "
              f"{right12}/{len(dev)}; tiers 1+2+3: {right123}/{len(dev)} (fixed {changes['fixed']}, "
              f"broke {changes['broke']})")
        want = np.array([row["expected"] or "null" for row in dev])
        likeliest = [max(p, key=p.get) for p in (int8.similarities(row["objective"]) for row in dev)]
        right = int((np.array(likeliest) == want).sum())
        print(f"  tier 3 alone on the dev set: {right}/{len(dev)} = {right / len(dev):.1%}")

    if not args.no_fp32:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        source = _packaged_model()
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True).eval()
        texts = [row["objective"] for row in holdout + dev]
        reference = []
        for text in texts:
            batch = tokenizer([text], truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                vector = model(**batch).last_hidden_state[0].mean(dim=0)
            reference.append((vector / vector.norm()).numpy())
        reference = np.stack(reference)
        quantised = np.vstack([hold_x, int8.embed([row["objective"] for row in dev])]) if dev else hold_x
        cosines = (reference * quantised).sum(axis=1)
        print(f"int8 vs fp32 embeddings over {len(texts)} tasks: cosine min {cosines.min():.3f}, "
              f"median {np.median(cosines):.4f}")
        p_int8 = _softmax(quantised @ int8.weights + int8.biases)
        p_fp32 = _softmax(reference @ int8.weights + int8.biases)
        print(f"  shipped prototypes on the fp32 embeddings: largest change of a probability "
              f"{np.abs(p_int8 - p_fp32).max():.3f}; likeliest domain differs for "
              f"{int((p_int8.argmax(axis=1) != p_fp32.argmax(axis=1)).sum())} tasks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
