"""Router accuracy on labelled tasks (default: shared/data/routing_dev.jsonl) against the spec's
seed fleet: per domain (null = the base model should answer), with and without tier 3.

Run: .venv/bin/python bench/eval_router.py [--data FILE] [--embeddings] [--errors]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.evidence import Task  # noqa: E402
from core.router import (Router, RoutingTable, accuracy_by_domain, domain_of,  # noqa: E402
                         expected_domain)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "routing_dev.jsonl"


def evaluate(rows: list[dict], router: Router, table: RoutingTable, show_errors: bool) -> dict:
    pairs = []
    for row in rows:
        task = Task(id=row["id"], objective=row["objective"], context_refs=row.get("context_refs") or [])
        decision = router.route(task)
        got, want = domain_of(decision, table), expected_domain(row["expected"])
        pairs.append((want, got))
        if got != want and show_errors:
            ex = decision.extraction
            print(f"  MISS {row['id']}: want {want} got {got} scores={ex.scores} null={ex.null_score}"
                  f" tier={decision.tier}\n       {row['objective'][:140]!r} {row.get('context_refs')}")
    return accuracy_by_domain(pairs)


def report(label: str, result: dict[str, tuple[int, int]]) -> float:
    print(f"\n{label}")
    print(f"  {'domain':8} {'right':>5} / {'n':>3}  accuracy")
    for key, (right, total) in result.items():
        print(f"  {key:8} {right:5} / {total:3}  {right / total:6.1%}")
    right = sum(r for r, _ in result.values())
    total = sum(t for _, t in result.values())
    worst = min(r / t for r, t in result.values())
    print(f"  overall {right} / {total} = {right / total:.1%}; "
          f"worst domain {worst:.1%} (target >= 95% in every domain)")
    return right / total


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
