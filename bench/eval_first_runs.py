"""The router on tasks it had never seen: each blind round's tasks as tiers 1-2 stood when the
round was first routed, with tier 3 trained only on the rounds before.

The holdout's later batches (holdout324 on) were written one round at a time, routed, and only
then mended for: words were added for their misses, and the round joined tier 3's training
set. Scoring them with today's router flatters it. This script rebuilds the first run instead:

- tiers 1-2: for each round, the commit they were at when it was first routed
  (bench/first_runs.tsv) is checked out in a temporary git worktree and extracts the round's
  tasks (the rebuilt decisions match the ones recorded at the time for all 2,083 tasks);
- tier 3: trained on the domain examples and the holdout batches before each chunk of rounds
  (``--chunk`` rounds at a time), and scores that chunk;
- today's tier-3 combination (``Router.weigh_tier3``) then weighs the old extractions, with the
  thresholds given here, so a change to how tier 3 joins tiers 1-2 is measured on tasks neither
  had seen.

Needs the repository's git history and the embeddings extra; about 40 minutes here for 6,530
tasks (seconds with --inputs once it is written).
Run: .venv/bin/python bench/eval_first_runs.py [--overrule-threshold P] [--threshold P]
     [--hinted-threshold P] [--long-threshold P] [--misses FILE] [--inputs FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.embeddings import LABELLED_FILE, DomainEmbedder, joint_probabilities  # noqa: E402
from core.evidence import Evidence, Extraction, Task  # noqa: E402
from core.router import LONG_TEXT_WORDS, Router, RoutingTable, domain_of  # noqa: E402
from eval_tier3 import Fixed, HoldoutModels  # noqa: E402  (this folder is sys.path[0])

FIRST_RUNS = Path(__file__).with_name("first_runs.tsv")

# Run inside a worktree of an old commit: its own tiers 1-2 extract and route each task.
EXTRACT_THEN = r"""
import dataclasses, json, sys
sys.path.insert(0, ".")
from core.evidence import Task, extract, Lexicon
from core.router import Router, RoutingTable, domain_of
lexicon, table = Lexicon.load(), RoutingTable.seed()
router = Router(table, lexicon=lexicon)
out = []
for row in json.load(sys.stdin):
    task = Task(objective=row["objective"], context_refs=row["context_refs"])
    extraction = dataclasses.asdict(extract(task, lexicon))
    out.append({"extraction": extraction, "routed": domain_of(router.route(task), table)})
json.dump(out, sys.stdout)
"""


def first_runs() -> dict[int, str]:
    rows = (line.split("\t") for line in FIRST_RUNS.read_text().splitlines()
            if line.strip() and not line.startswith("#"))
    return {int(batch): commit.strip() for batch, commit in rows}


def batch_of(row: dict) -> int:
    name = row["id"].rsplit("-", 1)[0].removeprefix("holdout")
    return int(name) if name.isdigit() else -1


def tier3_before(holdout: list[dict], batches: dict[int, str], chunk: int) -> dict[str, dict]:
    """Each round's tier 3 probabilities from models trained only on the rounds before its chunk."""
    import numpy as np

    models = HoldoutModels(holdout, DomainEmbedder.load())
    numbers = np.array([batch_of(row) for row in holdout])
    probabilities = {}
    first, last = min(batches), max(batches)
    for start in range(first, last + 1, chunk):
        test = (numbers >= start) & (numbers < start + chunk) & np.isin(numbers, list(batches))
        if not test.any():
            continue
        train = numbers < start
        classes, sentence, lexical = models.scores(train, test)
        joint = joint_probabilities(sentence, lexical)
        for row, p in zip((r for r, t in zip(holdout, test) if t), joint):
            probabilities[row["id"]] = dict(zip(classes, map(float, p)))
        print(f"  tier 3 for rounds {start}-{min(start + chunk, last + 1) - 1}: trained on "
              f"{int(train.sum())} holdout tasks", file=sys.stderr)
    return probabilities


