"""Alert store: grouping, suppression, lifecycle, append-only persistence.

Files under `alerts_dir` (lake/alerts/), all append-only JSON lines, readable by DuckDB:
- `alerts-YYYY-MM-DD.jsonl`: alert snapshots, written by the one owning detector process; the
  latest snapshot per alert_id (by `written_at`, then `rev`) is the alert's content.
- `status.jsonl`: lifecycle changes {alert_id, status, who, at, note}; any process may append
  (under an exclusive flock) through `AlertStore.set_status` - this is how the dashboard
  acknowledges / resolves without owning the detector's state.
`alerts_view_sql(alerts_dir)` turns both into one row per alert with its latest state.

Grouping and suppression (per rule: `group_window`, `suppress_for`), for a match with dedup
key K and the latest alert A of K:
1. A open/acknowledged and match time <= A.last_seen + group_window -> folded into A
   (match_count + 1, evidence appended up to the cap).
2. else match time <= A.first_seen + suppress_for -> A.suppressed_count + 1 (also when A was
   resolved: a resolved alert is not reopened inside its suppression window).
3. else a new alert.
Matches silenced by a suppression entry (DetectSettings.suppressions) are counted on the
latest alert of their key, or in `unattached_suppressed` when there is none. Nothing is
dropped silently.
"""

from __future__ import annotations

import fcntl
import fnmatch
import heapq
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from detect.timeutil import epoch_dt, epoch_ts, ts_epoch
from schemas.alert import STATUSES, Alert, AlertEntities, EvidenceRef, StatusChange, make_alert_id

EVIDENCE_CAP = 50
STATUS_FILE = "status.jsonl"
EVICT_HORIZON = 7 * 86400.0


@dataclass(frozen=True)
class RuleMeta:
    """What an alert copies from the rule / detector that raised it."""

    rule_id: str
    version: int
    title: str
    severity: str
    tags: tuple[str, ...]
    description: str
    runbook: str
    detector: str
    group_window: float = 3600.0
    suppress_for: float = 0.0


class Match:
    """One rule / detector hit. `evidence` holds records (dicts) in event order. `context`
    may be given as a function: it is built on first access only (a match that folds into
    an open alert never needs it); the function must not depend on state that changes later."""

    __slots__ = ("meta", "ts", "dedup", "evidence", "_context", "score", "actual", "expected")

    def __init__(self, meta: RuleMeta, ts: float, dedup: str, evidence: list[dict[str, Any]],
                 context: dict[str, Any] | Callable[[], dict[str, Any]] | None = None, score: float | None = None,
                 actual: float | None = None, expected: float | None = None) -> None:
        self.meta = meta
        self.ts = ts
        self.dedup = dedup
        self.evidence = evidence
        self._context = context
        self.score = score
        self.actual = actual
        self.expected = expected

    @property
    def context(self) -> dict[str, Any]:
        c = self._context
        if c is None or callable(c):
            c = self._context = (c() if c is not None else None) or {}
        return c


def evidence_ref(rec: dict[str, Any]) -> dict[str, Any]:
    eid = rec.get("event_id")
    return {"event_id": str(eid) if eid is not None else "?", "chain_id": rec.get("chain_id"),
            "seq": rec.get("seq"), "hash": rec.get("hash"), "ts": rec.get("ts")}


class _State:
    __slots__ = ("alert_id", "meta", "dedup", "status", "history", "match_count", "suppressed_count",
                 "first_seen", "last_seen", "created_at", "entities", "tools", "context", "evidence",
                 "evidence_ids", "evidence_total", "score", "actual", "expected", "rev")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__ if k not in ("meta", "evidence_ids")}
        d["meta"] = self.meta.__dict__.copy()
        d["meta"]["tags"] = list(self.meta.tags)
        d["tools"] = list(self.tools)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> _State:
        s = cls()
        for k in cls.__slots__:
            if k in ("meta", "evidence_ids"):
                continue
            setattr(s, k, d[k])
        m = dict(d["meta"])
        m["tags"] = tuple(m["tags"])
        s.meta = RuleMeta(**m)
        s.evidence_ids = {e["event_id"] for e in s.evidence}
        return s


@dataclass
class AlertChange:
    kind: str  # "created" | "updated" | "status"
    alert: Alert


