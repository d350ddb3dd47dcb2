"""The registry's SQLite file: how it is opened, its transactions, and its migrations.

Opened the same way everywhere (CLI, console, monitor, tests): WAL so readers never block the
writer, a generous busy timeout so several processes can write, foreign keys on, and every
pending migration applied. Writes go through :func:`transaction`, which takes the write lock up
front (``BEGIN IMMEDIATE``) so that a read-then-write (the next id, the current active version)
cannot interleave with another process.

Migrations are numbered functions, applied in order and recorded in ``_migrations`` like the
``llm`` CLI does; an older file is upgraded in place the next time it is opened.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from core import latency
from core.errors import HiMoeError

BUSY_TIMEOUT_S = 30.0

MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]):
    MIGRATIONS.append((fn.__name__, fn))
    return fn


class DatabaseError(HiMoeError):
    """The registry file cannot be opened or is newer than this code."""


def open_db(path: Path | str, *, migrate: bool = True) -> sqlite_utils.Database:
    path = Path(path)
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.create_function("hist_add", 2, latency.hist_add, deterministic=True)
        conn.create_aggregate("hist_sum", 1, latency.HistSum)
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot open registry {path}: {exc}") from exc
    db = sqlite_utils.Database(conn)
    if migrate:
        apply_migrations(db)
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """All or nothing, holding the write lock from the first statement."""
    conn = db.conn
    if conn.in_transaction:  # nested: the outer transaction decides
        yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def applied_migrations(db: sqlite_utils.Database) -> list[str]:
    if "_migrations" not in db.table_names():
        return []
    return [row["name"] for row in db.query("select name from _migrations order by id")]


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply what is pending; return the names applied now."""
    done_now: list[str] = []
    with transaction(db):
        db.execute("create table if not exists _migrations "
                   "(id integer primary key, name text unique, applied_at real)")
        done = set(applied_migrations(db))
        known = {name for name, _ in MIGRATIONS}
        if done - known:
            raise DatabaseError(f"registry {db.conn} has migrations this code does not know "
                                f"({sorted(done - known)}); upgrade hi-moe")
        for name, fn in MIGRATIONS:
            if name not in done:
                fn(db)
                db.execute("insert into _migrations (name, applied_at) values (?, ?)",
                           [name, time.time()])
                done_now.append(name)
    return done_now