def extractions_then(rows_by_commit: dict[str, list[dict]]) -> dict[str, dict]:
    """Each task's tiers-1-2 extraction and routing at its round's first-run commit."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for commit, rows in rows_by_commit.items():
            tree = Path(tmp) / commit[:12]
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree),
                            commit], check=True)
            try:
                done = subprocess.run([sys.executable, "-c", EXTRACT_THEN], cwd=tree, check=True,
                                      input=json.dumps(rows), capture_output=True, text=True)
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               check=True)
            for row, result in zip(rows, json.loads(done.stdout)):
                out[row["id"]] = result
    return out


def rebuilt(data: dict) -> Extraction:
    fields = {k: v for k, v in data.items() if k in Extraction.__slots__}
    fields["evidence"] = [Evidence(**item) for item in data["evidence"]]
    return Extraction(**fields)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunk", type=int, default=25, help="Rounds per tier 3 training.")
    parser.add_argument("--threshold", type=float, default=0.8,
                        help="Tier 3's threshold when tiers 1-2 find nothing (embedding_threshold).")
    parser.add_argument("--overrule-threshold", type=float, default=0.98,
                        help="How sure tier 3 must be to overrule a lead of words (above 1: never).")
    parser.add_argument("--hinted-threshold", type=float, default=0.5,
                        help="... when tiers 1-2 found words of that domain, too few to decide.")
    parser.add_argument("--long-threshold", type=float, default=0.6,
                        help=f"... when the text has {LONG_TEXT_WORDS} words or more.")
    parser.add_argument("--misses", type=Path,
                        help="Write the tasks routed wrong with tier 3 here, one JSON line each.")
    parser.add_argument("--inputs", type=Path,
                        help="Keep the rebuilt extractions and tier 3 probabilities in this JSON "
                             "file (written if missing, read if present), so trying other "
                             "thresholds takes seconds instead of the rebuild's minutes.")
    args = parser.parse_args()

    batches = first_runs()
    holdout = [json.loads(line) for line in LABELLED_FILE.read_text().splitlines() if line.strip()]
    rounds = [row for row in holdout if batch_of(row) in batches]
    by_commit: dict[str, list[dict]] = defaultdict(list)
    for row in rounds:
        by_commit[batches[batch_of(row)]].append(row)
    print(f"{len(rounds)} tasks of {len(batches)} blind rounds, tiers 1-2 at {len(by_commit)} "
          f"commits", file=sys.stderr)
    if args.inputs and args.inputs.exists():
        saved = json.loads(args.inputs.read_text())
        probabilities, then = saved["tier3"], saved["tiers_1_2"]
        if set(then) != {row["id"] for row in rounds}:
            parser.error(f"{args.inputs} was built from other rounds: delete it to rebuild")
    else:
        probabilities = tier3_before(holdout, batches, args.chunk)
        then = extractions_then(by_commit)
        if args.inputs:
            args.inputs.write_text(json.dumps({"tier3": probabilities, "tiers_1_2": then}))

    table = RoutingTable.seed()
    router = Router(table, embedding_threshold=args.threshold,
                    overrule_threshold=args.overrule_threshold,
                    hinted_text_threshold=args.hinted_threshold,
                    long_text_threshold=args.long_threshold)
    # today's tier 3 on the extraction tiers 1-2 made then
    router.extract = lambda task: router.weigh_tier3(task, rebuilt(then[task.id]["extraction"]))
    right12: Counter = Counter()
    right123: Counter = Counter()
    total: Counter = Counter()
    changed = Counter()
    confused: Counter = Counter()
    misses = []
    for row in rounds:
        want = row["expected"]
        old = then[row["id"]]
        task = Task(id=row["id"], objective=row["objective"], context_refs=row["context_refs"])
        # per task, not per text: a text asked in two rounds has each round's probabilities
        router.embedder = Fixed({row["objective"]: probabilities[row["id"]]})
        got = domain_of(router.route(task), table)
        domain = want or "null"
        total[domain] += 1
        right12[domain] += old["routed"] == want
        right123[domain] += got == want
        if got != want:
            confused[domain, got or "null"] += 1
            misses.append({"id": row["id"], "expected": want, "routed": got,
                           "routed_by_tiers_1_2": old["routed"], "objective": row["objective"],
                           "context_refs": row["context_refs"]})
        if got != old["routed"]:
            changed["fixed" if got == want else "broke" if old["routed"] == want else "other"] += 1
    n, r12, r123 = sum(total.values()), sum(right12.values()), sum(right123.values())
    print(f"first runs of {n} tasks (overrule at {args.overrule_threshold}, threshold "
          f"{args.threshold}, hinted {args.hinted_threshold}, long {args.long_threshold}): "
          f"tiers 1+2 {r12} = {r12 / n:.1%}; tiers 1+2+3 {r123} = {r123 / n:.1%} (tier 3 fixed "
          f"{changed['fixed']}, broke {changed['broke']}, other {changed['other']})")
    for domain in sorted(total):
        print(f"  {domain:8s} {right12[domain]:4d} / {total[domain]:4d} = "
              f"{right12[domain] / total[domain]:6.1%}   {right123[domain]:4d} = "
              f"{right123[domain] / total[domain]:6.1%}")
    print("misses with tier 3, labelled -> routed:", ", ".join(
        f"{want} -> {got} {count}" for (want, got), count in confused.most_common()))
    if args.misses:
        args.misses.write_text("".join(json.dumps(miss) + "\n" for miss in misses))
    return 0


if __name__ == "__main__":
    sys.exit(main())
