"""Task files for batch routing and labelled experiments: JSONL and CSV, labels, clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from core.cli import main
from core.router import accuracy_by_domain
from core.tasks_io import TaskFileError, read_labelled_tasks, read_tasks


def test_jsonl_with_and_without_labels():
    data = "\n".join(json.dumps(row) for row in (
        {"id": "a", "objective": "Fix the pytest fixture", "expected": "Python"},
        {"objective": "Write a poem", "expected": None},
        {"objective": "Tidy the docs", "context_refs": ["docs/index.md"]},
    ))
    tasks, labels = read_labelled_tasks(data)
    assert [t.id for t in tasks] == ["a", "row-2", "row-3"]
    assert labels == {"a": "python", "row-2": None}  # row-3 has no label: not scored
    assert read_tasks(data) == tasks


def test_csv_labels_empty_means_the_base_model():
    tasks, labels = read_labelled_tasks("id,objective,context_refs,expected\n"
                                        "1,Fix the pytest fixture,tests/conftest.py,python\n"
                                        "2,Write a poem,,\n", "tasks.csv")
    assert [t.context_refs for t in tasks] == [["tests/conftest.py"], []]
    assert labels == {"1": "python", "2": None}


def test_bad_rows_are_named_and_nothing_is_half_read():
    data = "\n".join([json.dumps({"objective": "ok", "expected": "python"}),
                      json.dumps({"objective": "x", "expected": "pyton"}),
                      "{not json", json.dumps({"objective": "  "})])
    with pytest.raises(TaskFileError) as info:
        read_labelled_tasks(data, "mine.jsonl")
    message = info.value.message
    assert "line 2: expected 'pyton' is not a domain" in message
    assert "line 3: not JSON" in message and "line 4: objective is empty" in message


def test_accuracy_by_domain_counts_per_expected_domain():
    assert accuracy_by_domain([("python", "python"), ("python", None), (None, None), ("data", "web")]) \
        == {"data": (0, 1), "null": (1, 1), "python": (1, 2)}


def test_route_scores_a_labelled_file():
    lines = "\n".join(json.dumps(t) for t in (
        {"id": "py", "objective": "Fix the flaky pytest fixture", "expected": "python"},
        {"id": "poem", "objective": "Write a poem for my mother", "expected": None},
        {"id": "sql", "objective": "Write a SQL query joining orders and customers", "expected": "web"},
        {"id": "free", "objective": "Tune the CSS grid"}))
    result = CliRunner().invoke(main, ["route", "--fleet", "seed", "--no-embeddings"], input=lines)
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["id"], o.get("correct")) for o in out] == [("py", True), ("poem", True), ("sql", False),
                                                          ("free", None)]
    assert "overall 2/3 = 66.7%" in result.stderr
