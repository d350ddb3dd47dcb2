"""Which keywords lean on a trade that their labelled tasks mostly are not.

For every keyword of core/data/router.toml that tiers 1-2 find in the labelled tasks (the holdout,
and the dev set when it is there), count the labels of the tasks it is found in; list those whose
own trade is under ``--max-share`` of them. A word such as "database" (data's, but most tasks
that say it run a database) misleads on tasks not yet seen even when the holdout, mended word by
word, no longer shows it: the nineteenth session weighed nineteen such words down (bench/README.md).

Run: .venv/bin/python bench/audit_keywords.py [--min-tasks N] [--max-share S] [--min-weight W]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.embeddings import LABELLED_FILE  # noqa: E402
from core.evidence import UNSERVED, Lexicon, Task, extract  # noqa: E402
from eval_tier3 import DEV, rows_of  # noqa: E402  (this folder is sys.path[0])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-tasks", type=int, default=12,
                        help="Only keywords found in this many tasks.")
    parser.add_argument("--max-share", type=float, default=0.4,
                        help="List a keyword when this share or less of its tasks are its trade's.")
    parser.add_argument("--min-weight", type=float, default=0.75, help="Only keywords this heavy.")
    args = parser.parse_args()

    lexicon = Lexicon.load()
    labels: dict[tuple[str, str], Counter] = defaultdict(Counter)
    weight: dict[tuple[str, str], float] = {}
    rows = [row for path in (LABELLED_FILE, DEV) if path.exists() for row in rows_of(path)]
    for row in rows:
        task = Task(objective=row["objective"], context_refs=row.get("context_refs") or [])
        extraction = extract(task, lexicon)
        keywords = {(e.domain, e.match): e.weight for e in extraction.evidence
                    if e.kind == "keyword" and e.weight > 0 and e.domain not in ("null", UNSERVED)}
        for key, keyword_weight in keywords.items():
            weight[key] = keyword_weight
            labels[key][row["expected"] or "null"] += 1
    found = []
    for key, counts in labels.items():
        n = sum(counts.values())
        share = counts[key[0]] / n
        if n >= args.min_tasks and share <= args.max_share and weight[key] >= args.min_weight:
            found.append((share, -n, key, counts))
    print(f"{len(rows)} labelled tasks; keywords of weight >= {args.min_weight} in >= {args.min_tasks} "
          f"of them whose own trade is <= {args.max_share:.0%} of their labels:")
    for share, minus_n, (domain, word), counts in sorted(found):
        top = ", ".join(f"{label} {count}" for label, count in counts.most_common(3))
        print(f"  {domain:8} {word!r:28} weight {weight[domain, word]:<5} {share:5.0%} "
              f"of {-minus_n:4d}  ({top})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
