"""The registry on real SQLite files: schema, ids, lifecycle rules, stats and aggregates."""

from __future__ import annotations

import sqlite3

import pytest

from core.db import MIGRATIONS, apply_migrations, applied_migrations, open_db
from core.registry import (
    Outcome,
    Registry,
    RegistryError,
)
from core import latency
from core.router import RoutingTable, canary_bucket
from tests.helpers import manifest


@pytest.fixture
def registry(tmp_path):
    with Registry.open(tmp_path / "registry.db", operator="alice") as reg:
        yield reg


def add(reg: Registry, name: str, version: str, rank: int = 16):
    return reg.register(manifest(f"/adapters/{name}/v{version}", rank), name=name, version=version,
                        domains=["python"])


def test_fresh_file_is_wal_and_fully_migrated(tmp_path):
    db = open_db(tmp_path / "r.db")
    assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert applied_migrations(db) == [name for name, _ in MIGRATIONS]
    assert {"adapters", "outcomes", "routing_gaps", "health_checks", "alert_thresholds",
            "audit", "counters", "adapter_loads", "alerts", "metric_scrapes", "rollups_hour",
            "rollups_day"} <= set(db.table_names())


def test_older_file_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    # A file as the first release wrote it: only the first migration applied, with data in it.
    conn = sqlite3.connect(path)
    conn.execute("create table _migrations (id integer primary key, name text unique, applied_at real)")
    conn.close()
    db = open_db(path, migrate=False)
    name, first = MIGRATIONS[0]
    first(db)
    db.execute("insert into _migrations (name, applied_at) values (?, 0)", [name])
    Registry(db).register(manifest("/a/python/v1.0.0"), name="python-lora", version="1.0.0",
                          domains=["python"])
    Registry(db).record_gap("Rotate the frobnicator keys", reason="no_domain_match")
    db.conn.close()

    with Registry.open(path) as reg:
        assert applied_migrations(reg.db) == [n for n, _ in MIGRATIONS]
        assert "alerts" in reg.db.table_names()
        assert reg.get("python-lora", "1.0.0").lora_int_id == 1
        assert apply_migrations(reg.db) == []  # idempotent
        # a gap recorded before labels existed can be labelled after the upgrade
        gap = reg.gaps()[0]
        assert gap["label"] is None
        assert reg.label_gap(gap["id"], "devops")["label"] == "devops"


def test_gap_labels_are_validated_audited_and_feed_tier3(tmp_path):
    with Registry.open(tmp_path / "r.db", operator="alice") as reg:
        reg.record_gap("Rotate the frobnicator keys", reason="no_domain_match")
        reg.record_gap("Write a haiku about rain", reason="non_technical_task")
        first, second = sorted(g["id"] for g in reg.gaps())
        with pytest.raises(RegistryError, match="'rust' is not a domain"):
            reg.label_gap(first, "rust")
        with pytest.raises(RegistryError, match="no routing gap 999"):
            reg.label_gap(999, "devops")
        assert reg.labelled_gaps() == []  # nothing half-written
        reg.label_gap(first, "python")
        reg.label_gap(first, "devops")  # relabelled
        reg.label_gap(second, None)  # the base model was right
        assert reg.labelled_gaps() == [("Rotate the frobnicator keys", "devops"),
                                       ("Write a haiku about rain", "null")]
        entries = reg.audit_log(action="gap-label")
        assert [(e.target, e.details["label"], e.details["old_label"]) for e in reversed(entries)] == [
            (f"gap:{first}", "python", None), (f"gap:{first}", "devops", "python"),
            (f"gap:{second}", "null", None)]
        assert entries[0].operator == "alice"


def test_ids_start_at_one_and_are_never_reused(registry):
    a = add(registry, "python-lora", "1.0.0")
    b = add(registry, "python-lora", "1.1.0")
    assert (a.lora_int_id, b.lora_int_id) == (1, 2)
    registry.retire("python-lora", "1.1.0", delete=True)
    c = add(registry, "python-lora", "1.1.0")  # the same name and version again
    assert c.lora_int_id == 3
    registry.retire("python-lora", "1.1.0", delete=True)
    registry.retire("python-lora", "1.0.0", delete=True)
    assert add(registry, "math-lora", "1.0.0").lora_int_id == 4