# ---------------------------------------------------------------------------------------------
# The migrations. Never edit one that has shipped: add a new one.


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript("""
    -- One row per adapter VERSION. lora_int_id is the registry's own never-reused key (vLLM
    -- assigns its own internal ids over HTTP and cannot be told ours).
    create table adapters (
        lora_int_id integer primary key,
        name text not null,               -- specialist, e.g. python-lora
        version text not null,            -- semantic version, e.g. 1.2.0
        served_name text not null unique, -- what vLLM serves it as: python-lora@1.2.0
        path text not null,
        rank integer not null,
        alpha real not null,
        target_modules text not null,     -- JSON list
        domains text not null,            -- JSON list
        description text,
        base_model text not null,
        size_bytes integer not null,
        checksum text not null,
        created_at text not null,
        previous_version text,
        active integer not null default 0 check (active in (0, 1)),
        canary_share real check (canary_share is null or (canary_share > 0 and canary_share < 1)),
        retired_at text,
        avg_latency_ms real,
        success_rate real,
        request_count integer not null default 0,
        success_count integer not null default 0,
        last_used text,
        unique (name, version),
        check (not (active = 1 and canary_share is not null)),
        check (not (active = 1 and retired_at is not null))
    );
    -- Exactly one live version per specialist, and at most one canary: enforced here, not
    -- only in code.
    create unique index adapters_one_active on adapters(name) where active = 1;
    create unique index adapters_one_canary on adapters(name) where canary_share is not null;

    create table counters (name text primary key, value integer not null);
    insert into counters (name, value) values ('lora_int_id', 1);

    -- Append-only request outcomes. adapter_id is null when the base model answered.
    create table outcomes (
        id integer primary key,
        ts real not null,
        adapter_id integer,
        specialist text,
        success integer not null check (success in (0, 1)),
        latency_ms real,
        prompt_tokens integer,
        completion_tokens integer,
        fallback integer not null default 0,
        fallback_reason text,
        task_id text,
        server text,
        source text not null default 'dispatch'
    );
    create index outcomes_adapter on outcomes(adapter_id, id);
    create index outcomes_ts on outcomes(ts);

    -- Roll-ups kept current with every recorded outcome, so charts never scan outcomes: hourly
    -- (pruned after the retention period) and daily (kept). adapter_key is the lora_int_id, or 0
    -- for the base model; hist is a latency histogram (core.latency).
    create table rollups_hour (
        adapter_key integer not null,
        bucket integer not null,          -- unix time of the hour's start
        specialist text,
        requests integer not null,
        successes integer not null,
        fallbacks integer not null,
        latency_sum real not null,
        latency_n integer not null,
        hist blob,
        primary key (bucket, adapter_key)
    ) without rowid;
    create table rollups_day (
        adapter_key integer not null,
        bucket integer not null,          -- unix time of the UTC day's start
        specialist text,
        requests integer not null,
        successes integer not null,
        fallbacks integer not null,
        latency_sum real not null,
        latency_n integer not null,
        hist blob,
        primary key (bucket, adapter_key)
    ) without rowid;

    create table routing_gaps (
        id integer primary key,
        ts real not null,
        task_id text,
        objective text not null,
        context_refs text not null default '[]',
        extracted_domains text not null default '[]',
        reason text not null
    );
    create index routing_gaps_ts on routing_gaps(ts);

    create table health_checks (
        id integer primary key,
        ts real not null,
        server text not null,
        up integer not null,
        latency_ms real,
        version text,
        loaded text not null default '[]',
        missing text not null default '[]',
        unknown text not null default '[]',
        error text
    );
    create index health_checks_server_ts on health_checks(server, ts);

    -- Every load/unload this project makes, for adapter_load_latency_ms.
    create table adapter_loads (
        id integer primary key,
        ts real not null,
        server text not null,
        served_name text not null,
        adapter_id integer,
        action text not null,             -- load | unload
        ok integer not null,
        latency_ms real,
        error text
    );
    create index adapter_loads_ts on adapter_loads(ts);

    create table alert_thresholds (
        key text primary key,
        value real not null,
        description text not null,
        updated_at text,
        updated_by text
    );
    insert into alert_thresholds (key, value, description) values
        ('adapter_load_latency_ms', 500, 'Alert when an adapter load takes longer (ms)'),
        ('specialist_success_rate', 0.8, 'Alert when a specialist''s success rate is lower'),
        ('traffic_share', 0.5, 'Alert when one adapter takes more than this share of traffic'),
        ('min_requests', 20, 'Requests needed before rate and share alerts apply');

    create table audit (
        id integer primary key,
        ts text not null,
        operator text not null,
        action text not null,
        target text,
        details text not null default '{}'
    );
    create index audit_ts on audit(ts);

    """)


@migration
def m002_monitoring(db: sqlite_utils.Database) -> None:
    db.executescript("""
    -- One row per /metrics scrape; histogram figures are the server's cumulative totals (the
    -- monitor derives per-interval deltas, and notices counter resets after a restart).
    create table metric_scrapes (
        id integer primary key,
        ts real not null,
        server text not null,
        max_lora integer,
        running_adapters text not null default '[]',
        waiting_adapters text not null default '[]',
        requests_running real,
        requests_waiting real,
        kv_cache_usage real,
        e2e_count real,
        e2e_sum real,
        ttft_count real,
        ttft_sum real
    );
    create index metric_scrapes_server_ts on metric_scrapes(server, ts);

    -- An alert is open while resolved_at is null; at most one open alert per rule and subject,
    -- enforced by the index, so a repeated check can never open a duplicate.
    create table alerts (
        id integer primary key,
        rule text not null,
        subject text not null,
        severity text not null default 'warning',
        message text not null,
        value real,
        threshold real,
        opened_at real not null,
        last_seen_at real not null,
        resolved_at real
    );
    create unique index alerts_one_open on alerts(rule, subject) where resolved_at is null;
    create index alerts_opened on alerts(opened_at);
    """)


@migration
def m003_router_keywords(db: sqlite_utils.Database) -> None:
    db.executescript("""
    -- Keywords operators teach the router (from routing gaps), on top of its keyword file: the
    -- same rules and weights, one row per domain and keyword, audited like every change.
    create table router_keywords (
        id integer primary key,
        domain text not null,
        keyword text not null,
        weight real not null,
        note text,
        added_by text not null,
        added_at text not null,
        unique (domain, keyword)
    );
    """)


@migration
def m004_gap_labels(db: sqlite_utils.Database) -> None:
    db.executescript("""
    -- An operator's judgement of a routing gap: the domain that should have taken it, or 'null'
    -- for the base model. Tier 3 learns from these (see core/embeddings.py).
    alter table routing_gaps add column label text;
    alter table routing_gaps add column labelled_by text;
    alter table routing_gaps add column labelled_at text;
    """)
