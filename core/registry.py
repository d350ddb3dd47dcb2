"""The adapter registry: versions, never-reused ids, the lifecycle in the database, stats,
routing gaps, health history, alert thresholds and the audit log.

This module only reads and writes the SQLite file. Operations that must also act on the vLLM
servers (promote, rollback, canary, sync) live in :mod:`core.lifecycle`, which calls the servers
first and this module second. Every mutation here is one transaction that also writes its audit
row, so the log and the state cannot disagree.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from pydantic import BaseModel, Field

from core import latency
from core.adapter_files import AdapterManifest
from core.db import open_db, transaction
from core.errors import HiMoeError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SEMVER_RE = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$")
HOUR = 3600
DAY = 86400
ROLLUP_TABLES = {HOUR: "rollups_hour", DAY: "rollups_day"}


class RegistryError(HiMoeError):
    """A registry change was refused; nothing was written."""


class NotFound(RegistryError):
    pass


def iso(moment: datetime) -> str:
    """UTC, to the second, with a Z: the one timestamp format of the registry's text columns."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def where_clause(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause from ``(sql, value)`` pairs; a pair whose value is None is left out, and
    a value is bound only where its sql has a ``?``."""
    clauses, params = ["1 = 1"], []
    for sql, value in conditions:
        if value is None:
            continue
        clauses.append(sql)
        if "?" in sql:
            params.append(value)
    return " and ".join(clauses), params


def served_name(name: str, version: str) -> str:
    """Each version is served under its own name: never new weights over an old name (vLLM can
    then answer with the old weights while prefix caching is on)."""
    return f"{name}@{version}"


def specialist_from_folder(folder: str) -> str:
    """``python`` / ``python-specialist`` / ``python-lora`` -> ``python-lora``."""
    base = folder.lower().removesuffix("-specialist").removesuffix("-lora")
    return f"{base}-lora"


def version_from_folder(folder: str) -> str:
    return folder[1:] if folder[:1] in ("v", "V") else folder


def validate_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise RegistryError(f"invalid specialist name {name!r}: use lowercase letters, digits, "
                            "'-' and '_', starting with a letter or digit (at most 63)")


def validate_version(version: str) -> None:
    if not SEMVER_RE.match(version or ""):
        raise RegistryError(f"invalid version {version!r}: expected a semantic version such as 1.2.0")


def semver_key(version: str) -> tuple:
    match = SEMVER_RE.match(version)
    if not match:
        return (0, 0, 0, version)
    major, minor, patch = (int(part) for part in match.groups()[:3])
    pre = version.partition("-")[2]
    # A pre-release sorts before its release.
    return (major, minor, patch, 0 if pre else 1, pre)


class AdapterVersion(BaseModel):
    """One registered version: the spec's AdapterInfo plus what operating it needs."""

    lora_int_id: int
    name: str
    version: str
    served_name: str
    path: str
    rank: int
    alpha: float
    target_modules: list[str]
    domains: list[str]
    description: str | None = None
    base_model: str
    size_bytes: int
    checksum: str
    created_at: str
    previous_version: str | None = None
    active: bool = False
    canary_share: float | None = None
    retired_at: str | None = None
    avg_latency_ms: float | None = None
    success_rate: float | None = None
    request_count: int = 0
    success_count: int = 0
    last_used: str | None = None

    @property
    def status(self) -> str:
        if self.active:
            return "active"
        if self.canary_share is not None:
            return "canary"
        if self.retired_at:
            return "retired"
        return "inactive"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AdapterVersion:
        # Rows come from our own schema, so skip validation: listing 10,000 versions stays fast.
        row = dict(row)
        row["target_modules"] = json.loads(row["target_modules"])
        row["domains"] = json.loads(row["domains"])
        row["active"] = bool(row["active"])
        return cls.model_construct(**row)


class Outcome(BaseModel):
    """One answered (or failed) request, as the router or an operator records it."""

    adapter_id: int | None = None  # None: the base model answered
    specialist: str | None = None
    success: bool
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    task_id: str | None = None
    server: str | None = None
    source: str = "dispatch"
    ts: float = Field(default_factory=time.time)