def test_served_name_per_version(registry):
    assert add(registry, "python-lora", "1.2.0").served_name == "python-lora@1.2.0"


def test_database_enforces_one_active_version(registry):
    add(registry, "python-lora", "1.0.0")
    add(registry, "python-lora", "1.1.0")
    registry.promote("python-lora", "1.0.0")
    with pytest.raises(sqlite3.IntegrityError):
        registry.db.execute("update adapters set active = 1 where version = '1.1.0'")
    with pytest.raises(sqlite3.IntegrityError):  # active and canary at once
        registry.db.execute("update adapters set canary_share = 0.5 where version = '1.0.0'")


def test_promote_rollback_chain(registry):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        add(registry, "python-lora", version)
    old, new = registry.promote("python-lora", "1.0.0")
    assert old is None and new.active and new.previous_version is None
    old, new = registry.promote("python-lora", "1.1.0")
    assert old.version == "1.0.0" and new.previous_version == "1.0.0"
    registry.promote("python-lora", "1.2.0")
    current, previous = registry.rollback("python-lora")
    assert (current.version, previous.version) == ("1.2.0", "1.1.0")
    assert registry.get_active("python-lora").version == "1.1.0"
    registry.rollback("python-lora")
    assert registry.get_active("python-lora").version == "1.0.0"
    with pytest.raises(RegistryError, match="no previous version"):
        registry.rollback("python-lora")
    assert [v.active for v in registry.versions("python-lora")] == [True, False, False]


def test_rollback_without_active_version(registry):
    add(registry, "python-lora", "1.0.0")
    with pytest.raises(RegistryError, match="no active version"):
        registry.rollback("python-lora")


def test_promote_of_active_and_unknown_versions(registry):
    add(registry, "python-lora", "1.0.0")
    registry.promote("python-lora", "1.0.0")
    with pytest.raises(RegistryError, match="already the active"):
        registry.promote("python-lora", "1.0.0")
    with pytest.raises(RegistryError, match="has no version 9.9.9 .registered: 1.0.0"):
        registry.promote("python-lora", "9.9.9")


def test_retire_refuses_the_active_version_unless_forced(registry):
    add(registry, "python-lora", "1.0.0")
    registry.promote("python-lora", "1.0.0")
    with pytest.raises(RegistryError, match="is the active version"):
        registry.retire("python-lora", "1.0.0")
    assert registry.get_active("python-lora") is not None
    registry.retire("python-lora", "1.0.0", force=True)
    retired = registry.get("python-lora", "1.0.0")
    assert retired.status == "retired" and not retired.active
    with pytest.raises(RegistryError, match="retired"):
        registry.promote("python-lora", "1.0.0")


def test_canary_rules(registry):
    add(registry, "python-lora", "1.0.0")
    add(registry, "python-lora", "1.1.0")
    add(registry, "python-lora", "1.2.0")
    registry.promote("python-lora", "1.0.0")
    with pytest.raises(RegistryError, match="between 0 and 1"):
        registry.set_canary("python-lora", "1.1.0", 1.5)
    with pytest.raises(RegistryError, match="is the active version"):
        registry.set_canary("python-lora", "1.0.0", 0.1)
    registry.set_canary("python-lora", "1.1.0", 0.25)
    registry.set_canary("python-lora", "1.2.0", 0.1)  # replaces the previous canary
    assert registry.get_canary("python-lora").version == "1.2.0"
    assert registry.get("python-lora", "1.1.0").canary_share is None
    assert {v.served_name for v in registry.live_versions()} == {"python-lora@1.0.0", "python-lora@1.2.0"}
    registry.promote("python-lora", "1.2.0")  # promotion ends the canary
    assert registry.get_canary("python-lora") is None


