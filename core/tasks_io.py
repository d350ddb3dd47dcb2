"""Task files for batch routing: JSON lines or CSV, read with a clear error per bad row; and
routing gaps written as task lines for an operator to label."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import ValidationError

from core.errors import HiMoeError
from core.evidence import Task
from core.router import expected_domain


class TaskFileError(HiMoeError):
    pass


def read_tasks(data: bytes | str, filename: str = "tasks.jsonl") -> list[Task]:
    """JSONL ({id, objective, context_refs}) or CSV (columns id, objective, context_refs with
    refs separated by ';'). Every bad row is reported with its line number; nothing is half-read."""
    return read_labelled_tasks(data, filename)[0]


def read_labelled_tasks(data: bytes | str,
                        filename: str = "tasks.jsonl") -> tuple[list[Task], dict[str, str | None]]:
    """The tasks, and the label of each task that has one (an ``expected`` field or column: a
    domain key, or null / empty for the base model), by task id."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    tasks, problems = [], []
    labels: dict[str, str | None] = {}
    if filename.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "objective" not in reader.fieldnames:
            raise TaskFileError(f"{filename}: a CSV needs an 'objective' column "
                                f"(found: {', '.join(reader.fieldnames or []) or 'no header'})")
        rows = [(i + 2, {"id": r.get("id") or None, "objective": r.get("objective") or "",
                         "context_refs": [p.strip() for p in (r.get("context_refs") or "").split(";")
                                          if p.strip()]}
                 | ({"expected": r["expected"]} if "expected" in r else {}))
                for i, r in enumerate(reader)]
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((i, json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(f"line {i}: not JSON ({exc.msg})")
    for number, row in rows:
        try:
            task = Task.model_validate(row)
        except ValidationError as exc:
            problems.append(f"line {number}: " + "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()))
            continue
        if not task.objective.strip():
            problems.append(f"line {number}: objective is empty")
            continue
        task = task.model_copy(update={"id": task.id or f"row-{number}"})
        if isinstance(row, dict) and "expected" in row:
            try:
                labels[task.id] = expected_domain(row["expected"])
            except ValueError as exc:
                problems.append(f"line {number}: {exc}")
                continue
        tasks.append(task)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TaskFileError(f"{filename}: " + "; ".join(problems[:5]) + more)
    if not tasks:
        raise TaskFileError(f"{filename} holds no tasks")
    return tasks, labels


def labelling_line(gap: dict[str, Any]) -> dict[str, Any]:
    """A routing gap as a task line to label. No "expected" until someone has labelled it: an
    unlabelled line must never be learned from as the base model's."""
    line = {"id": gap["task_id"] or f"gap-{gap['id']}", "objective": gap["objective"],
            "context_refs": gap["context_refs"]}
    if gap.get("label"):
        line["expected"] = None if gap["label"] == "null" else gap["label"]
    return line