@dataclass
class Suppression:
    """A suppression entry: rule id glob + exact entity values, optionally until a time."""

    rule: str = "*"
    principal: str | None = None
    session: str | None = None
    server: str | None = None
    tool: str | None = None
    until: float | None = None

    def covers(self, m: Match, last: dict[str, Any]) -> bool:
        if not fnmatch.fnmatchcase(m.meta.rule_id, self.rule):
            return False
        if self.until is not None and m.ts > self.until:
            return False
        for f in ("principal", "session", "server", "tool"):
            want = getattr(self, f)
            if want is not None and last.get(f) != want:
                return False
        return True


def _now() -> datetime:
    return datetime.now(UTC)


def _expires(s: _State, horizon: float = EVICT_HORIZON) -> float:
    """Event time after which no match can join or be suppressed by the alert."""
    return s.last_seen + max(s.meta.group_window, s.meta.suppress_for, horizon)


class AlertStore:
    """In-memory index of recent alerts + append-only files. `alerts_dir=None`: memory only
    (backtests to stdout, rule tests, evaluation)."""

    def __init__(self, alerts_dir: Path | str | None = None, *, owner: bool = True,
                 suppressions: list[Suppression] | None = None) -> None:
        self.dir = Path(alerts_dir) if alerts_dir is not None else None
        self.owner = owner
        self.by_key: dict[str, _State] = {}
        self.by_id: dict[str, _State] = {}
        self.archived: dict[str, _State] = {}
        self.dirty: dict[str, str] = {}  # alert_id -> change kind
        self.suppressions = suppressions or []
        self.unattached_suppressed: dict[str, int] = {}
        self.listeners: list[Callable[[list[AlertChange]], None]] = []
        self._status_offset = 0
        self._rev = 0
        # heap of (expiry when pushed, alert_id) over by_id: last_seen only grows, so the pushed
        # expiry is a lower bound and evict() only looks at alerts that may have expired
        self._expiry: list[tuple[float, str]] = []
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            if owner:
                (self.dir / STATUS_FILE).touch(exist_ok=True)

    # -- matches --------------------------------------------------------------------------
    def add_match(self, m: Match) -> str | None:
        """Group / suppress / create. Returns the alert id the match was attached to."""
        meta = m.meta
        last = m.evidence[-1] if m.evidence else {}
        cur = self.by_key.get(m.dedup)
        if self.suppressions and any(s.covers(m, last) for s in self.suppressions):
            if cur is not None:
                cur.suppressed_count += 1
                self.dirty.setdefault(cur.alert_id, "updated")
                return cur.alert_id
            self.unattached_suppressed[meta.rule_id] = self.unattached_suppressed.get(meta.rule_id, 0) + 1
            return None
        if cur is not None:
            if cur.status != "resolved" and m.ts <= cur.last_seen + meta.group_window:
                cur.match_count += 1
                if m.ts > cur.last_seen:
                    cur.last_seen = m.ts
                if m.ts < cur.first_seen:
                    cur.first_seen = m.ts
                self._add_evidence(cur, m)
                if m.score is not None and (cur.score is None or m.score > cur.score):
                    cur.score, cur.actual, cur.expected = m.score, m.actual, m.expected
                self.dirty.setdefault(cur.alert_id, "updated")
                return cur.alert_id
            if m.ts <= cur.first_seen + meta.suppress_for:
                cur.suppressed_count += 1
                self.dirty.setdefault(cur.alert_id, "updated")
                return cur.alert_id
        first_id = str(m.evidence[0].get("event_id")) if m.evidence else epoch_ts(m.ts)
        s = _State()
        s.alert_id = make_alert_id(meta.rule_id, m.dedup, first_id)
        if s.alert_id in self.by_id:  # same first event, same key, new alert: disambiguate deterministically
            s.alert_id = make_alert_id(meta.rule_id, m.dedup, f"{first_id}@{m.ts!r}")
        s.meta = meta
        s.dedup = m.dedup
        s.status = "open"
        s.history = []
        s.match_count = 1
        s.suppressed_count = 0
        s.first_seen = min(ts_epoch(r["ts"]) for r in m.evidence) if m.evidence and all("ts" in r for r in m.evidence) else m.ts
        s.last_seen = m.ts
        s.created_at = None
        s.entities = {k: last.get(k) for k in ("principal", "agent", "session", "server", "source")}
        s.tools = []
        s.context = dict(m.context)
        s.evidence = []
        s.evidence_ids = set()
        s.evidence_total = 0
        s.score, s.actual, s.expected = m.score, m.actual, m.expected
        s.rev = 0
        self._add_evidence(s, m)
        self.by_key[m.dedup] = s
        self.by_id[s.alert_id] = s
        heapq.heappush(self._expiry, (_expires(s), s.alert_id))
        self.dirty[s.alert_id] = "created"
        return s.alert_id

    @staticmethod
    def _add_evidence(s: _State, m: Match) -> None:
        for r in m.evidence:
            ref = evidence_ref(r)
            if ref["event_id"] in s.evidence_ids:
                continue
            s.evidence_ids.add(ref["event_id"])
            s.evidence_total += 1
            if len(s.evidence) < EVIDENCE_CAP:
                s.evidence.append(ref)
            t = r.get("tool")
            if t and t not in s.tools and len(s.tools) < 20:
                s.tools.append(t)

    # -- snapshots --------------------------------------------------------------------------
    @staticmethod
    def _snapshot(s: _State, now: datetime) -> Alert:
        meta = s.meta
        created = s.created_at or epoch_ts(now.timestamp())
        return Alert(
            alert_id=s.alert_id, dedup_key=s.dedup, rule_id=meta.rule_id, rule_version=meta.version,
            title=meta.title, severity=meta.severity, tags=list(meta.tags), description=meta.description,
            runbook=meta.runbook, detector=meta.detector, status=s.status,
            history=[StatusChange.model_validate(h) for h in s.history],
            match_count=s.match_count, suppressed_count=s.suppressed_count,
            first_seen=epoch_dt(s.first_seen), last_seen=epoch_dt(s.last_seen),
            created_at=datetime.fromisoformat(created), updated_at=now,
            entities=AlertEntities(**{k: v for k, v in s.entities.items() if v is not None}, tools=list(s.tools)),
            context=s.context, evidence=[EvidenceRef(**e) for e in s.evidence], evidence_total=s.evidence_total,
            score=s.score, actual=s.actual, expected=s.expected,
        )

    def flush(self) -> list[AlertChange]:
        """Write a snapshot of every alert changed since the last flush; notify listeners."""
        self.poll_status()
        if not self.dirty:
            return []
        now = _now()
        changes: list[AlertChange] = []
        lines: list[bytes] = []
        wall = epoch_ts(now.timestamp())
        for aid, kind in self.dirty.items():
            s = self.by_id.get(aid)
            if s is None:
                continue
            if s.created_at is None:
                s.created_at = wall
            s.rev += 1
            a = self._snapshot(s, now)
            changes.append(AlertChange(kind, a))
            if self.dir is not None:
                d = a.model_dump(mode="json")
                d["rev"] = s.rev
                d["written_at"] = wall
                d["updated_by"] = "detector"
                d["note"] = None
                lines.append(orjson.dumps(d) + b"\n")
        self.dirty.clear()
        if lines and self.dir is not None and self.owner:
            path = self.dir / f"alerts-{now.strftime('%Y-%m-%d')}.jsonl"
            with open(path, "ab") as fh:
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
        for fn in self.listeners:
            fn(changes)
        return changes

    def settle(self) -> None:
        """flush() for a memory store nobody listens to (backtests): the same state changes
        (the changed alerts stop being dirty), without building snapshots."""
        if self.dir is not None or self.listeners:
            self.flush()
            return
        wall: str | None = None
        for aid in self.dirty:
            s = self.by_id.get(aid)
            if s is None:
                continue
            if s.created_at is None:
                s.created_at = wall = wall or epoch_ts(_now().timestamp())
            s.rev += 1
        self.dirty.clear()

    def add_listener(self, fn: Callable[[list[AlertChange]], None]) -> None:
        """fn(changes) is called after every flush that changed alerts (webhooks, UI push)."""
        self.listeners.append(fn)

    # -- lifecycle ----------------------------------------------------------------------------
    def set_status(self, alert_id: str, status: str, who: str, note: str | None = None) -> StatusChange:
        """Record a lifecycle change (any process). Raises KeyError for an unknown alert,
        ValueError for a bad status / empty `who`."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if not who or not who.strip():
            raise ValueError("who is required")
        if alert_id not in self.by_id and not self._exists_on_disk(alert_id):
            raise KeyError(alert_id)
        ch = StatusChange(status=status, who=who.strip(), at=_now(), note=note)
        line = {"alert_id": alert_id, **ch.model_dump(mode="json")}
        if self.dir is not None:
            path = self.dir / STATUS_FILE
            with open(path, "ab") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                try:
                    fh.write(orjson.dumps(line) + b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        else:
            self._apply_status(line)
        return ch

    def _apply_status(self, line: dict[str, Any]) -> None:
        s = self.by_id.get(line.get("alert_id", ""))
        if s is None or line.get("status") not in STATUSES:
            return
        s.status = line["status"]
        s.history.append({k: line.get(k) for k in ("status", "who", "at", "note")})
        self.dirty.setdefault(s.alert_id, "status")  # the next flush emits it (webhooks: resolve)

    def poll_status(self) -> int:
        """Apply status changes appended by any process since the last poll."""
        if self.dir is None:
            return 0
        path = self.dir / STATUS_FILE
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return 0
        if size <= self._status_offset:
            return 0
        with open(path, "rb") as fh:
            fh.seek(self._status_offset)
            data = fh.read(size - self._status_offset)
        end = data.rfind(b"\n") + 1
        self._status_offset += end
        n = 0
        for raw in data[:end].splitlines():
            try:
                self._apply_status(orjson.loads(raw))
                n += 1
            except orjson.JSONDecodeError:
                continue
        return n

    def _exists_on_disk(self, alert_id: str) -> bool:
        if self.dir is None:
            return False
        needle = f'"alert_id":"{alert_id}"'.encode()
        for p in sorted(self.dir.glob("alerts-*.jsonl")):
            with open(p, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    if needle in chunk:
                        return True
        return False

    def get(self, alert_id: str) -> Alert | None:
        s = self.by_id.get(alert_id)
        return self._snapshot(s, _now()) if s else None

    def alerts(self) -> list[Alert]:
        """Every alert held in memory (all of them for a memory store), oldest first."""
        now = _now()
        states = list(self.archived.values()) + list(self.by_id.values())
        return [self._snapshot(s, now) for s in sorted(states, key=lambda s: (s.first_seen, s.alert_id))]

    def __len__(self) -> int:
        return len(self.by_id) + len(self.archived)

    # -- bounded state ---------------------------------------------------------------------------
    def evict(self, watermark: float, horizon: float = EVICT_HORIZON) -> int:
        """Forget alerts no match can join any more (kept on disk): not dirty and
        last_seen + max(group_window, suppress_for, horizon) < watermark."""
        if horizon != EVICT_HORIZON:
            drop = [aid for aid, s in self.by_id.items() if aid not in self.dirty and _expires(s, horizon) < watermark]
        else:
            heap, drop, keep = self._expiry, [], []
            while heap and heap[0][0] < watermark:
                _, aid = heapq.heappop(heap)
                s = self.by_id.get(aid)
                if s is None:
                    continue
                exp = _expires(s, horizon)
                if exp < watermark and aid not in self.dirty:
                    drop.append(aid)
                else:  # matched since it was pushed, or waits for a flush
                    keep.append((exp, aid))
            for item in keep:
                heapq.heappush(heap, item)
        for aid in drop:
            s = self.by_id.pop(aid)
            if self.by_key.get(s.dedup) is s:
                del self.by_key[s.dedup]
            if self.dir is None:  # a memory store is the only copy: keep it for alerts()
                self.archived[aid] = s
        return len(drop)

    def state(self) -> dict[str, Any]:
        return {"alerts": [s.to_dict() for s in self.by_id.values()],
                "archived": [s.to_dict() for s in self.archived.values()], "unattached_suppressed": self.unattached_suppressed,
                "status_offset": self._status_offset}

    def load(self, st: dict[str, Any]) -> None:
        self.by_id.clear()
        self.by_key.clear()
        self._expiry.clear()
        for d in st.get("alerts", []):
            s = _State.from_dict(d)
            self.by_id[s.alert_id] = s
            self._expiry.append((_expires(s), s.alert_id))
            cur = self.by_key.get(s.dedup)
            if cur is None or (s.first_seen, s.alert_id) > (cur.first_seen, cur.alert_id):
                self.by_key[s.dedup] = s
        heapq.heapify(self._expiry)
        self.archived = {d["alert_id"]: _State.from_dict(d) for d in st.get("archived", [])}
        self.unattached_suppressed = dict(st.get("unattached_suppressed", {}))
        self._status_offset = int(st.get("status_offset", 0))


# -- DuckDB view ---------------------------------------------------------------------------------
_SNAP_COLUMNS = {
    "alert_id": "VARCHAR", "dedup_key": "VARCHAR", "rule_id": "VARCHAR", "rule_version": "INTEGER",
    "title": "VARCHAR", "severity": "VARCHAR", "tags": "VARCHAR[]", "description": "VARCHAR", "runbook": "VARCHAR",
    "detector": "VARCHAR", "status": "VARCHAR", "history": "JSON", "match_count": "BIGINT", "suppressed_count": "BIGINT",
    "first_seen": "VARCHAR", "last_seen": "VARCHAR", "created_at": "VARCHAR", "updated_at": "VARCHAR",
    "entities": "JSON", "context": "JSON", "evidence": "JSON", "evidence_total": "BIGINT",
    "score": "DOUBLE", "actual": "DOUBLE", "expected": "DOUBLE", "rev": "BIGINT", "written_at": "VARCHAR",
    "updated_by": "VARCHAR", "note": "VARCHAR",
}
_STATUS_COLUMNS = {"alert_id": "VARCHAR", "status": "VARCHAR", "who": "VARCHAR", "at": "VARCHAR", "note": "VARCHAR"}


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _cols(c: dict[str, str]) -> str:
    return "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in c.items()) + "}"


def _empty(c: dict[str, str]) -> str:
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {k}" for k, t in c.items()) + " WHERE false"


def alerts_view_sql(alerts_dir: Path | str) -> str:
    """A single SELECT yielding one row per alert with its latest state. Columns: alert_id,
    dedup_key, rule_id, rule_version, title, severity, detector, status, principal, agent,
    session, server, source, tools, first_seen, last_seen, created_at, updated_at, updated_by,
    note, match_count, suppressed_count, evidence_total, score, actual, expected, tags,
    description, runbook, evidence (JSON), entities (JSON), context (JSON), history (JSON).
    Call it when (re)registering the view: files that do not exist yet are left out."""
    d = Path(alerts_dir)
    snap_glob = str(d / "alerts-*.jsonl")
    status_path = d / STATUS_FILE
    has_snap = d.is_dir() and any(d.glob("alerts-*.jsonl"))
    has_status = status_path.is_file()
    snap_src = (f"SELECT * FROM read_json({_lit(snap_glob)}, format='newline_delimited', ignore_errors=true, "
                f"columns={_cols(_SNAP_COLUMNS)})") if has_snap else _empty(_SNAP_COLUMNS)
    status_src = (f"SELECT * FROM read_json({_lit(str(status_path))}, format='newline_delimited', ignore_errors=true, "
                  f"columns={_cols(_STATUS_COLUMNS)})") if has_status else _empty(_STATUS_COLUMNS)
    return f"""SELECT s.alert_id, s.dedup_key, s.rule_id, s.rule_version, s.title, s.severity, s.detector,
  coalesce(st.last_status, s.status) AS status,
  s.entities->>'principal' AS principal, s.entities->>'agent' AS agent, s.entities->>'session' AS session,
  s.entities->>'server' AS server, s.entities->>'source' AS source,
  CAST(s.entities->'tools' AS VARCHAR[]) AS tools,
  CAST(s.first_seen AS TIMESTAMPTZ) AS first_seen, CAST(s.last_seen AS TIMESTAMPTZ) AS last_seen,
  CAST(s.created_at AS TIMESTAMPTZ) AS created_at,
  greatest(CAST(s.written_at AS TIMESTAMPTZ), CAST(st.last_at AS TIMESTAMPTZ)) AS updated_at,
  CASE WHEN st.last_at IS NOT NULL AND CAST(st.last_at AS TIMESTAMPTZ) >= CAST(s.written_at AS TIMESTAMPTZ)
       THEN st.last_who ELSE s.updated_by END AS updated_by,
  st.last_note AS note,
  s.match_count, s.suppressed_count, s.evidence_total, s.score, s.actual, s.expected,
  s.tags, s.description, s.runbook, s.evidence, s.entities, s.context,
  CAST(coalesce(st.history, '[]') AS JSON) AS history
FROM (
  SELECT * FROM ({snap_src}) WHERE alert_id IS NOT NULL
  QUALIFY row_number() OVER (PARTITION BY alert_id ORDER BY written_at DESC, rev DESC) = 1
) s
LEFT JOIN (
  SELECT alert_id,
    arg_max(status, "at") AS last_status, max("at") AS last_at, arg_max(who, "at") AS last_who, arg_max(note, "at") AS last_note,
    to_json(list(struct_pack(status := status, who := who, "at" := "at", note := note) ORDER BY "at")) AS history
  FROM ({status_src}) WHERE alert_id IS NOT NULL AND status IN ('open', 'acknowledged', 'resolved')
  GROUP BY alert_id
) st ON st.alert_id = s.alert_id"""