class AuditEntry(BaseModel):
    id: int
    ts: str
    operator: str
    action: str
    target: str | None
    details: dict[str, Any]


class RouterKeyword(BaseModel):
    domain: str
    keyword: str
    weight: float
    note: str | None = None
    added_by: str
    added_at: str


class Registry:
    """The registry file. ``operator`` is who the audit log names for this handle's changes."""

    def __init__(self, db: sqlite_utils.Database, *, operator: str = "operator",
                 ema_alpha: float = 0.1, success_window: int = 100):
        self.db = db
        self.operator = operator
        self.ema_alpha = ema_alpha
        self.success_window = success_window

    @classmethod
    def open(cls, path: Path | str, **kwargs: Any) -> Registry:
        return cls(open_db(path), **kwargs)

    @classmethod
    def from_settings(cls, settings: Any) -> Registry:
        return cls.open(settings.db_path, operator=settings.operator,
                        ema_alpha=settings.ema_alpha, success_window=settings.success_window)

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- audit ------------------------------------------------------------------------------

    def _audit(self, action: str, target: str | None, **details: Any) -> None:
        self.db.execute(
            "insert into audit (ts, operator, action, target, details) values (?, ?, ?, ?, ?)",
            [now_iso(), self.operator, action, target, json.dumps(details, default=str)])

    def audit(self, action: str, target: str | None = None, **details: Any) -> None:
        """Record an action that changed something outside the registry (a server load...)."""
        with transaction(self.db):
            self._audit(action, target, **details)

    def audit_log(self, *, operator: str | None = None, action: str | None = None,
                  target: str | None = None, since: str | None = None,
                  limit: int = 500) -> list[AuditEntry]:
        clause, params = where_clause(
            ("operator = ?", operator or None), ("action = ?", action or None),
            ("target like ?", f"%{target}%" if target else None), ("ts >= ?", since or None))
        rows = self.db.query(f"select * from audit where {clause} order by id desc limit ?",
                             [*params, limit])
        return [AuditEntry(**{**row, "details": json.loads(row["details"])}) for row in rows]

    # -- reading versions ---------------------------------------------------------------------

    def _version_rows(self, name: str | None, include_retired: bool) -> Iterable[dict[str, Any]]:
        clause, params = where_clause(("name = ?", name or None),
                                      ("retired_at is null", None if include_retired else True))
        return self.db.query(f"select * from adapters where {clause} order by name, lora_int_id",
                             params)

    def versions(self, name: str | None = None, *, include_retired: bool = True) -> list[AdapterVersion]:
        return [AdapterVersion.from_row(row) for row in self._version_rows(name, include_retired)]

    def versions_table(self, name: str | None = None, *,
                       include_retired: bool = True) -> list[dict[str, Any]]:
        """The same rows as :meth:`versions` as plain dicts, for tables of thousands of rows."""
        rows = []
        for row in self._version_rows(name, include_retired):
            row["domains"] = json.loads(row["domains"])
            row["target_modules"] = json.loads(row["target_modules"])
            row["active"] = bool(row["active"])
            row["status"] = ("active" if row["active"] else "canary" if row["canary_share"]
                             else "retired" if row["retired_at"] else "inactive")
            rows.append(row)
        return rows

    def specialists(self) -> list[str]:
        return [row["name"] for row in self.db.query("select distinct name from adapters order by name")]

    def get(self, name: str, version: str) -> AdapterVersion:
        rows = list(self.db.query("select * from adapters where name = ? and version = ?",
                                  [name, version]))
        if not rows:
            known = ", ".join(v.version for v in self.versions(name)) or "none"
            raise NotFound(f"{name} has no version {version} (registered: {known})")
        return AdapterVersion.from_row(rows[0])

    def get_by_id(self, lora_int_id: int) -> AdapterVersion:
        rows = list(self.db.query("select * from adapters where lora_int_id = ?", [lora_int_id]))
        if not rows:
            raise NotFound(f"no adapter version with lora_int_id {lora_int_id}")
        return AdapterVersion.from_row(rows[0])

    def get_by_served_name(self, served: str) -> AdapterVersion | None:
        rows = list(self.db.query("select * from adapters where served_name = ?", [served]))
        return AdapterVersion.from_row(rows[0]) if rows else None

    def get_active(self, name: str) -> AdapterVersion | None:
        rows = list(self.db.query("select * from adapters where name = ? and active = 1", [name]))
        return AdapterVersion.from_row(rows[0]) if rows else None

    def get_canary(self, name: str) -> AdapterVersion | None:
        rows = list(self.db.query(
            "select * from adapters where name = ? and canary_share is not null", [name]))
        return AdapterVersion.from_row(rows[0]) if rows else None

    def live_versions(self) -> list[AdapterVersion]:
        """What the servers must serve: every active and every canary version."""
        rows = self.db.query("select * from adapters where active = 1 or canary_share is not null "
                             "order by name, lora_int_id")
        return [AdapterVersion.from_row(row) for row in rows]

    # -- lifecycle (registry side) -------------------------------------------------------------

    def register(self, manifest: AdapterManifest, *, name: str, version: str,
                 domains: Sequence[str], description: str | None = None) -> AdapterVersion:
        """Deploy: a new version, inactive, with the next never-used lora_int_id."""
        validate_name(name)
        validate_version(version)
        domains = [d.strip().lower() for d in domains if d and d.strip()]
        if not domains:
            raise RegistryError(f"{name}@{version}: at least one domain is required")
        with transaction(self.db):
            clash = list(self.db.query(
                "select served_name, path from adapters where (name = ? and version = ?) or path = ?",
                [name, version, manifest.path]))
            if clash:
                raise RegistryError(f"{served_name(name, version)} is already registered "
                                    f"(as {clash[0]['served_name']} at {clash[0]['path']})")
            lora_int_id = self._next_id()
            self.db.execute(
                """insert into adapters (lora_int_id, name, version, served_name, path, rank, alpha,
                   target_modules, domains, description, base_model, size_bytes, checksum,
                   created_at, active) values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)""",
                [lora_int_id, name, version, served_name(name, version), manifest.path,
                 manifest.rank, manifest.alpha, json.dumps(manifest.target_modules),
                 json.dumps(domains), description, manifest.base_model, manifest.size_bytes,
                 manifest.checksum, now_iso()])
            self._audit("register", served_name(name, version), lora_int_id=lora_int_id,
                        path=manifest.path, rank=manifest.rank, checksum=manifest.checksum)
        return self.get(name, version)

    def _next_id(self) -> int:
        value = self.db.execute("select value from counters where name = 'lora_int_id'").fetchone()[0]
        self.db.execute("update counters set value = ? where name = 'lora_int_id'", [value + 1])
        return value

    def next_id_preview(self) -> int:
        return self.db.execute("select value from counters where name = 'lora_int_id'").fetchone()[0]

    def set_canary(self, name: str, version: str, share: float) -> AdapterVersion:
        if not 0 < share < 1:
            raise RegistryError(f"canary share must be between 0 and 1 (exclusive), got {share}")
        with transaction(self.db):
            target = self.get(name, version)
            if target.active:
                raise RegistryError(f"{target.served_name} is the active version; a canary must be "
                                    "another version")
            if target.retired_at:
                raise RegistryError(f"{target.served_name} is retired")
            previous = self.get_canary(name)
            self.db.execute("update adapters set canary_share = null where name = ?", [name])
            self.db.execute("update adapters set canary_share = ? where lora_int_id = ?",
                            [share, target.lora_int_id])
            replaced = previous.served_name if previous and previous.lora_int_id != target.lora_int_id else None
            self._audit("canary", target.served_name, share=share, replaced=replaced)
        return self.get(name, version)

    def clear_canary(self, name: str) -> AdapterVersion | None:
        with transaction(self.db):
            canary = self.get_canary(name)
            if canary is None:
                raise RegistryError(f"{name} has no canary")
            self.db.execute("update adapters set canary_share = null where lora_int_id = ?",
                            [canary.lora_int_id])
            self._audit("canary-end", canary.served_name)
        return canary

    def promote(self, name: str, version: str) -> tuple[AdapterVersion | None, AdapterVersion]:
        """Make ``version`` the live one; the old live one becomes its ``previous_version``."""
        with transaction(self.db):
            target = self.get(name, version)
            if target.retired_at:
                raise RegistryError(f"{target.served_name} is retired; register it again to use it")
            current = self.get_active(name)
            if current and current.lora_int_id == target.lora_int_id:
                raise RegistryError(f"{target.served_name} is already the active version")
            if current:
                self.db.execute("update adapters set active = 0 where lora_int_id = ?",
                                [current.lora_int_id])
            self.db.execute(
                "update adapters set active = 1, canary_share = null, previous_version = "
                "coalesce(?, previous_version) where lora_int_id = ?",
                [current.version if current else None, target.lora_int_id])
            self._audit("promote", target.served_name,
                        previous=current.served_name if current else None)
        return current, self.get(name, version)

    def rollback_target(self, name: str) -> tuple[AdapterVersion, AdapterVersion]:
        """(current active, the version a rollback would re-activate), or a clear error."""
        current = self.get_active(name)
        if current is None:
            raise RegistryError(f"{name} has no active version to roll back")
        if not current.previous_version:
            raise RegistryError(f"{current.served_name} has no previous version to roll back to")
        try:
            previous = self.get(name, current.previous_version)
        except NotFound as exc:
            raise RegistryError(f"{current.served_name}: previous version "
                                f"{current.previous_version} was deleted; promote a version "
                                "explicitly instead") from exc
        if previous.retired_at:
            raise RegistryError(f"{current.served_name}: previous version {previous.version} is "
                                "retired; promote a version explicitly instead")
        return current, previous

    def rollback(self, name: str) -> tuple[AdapterVersion, AdapterVersion]:
        with transaction(self.db):
            current, previous = self.rollback_target(name)
            self.db.execute("update adapters set active = 0 where lora_int_id = ?",
                            [current.lora_int_id])
            self.db.execute("update adapters set active = 1, canary_share = null "
                            "where lora_int_id = ?", [previous.lora_int_id])
            self._audit("rollback", previous.served_name, from_version=current.served_name)
        return current, self.get(name, previous.version)

    def retire(self, name: str, version: str, *, force: bool = False,
               delete: bool = False) -> AdapterVersion:
        """Take a version out of service (kept for history), or ``delete`` its row. Its
        lora_int_id is never handed out again either way."""
        with transaction(self.db):
            target = self.get(name, version)
            if target.active and not force:
                raise RegistryError(f"{target.served_name} is the active version; promote another "
                                    "version first, or pass --force")
            if delete:
                self.db.execute("delete from adapters where lora_int_id = ?", [target.lora_int_id])
            else:
                self.db.execute("update adapters set active = 0, canary_share = null, "
                                "retired_at = ? where lora_int_id = ?",
                                [now_iso(), target.lora_int_id])
            self._audit("delete" if delete else "retire", target.served_name, force=force,
                        was=target.status)
        return target

    # -- outcomes and stats -------------------------------------------------------------------

    def record_outcome(self, outcome: Outcome) -> int:
        """Record one outcome; returns its id (for operator feedback later)."""
        return self.record_outcomes([outcome])[0]

    def record_outcomes(self, outcomes: Sequence[Outcome]) -> list[int]:
        """Append outcomes and bring every aggregate up to date, in one transaction; returns
        their ids."""
        if not outcomes:
            return []
        rows = [(o.ts, o.adapter_id, o.specialist, int(o.success), o.latency_ms,
                 o.prompt_tokens, o.completion_tokens, int(o.fallback), o.fallback_reason,
                 o.task_id, o.server, o.source) for o in outcomes]
        per_adapter: dict[int, list[Outcome]] = defaultdict(list)
        for o in outcomes:
            if o.adapter_id is not None:
                per_adapter[o.adapter_id].append(o)
        with transaction(self.db):
            self.db.conn.executemany(
                "insert into outcomes (ts, adapter_id, specialist, success, latency_ms, "
                "prompt_tokens, completion_tokens, fallback, fallback_reason, task_id, server, "
                "source) values (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            for seconds, table in ROLLUP_TABLES.items():
                self.db.conn.executemany(
                    f"insert into {table} (adapter_key, bucket, specialist, requests, successes, "
                    "fallbacks, latency_sum, latency_n, hist) values (?,?,?,?,?,?,?,?,?) "
                    "on conflict (bucket, adapter_key) do update set "
                    "requests = requests + excluded.requests, "
                    "successes = successes + excluded.successes, "
                    "fallbacks = fallbacks + excluded.fallbacks, "
                    "latency_sum = latency_sum + excluded.latency_sum, "
                    "latency_n = latency_n + excluded.latency_n, "
                    "hist = hist_add(hist, excluded.hist)", _rollup_rows(outcomes, seconds))
            for adapter_id, items in per_adapter.items():
                self._update_stats(adapter_id, items)
            # The write lock is held, so the rows just inserted have the highest, consecutive ids.
            last = self.db.execute("select max(id) from outcomes").fetchone()[0]
        return list(range(last - len(rows) + 1, last + 1))

    def mark_outcome(self, outcome_id: int, success: bool) -> dict[str, Any]:
        """An operator's verdict on an answer: sets the outcome's success and corrects every
        aggregate it counted in."""
        with transaction(self.db):
            row = self.db.execute("select ts, adapter_id, success from outcomes where id = ?",
                                  [outcome_id]).fetchone()
            if row is None:
                raise NotFound(f"no outcome with id {outcome_id}")
            ts, adapter_id, old = row
            delta = int(success) - old
            if delta:
                self.db.execute("update outcomes set success = ? where id = ?",
                                [int(success), outcome_id])
                for seconds, table in ROLLUP_TABLES.items():
                    self.db.execute(f"update {table} set successes = successes + ? where "
                                    "adapter_key = ? and bucket = ?",
                                    [delta, adapter_id or 0, int(ts // seconds) * seconds])
                if adapter_id is not None:
                    rate = self._rolling_success(adapter_id)
                    self.db.execute("update adapters set success_count = success_count + ?, "
                                    "success_rate = ? where lora_int_id = ?",
                                    [delta, rate, adapter_id])
            self._audit("feedback", f"outcome {outcome_id}", success=success, changed=bool(delta))
        return self.outcomes_by_id([outcome_id])[0]

    def outcomes_by_id(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(ids))
        return list(self.db.query(f"select * from outcomes where id in ({marks}) order by id", list(ids)))

    def _rolling_success(self, adapter_id: int) -> float | None:
        """Success rate over the version's last ``success_window`` outcomes."""
        return self.db.execute(
            "select avg(success) from (select success from outcomes where adapter_id = ? "
            "order by id desc limit ?)", [adapter_id, self.success_window]).fetchone()[0]

    def _update_stats(self, adapter_id: int, items: list[Outcome]) -> None:
        row = self.db.execute("select avg_latency_ms from adapters where lora_int_id = ?",
                              [adapter_id]).fetchone()
        if row is None:  # deleted since: its outcomes stay, there is nothing to update
            return
        ema = row[0]
        for o in sorted(items, key=lambda o: o.ts):
            if o.latency_ms is not None:
                ema = o.latency_ms if ema is None else ema + self.ema_alpha * (o.latency_ms - ema)
        rate = self._rolling_success(adapter_id)
        last = datetime.fromtimestamp(max(o.ts for o in items), UTC)
        self.db.execute(
            "update adapters set avg_latency_ms = ?, success_rate = ?, "
            "request_count = request_count + ?, success_count = success_count + ?, "
            "last_used = max(coalesce(last_used, ''), ?) where lora_int_id = ?",
            [ema, rate, len(items), sum(o.success for o in items),
             iso(last), adapter_id])

    def outcomes(self, *, adapter_id: int | None = None, since: float | None = None,
                 limit: int = 1000) -> list[dict[str, Any]]:
        clause, params = where_clause(("adapter_id = ?", adapter_id), ("ts >= ?", since))
        return list(self.db.query(f"select * from outcomes where {clause} order by id desc limit ?",
                                  [*params, limit]))

    # -- aggregates for charts and reviews ------------------------------------------------------

    def timeseries(self, *, since: float, until: float | None = None,
                   bucket_seconds: int = HOUR, specialist: str | None = None,
                   by_version: bool = True) -> list[dict[str, Any]]:
        """Requests, success rate, mean and p50/p95 latency per time bucket and version (or
        specialist). Buckets of a day or more read the daily roll-ups, shorter ones the hourly."""
        step = DAY if bucket_seconds >= DAY else HOUR
        bucket_seconds = max(step, bucket_seconds // step * step)
        until = until if until is not None else time.time()
        group = "adapter_key" if by_version else "coalesce(specialist, '(base model)')"
        where = "bucket >= ? and bucket < ?"
        params: list[Any] = [int(since // step) * step, until]
        if specialist:
            where += " and specialist = ?"
            params.append(specialist)
        if by_version and bucket_seconds == step:
            # Each roll-up row is already one point: no merging of histograms needed.
            rows = self.db.query(f"""
                select adapter_key as series, bucket as t, specialist, adapter_key, requests,
                       successes, fallbacks, latency_sum, latency_n, hist
                from {ROLLUP_TABLES[step]} where {where} order by 2, 1""", params)
        else:
            rows = self.db.query(f"""
                select {group} as series, (bucket / {bucket_seconds}) * {bucket_seconds} as t,
                       max(specialist) as specialist, max(adapter_key) as adapter_key,
                       sum(requests) as requests, sum(successes) as successes,
                       sum(fallbacks) as fallbacks, sum(latency_sum) as latency_sum,
                       sum(latency_n) as latency_n, hist_sum(hist) as hist
                from {ROLLUP_TABLES[step]} where {where} group by 1, 2 order by 2, 1""", params)
        names = self._served_names() if by_version else {}
        rows = list(rows)
        out = []
        for row, figures in zip(rows, _figures(rows)):
            if by_version:
                label = names.get(row["adapter_key"], f"#{row['adapter_key']}") \
                    if row["adapter_key"] else "(base model)"
            else:
                label = row["series"]
            out.append({"t": row["t"], "series": label,
                        "specialist": row["specialist"] or "(base model)", **figures})
        return out

    def summary(self, *, since: float, until: float | None = None) -> list[dict[str, Any]]:
        """Per version over a window: requests, success rate, p50/p95, traffic share. Whole days
        come from the daily roll-ups and the partial days at either end from the hourly ones."""
        until = until if until is not None else time.time()
        start_h, end_h = int(since // HOUR) * HOUR, until
        first_day, last_day = -(-start_h // DAY) * DAY, int(end_h // DAY) * DAY
        cols = ("adapter_key, specialist, requests, successes, fallbacks, latency_sum, "
                "latency_n, hist")
        if first_day < last_day:
            source = (f"select {cols} from rollups_day where bucket >= ? and bucket < ? union all "
                      f"select {cols} from rollups_hour where (bucket >= ? and bucket < ?) "
                      f"or (bucket >= ? and bucket < ?)")
            params = [first_day, last_day, start_h, first_day, last_day, end_h]
        else:
            source = f"select {cols} from rollups_hour where bucket >= ? and bucket < ?"
            params = [start_h, end_h]
        rows = list(self.db.query(f"""
            select adapter_key, max(specialist) as specialist, sum(requests) as requests,
                   sum(successes) as successes, sum(fallbacks) as fallbacks,
                   sum(latency_sum) as latency_sum, sum(latency_n) as latency_n,
                   hist_sum(hist) as hist
            from ({source}) group by adapter_key order by requests desc""", params))
        total = sum(row["requests"] for row in rows) or 1
        names = self._served_names()
        return [{
            "adapter_id": row["adapter_key"] or None,
            "served_name": names.get(row["adapter_key"], "(base model)" if not row["adapter_key"]
                                     else f"#{row['adapter_key']} (deleted)"),
            "specialist": row["specialist"] or "(base model)",
            "successes": row["successes"],
            **figures,
            "traffic_share": row["requests"] / total,
        } for row, figures in zip(rows, _figures(rows))]

    def _served_names(self) -> dict[int, str]:
        return {row["lora_int_id"]: row["served_name"]
                for row in self.db.query("select lora_int_id, served_name from adapters")}

    # -- routing gaps -----------------------------------------------------------------------

    def record_gap(self, objective: str, *, reason: str, extracted_domains: Iterable[str] = (),
                   context_refs: Iterable[str] = (), task_id: str | None = None,
                   ts: float | None = None) -> None:
        with transaction(self.db):
            self.db.execute(
                "insert into routing_gaps (ts, task_id, objective, context_refs, "
                "extracted_domains, reason) values (?,?,?,?,?,?)",
                [ts or time.time(), task_id, objective, json.dumps(list(context_refs)),
                 json.dumps(list(extracted_domains)), reason])

    def gaps(self, *, since: float | None = None, reason: str | None = None,
             limit: int = 5000) -> list[dict[str, Any]]:
        clause, params = where_clause(("ts >= ?", since), ("reason = ?", reason or None))
        rows = self.db.query(f"select * from routing_gaps where {clause} order by id desc limit ?",
                             [*params, limit])
        return [self._gap(row) for row in rows]

    @staticmethod
    def _gap(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "context_refs": json.loads(row["context_refs"]),
                "extracted_domains": json.loads(row["extracted_domains"])}

    def label_gap(self, gap_id: int, expected: str | None) -> dict[str, Any]:
        """Record the domain that should have taken a routing gap (None, "null": the base
        model); tier 3 learns from labelled gaps. Relabelling replaces the label; audited."""
        from core.router import expected_domain

        try:
            label = expected_domain(expected) or "null"
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        with transaction(self.db):
            row = self.db.execute("select label from routing_gaps where id = ?", [gap_id]).fetchone()
            if row is None:
                raise RegistryError(f"no routing gap {gap_id}")
            self.db.execute("update routing_gaps set label = ?, labelled_by = ?, labelled_at = ? "
                            "where id = ?", [label, self.operator, now_iso(), gap_id])
            self._audit("gap-label", f"gap:{gap_id}", label=label, old_label=row[0])
        return self._gap(next(self.db.query("select * from routing_gaps where id = ?", [gap_id])))

    def labelled_gaps(self) -> list[tuple[str, str]]:
        """(objective, domain or "null") of every labelled gap, oldest first: tier 3's examples."""
        return [(row["objective"], row["label"]) for row in self.db.query(
            "select objective, label from routing_gaps where label is not null order by id")]

    # -- router keywords ----------------------------------------------------------------------

    def router_keywords(self) -> list[RouterKeyword]:
        return [RouterKeyword(**row) for row in self.db.query(
            "select domain, keyword, weight, note, added_by, added_at from router_keywords "
            "order by domain, keyword")]

    def add_router_keyword(self, domain: str, keyword: str, weight: float,
                           note: str | None = None) -> RouterKeyword:
        """Teach the router a keyword (or change the weight of one taught before)."""
        from core.evidence import check_keyword

        try:
            keyword = check_keyword(domain, keyword, weight)
        except ValueError as exc:
            raise RegistryError(str(exc)) from None
        with transaction(self.db):
            old = self.db.execute("select weight from router_keywords where domain = ? and keyword = ?",
                                  [domain, keyword]).fetchone()
            self.db.execute(
                "insert into router_keywords (domain, keyword, weight, note, added_by, added_at) "
                "values (?, ?, ?, ?, ?, ?) on conflict (domain, keyword) do update set "
                "weight = excluded.weight, note = excluded.note, added_by = excluded.added_by, "
                "added_at = excluded.added_at",
                [domain, keyword, weight, note, self.operator, now_iso()])
            self._audit("router-keyword-add", f"{domain}:{keyword}", weight=weight,
                        old_weight=old[0] if old else None, note=note)
        return next(k for k in self.router_keywords() if k.domain == domain and k.keyword == keyword)

    def remove_router_keyword(self, domain: str, keyword: str) -> None:
        keyword = " ".join(keyword.lower().split())
        with transaction(self.db):
            row = self.db.execute("select weight from router_keywords where domain = ? and keyword = ?",
                                  [domain, keyword]).fetchone()
            if row is None:
                raise RegistryError(f"no router keyword {keyword!r} for {domain}; "
                                    "`hi-moe keywords list` shows them")
            self.db.execute("delete from router_keywords where domain = ? and keyword = ?",
                            [domain, keyword])
            self._audit("router-keyword-remove", f"{domain}:{keyword}", weight=row[0])

    # -- health history and thresholds --------------------------------------------------------

    def record_health(self, *, server: str, up: bool, latency_ms: float | None = None,
                      version: str | None = None, loaded: Iterable[str] = (),
                      missing: Iterable[str] = (), unknown: Iterable[str] = (),
                      error: str | None = None, ts: float | None = None) -> None:
        with transaction(self.db):
            self.db.execute(
                "insert into health_checks (ts, server, up, latency_ms, version, loaded, missing, "
                "unknown, error) values (?,?,?,?,?,?,?,?,?)",
                [ts or time.time(), server, int(up), latency_ms, version, json.dumps(list(loaded)),
                 json.dumps(list(missing)), json.dumps(list(unknown)), error])

    def thresholds(self) -> dict[str, dict[str, Any]]:
        return {row["key"]: row for row in self.db.query("select * from alert_thresholds order by key")}

    def set_threshold(self, key: str, value: float) -> None:
        with transaction(self.db):
            known = self.thresholds()
            if key not in known:
                raise RegistryError(f"unknown threshold {key!r}; known: {', '.join(known)}")
            if key.endswith(("_rate", "_share")) and not 0 <= value <= 1:
                raise RegistryError(f"{key} is a fraction: give a value between 0 and 1, got {value}")
            if value < 0:
                raise RegistryError(f"{key} cannot be negative, got {value}")
            self.db.execute("update alert_thresholds set value = ?, updated_at = ?, updated_by = ? "
                            "where key = ?", [value, now_iso(), self.operator, key])
            self._audit("set-threshold", key, old=known[key]["value"], new=value)

    # -- adapter loads --------------------------------------------------------------------------

    def record_load(self, *, server: str, served: str, action: str, ok: bool,
                    latency_ms: float | None, error: str | None = None,
                    adapter_id: int | None = None, ts: float | None = None) -> None:
        with transaction(self.db):
            self.db.execute(
                "insert into adapter_loads (ts, server, served_name, adapter_id, action, ok, "
                "latency_ms, error) values (?,?,?,?,?,?,?,?)",
                [ts or time.time(), server, served, adapter_id, action, int(ok), latency_ms, error])

    def loads(self, *, since: float | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        return list(self.db.query("select * from adapter_loads where ts >= ? order by id desc "
                                  "limit ?", [since or 0, limit]))


def _rollup_rows(outcomes: Sequence[Outcome], seconds: int) -> list[tuple]:
    """One roll-up row per (adapter, bucket) touched by the batch."""
    groups: dict[tuple[int, int], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.adapter_id or 0, int(o.ts // seconds) * seconds)].append(o)
    rows = []
    for (key, bucket), items in groups.items():
        timed = [o.latency_ms for o in items if o.latency_ms is not None]
        rows.append((key, bucket, items[0].specialist, len(items),
                     sum(o.success for o in items), sum(o.fallback for o in items),
                     float(sum(timed)), len(timed), latency.encode(timed)))
    return rows


def _figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    blobs = [row["hist"] for row in rows]
    p50s, p95s = latency.percentiles(blobs, 0.5), latency.percentiles(blobs, 0.95)
    return [{
        "requests": row["requests"],
        "success_rate": row["successes"] / row["requests"] if row["requests"] else None,
        "fallbacks": row["fallbacks"],
        "mean_latency_ms": row["latency_sum"] / row["latency_n"] if row["latency_n"] else None,
        "p50_latency_ms": p50,
        "p95_latency_ms": p95,
    } for row, p50, p95 in zip(rows, p50s, p95s)]
