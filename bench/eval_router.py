"""Router accuracy on labelled tasks (default: shared/data/routing_dev.jsonl) against the spec's
seed fleet: per domain (null = the base model should answer), with and without tier 3.

Run: .venv/bin/python bench/eval_router.py [--data FILE] [--embeddings] [--errors]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.router import Router, RoutingTable, Task, domain_of  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "routing_dev.jsonl"


def evaluate(rows: list[dict], router: Router, table: RoutingTable, show_errors: bool) -> dict:
    total, right = Counter(), Counter()
    for row in rows:
        task = Task(id=row["id"], objective=row["objective"], context_refs=row.get("context_refs") or [])
        decision = router.route(task)
        got = domain_of(decision, table)
        want = row["expected"]
        key = want or "null"
        total[key] += 1
        if got == want:
            right[key] += 1
        elif show_errors:
            ex = decision.extraction
            print(f"  MISS {row['id']}: want {want} got {got} scores={ex.scores} null={ex.null_score}"
                  f" tier={decision.tier}\n       {row['objective'][:140]!r} {row.get('context_refs')}")
    return {"total": total, "right": right}


def report(label: str, result: dict) -> float:
    total, right = result["total"], result["right"]
    print(f"\n{label}")
    print(f"  {'domain':8} {'right':>5} / {'n':>3}  accuracy")
    for key in sorted(total):
        print(f"  {key:8} {right[key]:5} / {total[key]:3}  {right[key] / total[key]:6.1%}")
    overall = sum(right.values()) / sum(total.values())
    worst = min(right[k] / total[k] for k in total)
    print(f"  overall {sum(right.values())} / {sum(total.values())} = {overall:.1%}; "
          f"worst domain {worst:.1%} (target >= 95% in every domain)")
    return overall


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--embeddings", action="store_true", help="Also evaluate with tier 3.")
    parser.add_argument("--errors", action="store_true", help="Print every miss.")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    table = RoutingTable.seed()
    report("tiers 1+2 (no embeddings)", evaluate(rows, Router(table), table, args.errors))
    if args.embeddings:
        from core.embeddings import DomainEmbedder

        router = Router(table, embedder=DomainEmbedder.load())
        report("tiers 1+2+3 (embeddings)", evaluate(rows, router, table, args.errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