def test_canary_assignment_is_deterministic_and_honours_share(registry):
    add(registry, "python-lora", "1.0.0")
    add(registry, "python-lora", "1.1.0")
    registry.promote("python-lora", "1.0.0")
    registry.set_canary("python-lora", "1.1.0", 0.2)
    table = RoutingTable.from_registry(registry)
    picks = [table.pick("python-lora", f"task-{i}")[0].version for i in range(4000)]
    share = picks.count("1.1.0") / len(picks)
    assert 0.17 < share < 0.23
    # A retried task lands on the same version, also from a fresh snapshot of the registry.
    again = RoutingTable.from_registry(registry)
    assert all(again.pick("python-lora", f"task-{i}")[0].version == picks[i] for i in range(200))
    assert canary_bucket("python-lora", "x") != canary_bucket("math-lora", "x")


def test_register_refuses_duplicates_and_bad_names(registry):
    add(registry, "python-lora", "1.0.0")
    before = registry.db.execute("select count(*) from audit").fetchone()[0]
    with pytest.raises(RegistryError, match="already registered"):
        add(registry, "python-lora", "1.0.0")
    with pytest.raises(RegistryError, match="invalid specialist name"):
        add(registry, "Python LoRA", "1.0.0")
    with pytest.raises(RegistryError, match="semantic version"):
        add(registry, "python-lora", "1.0")
    assert registry.db.execute("select count(*) from audit").fetchone()[0] == before
    assert len(registry.versions()) == 1
    assert registry.next_id_preview() == 2  # refused registrations use no id


def test_every_mutation_is_audited_with_operator(registry):
    add(registry, "python-lora", "1.0.0")
    add(registry, "python-lora", "1.1.0")
    registry.promote("python-lora", "1.0.0")
    registry.set_canary("python-lora", "1.1.0", 0.1)
    registry.promote("python-lora", "1.1.0")
    registry.rollback("python-lora")
    registry.retire("python-lora", "1.1.0")
    registry.set_threshold("specialist_success_rate", 0.9)
    log = registry.audit_log()
    assert [e.action for e in reversed(log)] == [
        "register", "register", "promote", "canary", "promote", "rollback", "retire", "set-threshold"]
    assert {e.operator for e in log} == {"alice"}
    assert log[0].details == {"old": 0.8, "new": 0.9}
    assert [e.action for e in registry.audit_log(action="promote")] == ["promote", "promote"]


def test_outcomes_update_stats_in_the_same_transaction(tmp_path):
    with Registry.open(tmp_path / "r.db", ema_alpha=0.5, success_window=4) as reg:
        v = add(reg, "python-lora", "1.0.0")
        t0 = 1_800_000_000.0
        results = [(True, 100), (True, 200), (False, 300), (True, 400), (False, 500), (False, 600)]
        reg.record_outcomes([Outcome(adapter_id=v.lora_int_id, specialist="python-lora",
                                     success=ok, latency_ms=ms, ts=t0 + i)
                             for i, (ok, ms) in enumerate(results)])
        got = reg.get("python-lora", "1.0.0")
        assert got.request_count == 6 and got.success_count == 3
        # EMA with alpha 0.5 over 100..600: 100,150,225,312.5,406.25,503.125
        assert got.avg_latency_ms == pytest.approx(503.125)
        assert got.success_rate == pytest.approx(1 / 4)  # last 4: F, T, F, F
        assert got.last_used == "2027-01-15T08:00:05Z"


def test_aggregates_from_rollups(registry):
    v = add(registry, "python-lora", "1.0.0")
    hour = 1_800_000_000 // 3600 * 3600
    outcomes = [Outcome(adapter_id=v.lora_int_id, specialist="python-lora", success=i % 10 != 0,
                        latency_ms=10.0 + i, ts=hour + i) for i in range(100)]
    outcomes += [Outcome(specialist=None, success=True, latency_ms=50.0, fallback=True,
                         fallback_reason="no_domain_match", ts=hour + 3600 + 5)]
    registry.record_outcomes(outcomes)
    series = registry.timeseries(since=hour, until=hour + 7200)
    assert [(row["series"], row["requests"]) for row in series] == [
        ("python-lora@1.0.0", 100), ("(base model)", 1)]
    first = series[0]
    assert first["success_rate"] == pytest.approx(0.9)
    assert first["mean_latency_ms"] == pytest.approx(59.5)
    # Percentiles come from 20%-wide bins: the true p50 (59.5 ms) lies in the reported bin.
    assert 59.5 <= first["p50_latency_ms"] < 59.5 * 1.2
    assert 104 <= first["p95_latency_ms"] < 104 * 1.2
    summary = {row["served_name"]: row for row in registry.summary(since=hour, until=hour + 7200)}
    assert summary["python-lora@1.0.0"]["traffic_share"] == pytest.approx(100 / 101)
    assert summary["(base model)"]["fallbacks"] == 1


