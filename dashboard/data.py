"""Every read the dashboard makes, through the read-only query layer (`tooltrail.query`).

Each method issues a bounded query: aggregates over a time range, or a limited / paged list.
Failures become `DataError` with a message that tells the analyst what to do.

Alerts are read through the layer's `alerts` view too, but that view re-reads the alert store's
JSON lines on every query, which grows with the store. The dashboard therefore keeps a
snapshot of the view (`AlertsSnapshot`): read once through the layer, refreshed in the
background when the store's files change (at most every `SNAPSHOT_MIN_INTERVAL_S`), and
re-read at once after the dashboard itself changes an alert. Pages query the snapshot.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import duckdb

from dashboard.timeutil import TimeRange, to_dt
from tooltrail.logs import get_logger

log = get_logger("tooltrail.dashboard.data")

SEVERITIES = ("critical", "high", "medium", "low")
STATUSES = ("open", "acknowledged", "resolved")
SEVERITY_RANK_SQL = ("case lower(severity) when 'critical' then 4 when 'high' then 3 when 'medium' then 2 "
                     "when 'low' then 1 else 0 end")
ALERT_SORT_COLUMNS = {
    "severity": SEVERITY_RANK_SQL, "last_seen": "last_seen", "last_seen_s": "last_seen", "first_seen": "first_seen",
    "rule_id": "rule_id", "title": "title", "status": "status", "principal": "principal", "session": "session",
    "match_count": "match_count", "alert_id": "alert_id",
}
TIMELINE_COLUMNS = ("event_id, ts, principal, agent, session, server, tool, decision, result, reason, error, "
                    "latency_ms, result_bytes, scope_checked, chain_id, seq, redaction_count")
SNAPSHOT_MIN_INTERVAL_S = 2.0
SNAPSHOT_MAX_ALERTS = 1_000_000
_TOP_GID = {"principal": 3, "tool": 5, "server": 6}  # grouping() bitmasks of the three grouping sets


class DataError(Exception):
    """A read failed; the message is shown to the analyst as is."""


def parse_json(value: Any, default: Any = None) -> Any:
    if value is None:
        return default
    if isinstance(value, (list, dict)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return default


def _friendly(exc: Exception) -> str:
    text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    low = text.lower()
    if "timeout" in low or "timed out" in low or "interrupt" in low:
        return f"The query took too long ({text}). Narrow the time range or add filters."
    if "does not exist" in low or ("not found" in low and ("table" in low or "view" in low)):
        return f"The store has no such data yet ({text})."
    return text


class AlertsSnapshot:
    """The `alerts` view, materialised in a private in-memory DuckDB database."""

    def __init__(self, data: DashboardData) -> None:
        self.data = data
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._sig: tuple = ()
        self._loaded_at = 0.0
        self._refreshing = False
        self.rows = 0

    def _signature(self) -> tuple:
        d = self.data.config.layout.alerts_dir
        try:
            return tuple(sorted((p.name, st.st_size, st.st_mtime_ns) for p in d.iterdir() if (st := p.stat())))
        except OSError:
            return ()

    def _load(self, sig: tuple) -> None:
        t0 = time.perf_counter()
        try:
            tbl = self.data.query.sql("select * from alerts", limit=SNAPSHOT_MAX_ALERTS, timeout_s=120)
        except Exception as exc:
            raise DataError(_friendly(exc)) from exc
        con = duckdb.connect(":memory:")
        con.execute("SET enable_external_access=false")
        con.register("_snap", tbl)
        con.execute("CREATE TABLE alerts AS SELECT * FROM _snap")
        con.unregister("_snap")
        con.execute("SET lock_configuration=true")
        with self._lock:
            self._con, self._sig, self._loaded_at, self.rows = con, sig, time.monotonic(), tbl.num_rows
        ms = (time.perf_counter() - t0) * 1000
        if ms > 500:
            log.info("dashboard_alerts_snapshot", alerts=tbl.num_rows, ms=round(ms, 1))

    def _background(self, sig: tuple) -> None:
        try:
            self._load(sig)
        except DataError as exc:
            log.warning("dashboard_alerts_snapshot_failed", error=str(exc)[:200])
        finally:
            self._refreshing = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        sig = self._signature()
        if self._con is None:
            self._load(sig)
        elif sig != self._sig and not self._refreshing and time.monotonic() - self._loaded_at >= SNAPSHOT_MIN_INTERVAL_S:
            self._refreshing = True  # serve the current snapshot while the next one loads
            threading.Thread(target=self._background, args=(sig,), name="alerts-snapshot", daemon=True).start()
        assert self._con is not None
        return self._con.cursor()

    def reload(self) -> None:
        """Re-read now (after this dashboard changed an alert: the analyst must see it)."""
        self._load(self._signature())

    def age_s(self) -> float:
        return time.monotonic() - self._loaded_at if self._loaded_at else 0.0


class DashboardData:
    """Reads for the pages. `query` is a `tooltrail.query.ReadOnlyQuery` (or anything with the
    same `sql(sql, params=, limit=, timeout_s=)` method)."""

    def __init__(self, config: Any, query: Any = None) -> None:
        self.config = config
        self.settings = config.dashboard
        self._query = query
        self._lock = threading.Lock()
        self._cache: dict[tuple, tuple[float, Any]] = {}
        self._refreshing: set[tuple] = set()
        self.alerts_snapshot = AlertsSnapshot(self)

    # ------------------------------------------------------------------ plumbing
    @property
    def query(self) -> Any:
        if self._query is None:
            with self._lock:
                if self._query is None:
                    from tooltrail.query import ReadOnlyQuery

                    self._query = ReadOnlyQuery(self.config)
        return self._query

    def rows(self, sql: str, params: Sequence[Any] | None = None, *, limit: int = 1000,
             timeout_s: float | None = None) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        try:
            tbl = self.query.sql(sql, params=list(params) if params else None, limit=limit,
                                 timeout_s=timeout_s or self.settings.page_timeout_s)
        except Exception as exc:  # the query layer's own errors, DuckDB's, timeouts
            log.warning("dashboard_query_failed", error_type=type(exc).__name__, error=str(exc)[:300])
            raise DataError(_friendly(exc)) from exc
        self._note_slow(sql, t0)
        return tbl.to_pylist()

    def one(self, sql: str, params: Sequence[Any] | None = None) -> dict[str, Any] | None:
        r = self.rows(sql, params, limit=1)
        return r[0] if r else None

    def arows(self, sql: str, params: Sequence[Any] | None = None, *, limit: int = 1000) -> list[dict[str, Any]]:
        """A query over the alerts snapshot (table `alerts`)."""
        t0 = time.perf_counter()
        try:
            cur = self.alerts_snapshot.cursor()
            try:
                reader = cur.sql(sql, params=list(params or []) or None).to_arrow_reader(limit)
                out: list[dict[str, Any]] = []
                for batch in reader:
                    out.extend(batch.to_pylist())
                    if len(out) >= limit:
                        break
            finally:
                cur.close()
        except duckdb.Error as exc:
            raise DataError(_friendly(exc)) from exc
        self._note_slow(sql, t0)
        return out[:limit]

    def _note_slow(self, sql: str, t0: float) -> None:
        ms = (time.perf_counter() - t0) * 1000
        if ms > 500:
            log.info("dashboard_slow_query", ms=round(ms, 1), sql=" ".join(sql.split())[:200])

    def cached(self, key: tuple, ttl: float, fn: Any, *, stale: float = 0.0) -> Any:
        """`fn()` cached for `ttl` seconds. With `stale` > 0 an older value (up to `ttl + stale`)
        is returned at once while a background thread computes the next one, so a page or an
        auto-refresh never waits for an aggregate it has already seen."""
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and now - hit[0] < ttl:
            return hit[1]
        if hit and now - hit[0] < ttl + stale:
            with self._lock:
                busy = key in self._refreshing
                self._refreshing.add(key)
            if not busy:
                threading.Thread(target=self._recompute, args=(key, fn), daemon=True, name="dash-cache").start()
            return hit[1]
        value = fn()
        self._store(key, value)
        return value

    def _store(self, key: tuple, value: Any) -> None:
        if len(self._cache) > 256:
            self._cache.clear()
        self._cache[key] = (time.monotonic(), value)

    def _recompute(self, key: tuple, fn: Any) -> None:
        try:
            self._store(key, fn())
        except Exception as exc:  # keep serving the last value; the next request retries
            log.warning("dashboard_refresh_failed", key=str(key)[:80], error=str(exc)[:200])
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def warm_up(self, *more: Any) -> None:
        """Open the views, load the alerts snapshot and run the pages' warmers `more` once, so
        that the first analyst after a start does not wait for them (run in a background thread)."""
        t0 = time.perf_counter()
        try:
            self.alerts_snapshot.cursor().close()
            for fn in more:
                fn()
        except Exception as exc:  # an empty or unreadable store: the pages say what is wrong
            log.info("dashboard_warm_up_skipped", error=str(exc)[:200])
            return
        log.info("dashboard_warm", ms=round((time.perf_counter() - t0) * 1000, 1))

    # ------------------------------------------------------------------ overview
    def overview(self, tr: TimeRange) -> dict[str, Any]:
        b_us = tr.bucket_seconds() * 1_000_000
        p = [tr.start, tr.end]
        series = self.rows("select (epoch_us(ts) // ?) * ? as bucket, decision, count(*) as n from events "
                           "where ts >= ? and ts < ? group by all order by bucket", [b_us, b_us, *p], limit=5000)
        kpi = self.one("select count(*) as events, count(*) filter (where decision = 'deny') as denies, "
                       "count(*) filter (where result in ('error', 'timeout')) as errors, "
                       "approx_count_distinct(principal) as principals, approx_count_distinct(session) as sessions "
                       "from events where ts >= ? and ts < ?", p) or {}
        top = self.rows(
            "with g as (select principal, tool, server, grouping(principal, tool, server) as gid, count(*) as n, "
            "count(*) filter (where decision = 'deny') as denies from events where ts >= ? and ts < ? "
            "group by grouping sets ((principal), (tool), (server))) "
            "select * from g qualify row_number() over (partition by gid order by n desc) <= 10", p, limit=100)
        tops: dict[str, list[dict]] = {k: [{"name": r[k], "n": r["n"], "denies": r["denies"]}
                                           for r in top if r["gid"] == gid] for k, gid in _TOP_GID.items()}
        for v in tops.values():
            v.sort(key=lambda r: -r["n"])
        return {"bucket_s": b_us // 1_000_000, "series": series, "kpi": kpi, "top": tops}

    def principal_volume(self, tr: TimeRange, principal: str) -> list[dict]:
        b_us = tr.bucket_seconds() * 1_000_000
        return self.rows("select (epoch_us(ts) // ?) * ? as bucket, count(*) as n from events "
                         "where principal = ? and ts >= ? and ts < ? group by all order by bucket",
                         [b_us, b_us, principal, tr.start, tr.end], limit=5000)

    def latest_event_ts(self) -> datetime | None:
        r = self.one("select max(ts) as latest from events")
        return to_dt(r["latest"]) if r else None

    # ------------------------------------------------------------------ alerts
    def alert_counts(self) -> list[dict]:
        return self.arows("select lower(severity) as severity, status, count(*) as n from alerts group by all",
                          limit=100)

    def alert_rule_ids(self) -> list[str]:
        return [r["rule_id"] for r in self.arows(
            "select distinct rule_id from alerts where rule_id is not null order by 1", limit=500)]

    @staticmethod
    def _alert_where(f: dict[str, Any]) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if f.get("severity"):
            sev = [s.lower() for s in f["severity"]]
            where.append(f"lower(severity) in ({', '.join('?' * len(sev))})")
            params += sev
        if f.get("status"):
            where.append(f"status in ({', '.join('?' * len(f['status']))})")
            params += list(f["status"])
        if f.get("rule_id"):
            where.append("rule_id = ?")
            params.append(f["rule_id"])
        if f.get("principal"):
            where.append("contains(lower(coalesce(principal, '')), ?)")
            params.append(str(f["principal"]).lower())
        if f.get("text"):
            where.append("(contains(lower(coalesce(title, '')), ?) or contains(lower(alert_id), ?) "
                         "or contains(lower(coalesce(session, '')), ?))")
            params += [str(f["text"]).lower()] * 3
        if f.get("since"):
            where.append("last_seen >= ?")
            params.append(f["since"])
        return (" where " + " and ".join(where)) if where else "", params

    def alerts(self, filters: dict[str, Any], sort: list[dict] | None, page: int,
               page_size: int) -> tuple[list[dict], int]:
        where, params = self._alert_where(filters)
        order = []
        for s in sort or [{"column_id": "last_seen", "direction": "desc"}]:
            col = ALERT_SORT_COLUMNS.get(s.get("column_id", ""))
            if col:
                order.append(f"{col} {'asc' if s.get('direction') == 'asc' else 'desc'}")
        order += ["last_seen desc", "alert_id"]
        total = self.arows(f"select count(*) as n from alerts{where}", params, limit=1)[0]["n"]
        rows = self.arows(
            "select alert_id, rule_id, title, lower(severity) as severity, status, principal, session, "
            f"first_seen, last_seen, match_count from alerts{where} order by {', '.join(order)} limit ? offset ?",
            [*params, page_size, page * page_size], limit=page_size)
        return rows, int(total)

    def alert(self, alert_id: str) -> dict | None:
        r = self.arows("select * from alerts where alert_id = ?", [alert_id], limit=1)
        return r[0] if r else None

    def alerts_overlapping(self, tr: TimeRange, session: str | None, principal: str | None) -> list[dict]:
        cond, params = [], []
        if session:
            cond.append("session = ?")
            params.append(session)
        if principal:
            cond.append("principal = ?")
            params.append(principal)
        if not cond:
            return []
        return self.arows("select * from alerts where (" + " or ".join(cond) + ") and last_seen >= ? and first_seen <= ? "
                          "order by first_seen limit 200", [*params, tr.start, tr.end], limit=200)

    def events_by_ref(self, refs: list[dict], limit: int = 200) -> list[dict]:
        """Evidence events by (chain_id, seq), narrowed by their event time when the reference
        carries it (segments are time-ordered, so the time prunes files); else by event_id."""
        refs = refs[:limit]
        out: list[dict] = []
        chains: dict[str, list[dict]] = {}
        ids = []
        for r in refs:
            if r.get("chain_id") is not None and r.get("seq") is not None:
                chains.setdefault(r["chain_id"], []).append(r)
            elif r.get("event_id"):
                ids.append(r["event_id"])
        for chain, rs in chains.items():
            seqs = [int(r["seq"]) for r in rs]
            cond, params = [f"chain_id = ? and seq in ({', '.join('?' * len(seqs))})"], [chain, *seqs]
            times = [t for r in rs if (t := to_dt(r.get("ts"))) is not None]
            if len(times) == len(rs):
                cond.append("ts between ? and ?")
                params += [min(times) - timedelta(seconds=1), max(times) + timedelta(seconds=1)]
            out += self.rows(f"select {TIMELINE_COLUMNS} from events where {' and '.join(cond)} order by ts, seq",
                             params, limit=limit)
        if ids:
            out += self.rows(f"select {TIMELINE_COLUMNS} from events where event_id in ({', '.join('?' * len(ids))}) "
                             "order by ts", ids, limit=limit)
        out.sort(key=lambda r: (to_dt(r["ts"]), r["chain_id"], r["seq"]))
        return out

    # ------------------------------------------------------------------ timeline
    @staticmethod
    def _who(session: str | None, principal: str | None) -> tuple[list[str], list[Any]]:
        cond, params = [], []
        if session:
            cond.append("session = ?")
            params.append(session)
        if principal:
            cond.append("principal = ?")
            params.append(principal)
        return cond, params

    def timeline(self, tr: TimeRange, session: str | None, principal: str | None, limit: int) -> list[dict]:
        cond, params = self._who(session, principal)
        if not cond:
            return []
        return self.rows(f"select {TIMELINE_COLUMNS} from events where {' and '.join(cond)} and ts >= ? and ts <= ? "
                         "order by ts, chain_id, seq limit ?", [*params, tr.start, tr.end, limit + 1], limit=limit + 1)

    def session_bounds(self, session: str) -> dict | None:
        return self.one("select min(ts) as first, max(ts) as last, count(*) as n, any_value(principal) as principal "
                        "from events where session = ?", [session])

    def recent_sessions(self, tr: TimeRange, principal: str | None = None, limit: int = 50) -> list[dict]:
        cond, params = self._who(None, principal)
        cond.append("ts >= ? and ts <= ?")
        params += [tr.start, tr.end]
        return self.rows(f"select session, any_value(principal) as principal, count(*) as n, max(ts) as last "
                         f"from events where {' and '.join(cond)} group by session order by last desc limit ?",
                         [*params, limit], limit=limit)

    def event(self, chain_id: str, seq: int, ts: Any = None) -> dict | None:
        t = to_dt(ts) if ts is not None else None
        if t is not None:
            row = self.one("select * from events where chain_id = ? and seq = ? and ts between ? and ?",
                           [chain_id, int(seq), t - timedelta(seconds=1), t + timedelta(seconds=1)])
            if row is not None:
                return row
        return self.one("select * from events where chain_id = ? and seq = ?", [chain_id, int(seq)])

    def events_for_export(self, tr: TimeRange, session: str | None, principal: str | None, limit: int) -> list[dict]:
        cond, params = self._who(session, principal)
        if not cond:
            return []
        return self.rows(f"select event_id, ts, chain_id, seq, prev_hash, hash, record from events "
                         f"where {' and '.join(cond)} and ts >= ? and ts <= ? order by ts, chain_id, seq limit ?",
                         [*params, tr.start, tr.end, limit], limit=limit)

    # ------------------------------------------------------------------ integrity
    def chain_stats(self) -> list[dict]:
        """Events, size and time span per chain, from the segment manifests (the metadata the
        `events` view itself is built from): no scan of the events."""
        try:
            from ingest.segments import all_live_segments

            segs = all_live_segments(self.config.layout)
        except (ImportError, OSError, ValueError) as exc:
            log.warning("dashboard_manifest_unreadable", error=str(exc)[:200])
            return self.rows("select chain_id, count(*) as events, max(seq) + 1 as size, min(ts) as first_ts, "
                             "max(ts) as last_ts from events group by chain_id order by chain_id", limit=1000)
        out: dict[str, dict] = {}
        for sg in segs:
            c = out.setdefault(sg.chain_id, {"chain_id": sg.chain_id, "events": 0, "size": 0, "first_ts": None,
                                             "last_ts": None})
            c["events"] += sg.rows
            c["size"] = max(c["size"], sg.last_seq + 1)
            if sg.min_ts and (c["first_ts"] is None or sg.min_ts < c["first_ts"]):
                c["first_ts"] = sg.min_ts
            if sg.max_ts and (c["last_ts"] is None or sg.max_ts > c["last_ts"]):
                c["last_ts"] = sg.max_ts
        return [out[k] for k in sorted(out)]

    def checkpoints(self, limit: int = 50) -> list[dict]:
        return self.rows("select * from checkpoints order by time desc limit ?", [limit], limit=limit)

    def latest_checkpoints(self) -> list[dict]:
        return self.rows("select * from checkpoints qualify row_number() over (partition by chain_id "
                         "order by size desc, time desc) = 1 order by chain_id", limit=1000)

    def quarantine_summary(self, limit: int = 50) -> tuple[int, list[dict]]:
        """Total quarantined items and counts by (source, field, reason) of each item's first reason."""
        total = (self.one("select count(*) as n from quarantine") or {"n": 0})["n"]
        if not total:
            return 0, []
        rows = self.rows(
            "select source, coalesce(json_extract_string(reasons, '$[0].field'), '?') as field, "
            "coalesce(json_extract_string(reasons, '$[0].reason'), '?') as reason, count(*) as n, "
            "max(received_at) as last from quarantine group by all order by n desc limit ?", [limit], limit=limit)
        return int(total), rows