def test_latency_bins_cover_every_value():
    for ms in (0.1, 1, 5, 17.3, 250, 9999, 1e9):
        k = latency.bin_of(ms)
        assert 0 <= k < latency.BINS
        if 1 <= ms < latency.upper_ms(latency.BINS - 2):
            assert latency.upper_ms(k - 1) <= ms < latency.upper_ms(k)
    assert latency.percentile(None, 0.5) is None
    blob = latency.encode([1.5] * 50 + [100.0] * 50)
    assert latency.percentile(blob, 0.25) == latency.upper_ms(latency.bin_of(1.5))
    assert latency.percentile(blob, 0.99) == latency.upper_ms(latency.bin_of(100.0))


def test_summary_joins_daily_and_hourly_rollups(registry):
    v = add(registry, "python-lora", "1.0.0")
    day = 1_800_000_000 // 86400 * 86400
    # one outcome every 6 hours over four days
    registry.record_outcomes([Outcome(adapter_id=v.lora_int_id, specialist="python-lora",
                                      success=True, latency_ms=20.0, ts=day + h * 3600)
                              for h in range(0, 96, 6)])
    # a window from 13:00 on day 0 to 07:00 on day 3: hours 18, 24..66 (by 6), 72
    (row,) = registry.summary(since=day + 13 * 3600, until=day + 79 * 3600)
    assert row["requests"] == len([h for h in range(0, 96, 6) if 13 <= h < 79])
    assert registry.summary(since=day + 1 * 3600, until=day + 5 * 3600) == []  # within one day
    (row,) = registry.summary(since=day, until=day + 7 * 3600)
    assert row["requests"] == 2


def test_thresholds_validation(registry):
    with pytest.raises(RegistryError, match="unknown threshold"):
        registry.set_threshold("nope", 1)
    with pytest.raises(RegistryError, match="between 0 and 1"):
        registry.set_threshold("traffic_share", 5)
    assert registry.thresholds()["adapter_load_latency_ms"]["value"] == 500


def test_routing_gaps(registry):
    registry.record_gap("write a haiku", reason="no_domain_match", extracted_domains=[],
                        context_refs=["poem.txt"], task_id="t1")
    gaps = registry.gaps()
    assert gaps[0]["objective"] == "write a haiku" and gaps[0]["context_refs"] == ["poem.txt"]
    assert registry.gaps(reason="no_active_adapter") == []


def test_router_keywords_are_validated_audited_and_replace_on_re_add(registry):
    from core.registry import RegistryError

    added = registry.add_router_keyword("devops", "  HAProxy ", 3, note="seen in gaps")
    assert (added.domain, added.keyword, added.weight, added.added_by) == ("devops", "haproxy", 3.0, registry.operator)
    registry.add_router_keyword("devops", "haproxy", 2.5)  # a new weight, same row
    assert [(k.keyword, k.weight) for k in registry.router_keywords()] == [("haproxy", 2.5)]
    before = len(registry.audit_log())
    for domain, keyword, weight, message in [
            ("webz", "x", 1, "unknown domain 'webz'"), ("web", "--", 1, "no letters or digits"),
            ("web", "two words*", 1, "goes with a single word"), ("web", "x", 0, "out of range"),
            ("web", "x", 12, "out of range")]:
        with pytest.raises(RegistryError, match=message):
            registry.add_router_keyword(domain, keyword, weight)
    assert len(registry.audit_log()) == before and len(registry.router_keywords()) == 1
    registry.remove_router_keyword("devops", "HAProxy")
    assert registry.router_keywords() == []
    with pytest.raises(RegistryError, match="no router keyword"):
        registry.remove_router_keyword("devops", "haproxy")
    actions = [(e.action, e.details.get("old_weight")) for e in registry.audit_log()][:3]
    assert actions == [("router-keyword-remove", None), ("router-keyword-add", 3.0), ("router-keyword-add", None)]
