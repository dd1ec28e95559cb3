"""The persistent outbox: one SQLite file per owning process under <state>/delivery/.

    <state>/delivery/<name>.db              messages, attempts (the delivery log), destinations
    <state>/delivery/<name>.lock            flock held by the owning process for its lifetime
    <state>/delivery/<name>.requests.jsonl  requests from other processes (resend, enable):
                                            appended under flock, applied by the owner

A message is written (fsync'd, WAL journal, synchronous=FULL) before anything is sent, with
its final id and body; a restart resumes every `pending` message with the same id and body.
States: pending -> delivered | dead. The body of a message holds no secrets (PagerDuty's
routing key and the signature are added per attempt).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  msg_id TEXT NOT NULL UNIQUE,
  destination TEXT NOT NULL,
  kind TEXT NOT NULL,
  alert_id TEXT NOT NULL,
  event TEXT NOT NULL,
  payload BLOB NOT NULL,
  created_at REAL NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  round_base INTEGER NOT NULL DEFAULT 0,
  next_at REAL NOT NULL,
  last_status INTEGER,
  last_error TEXT,
  finished_at REAL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages(state, next_at);
CREATE INDEX IF NOT EXISTS messages_alert ON messages(alert_id);
CREATE TABLE IF NOT EXISTS attempts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  msg_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  started_at REAL NOT NULL,
  latency_ms REAL,
  status INTEGER,
  error TEXT,
  retry_after REAL,
  outcome TEXT NOT NULL,
  next_at REAL
);
CREATE INDEX IF NOT EXISTS attempts_msg ON attempts(msg_id);
CREATE TABLE IF NOT EXISTS destinations (
  name TEXT PRIMARY KEY,
  url_fp TEXT,
  disabled_at REAL,
  disabled_reason TEXT
);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT);
"""

MESSAGE_COLUMNS = ("seq", "msg_id", "destination", "kind", "alert_id", "event", "created_at", "state", "attempts",
                   "next_at", "last_status", "last_error", "finished_at")


class OutboxBusyError(RuntimeError):
    """Another process owns this outbox."""


def delivery_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "delivery"


@dataclass
class Message:
    seq: int
    msg_id: str
    destination: str
    kind: str
    alert_id: str
    event: str
    payload: bytes
    attempts: int
    next_at: float
    round_base: int = 0  # attempts made before the latest manual re-send

    @property
    def round_attempts(self) -> int:
        return self.attempts - self.round_base


class Outbox:
    """Owner-side handle (takes the lock). Thread-safe: one connection behind a lock."""

    def __init__(self, state_dir: Path | str, name: str = "outbox", lock_wait_s: float = 1.0) -> None:
        self.dir = delivery_dir(Path(state_dir))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.path = self.dir / f"{name}.db"
        self.requests_path = self.dir / f"{name}.requests.jsonl"
        self._lock_fd = os.open(self.dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + lock_wait_s  # `owner_running` probes hold the lock for an instant
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(self._lock_fd)
                raise OutboxBusyError(f"outbox {name!r} under {self.dir} is owned by another process "
                                      "(one delivery process per outbox)") from exc
        self._lock = threading.Lock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        os.chmod(self.path, 0o600)

    def close(self) -> None:
        with self._lock:
            if self._lock_fd < 0:
                return
            self.db.close()
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    # -- messages ---------------------------------------------------------------------------
    def enqueue(self, rows: list[dict[str, Any]]) -> list[str]:
        """Insert messages (msg_id, destination, kind, alert_id, event, payload); ids already
        present are left alone (idempotent). A new "updated" message replaces an older
        "updated" one of the same alert and destination that was never attempted (a slow
        receiver gets the latest state, not a backlog). Returns the ids that were new."""
        now = time.time()
        new: list[str] = []
        with self.tx() as db:
            for r in rows:
                if r["event"] == "updated":
                    db.execute("DELETE FROM messages WHERE state='pending' AND attempts=0 AND event='updated' "
                               "AND destination=? AND alert_id=? AND msg_id != ?",
                               (r["destination"], r["alert_id"], r["msg_id"]))
                cur = db.execute(
                    "INSERT OR IGNORE INTO messages (msg_id, destination, kind, alert_id, event, payload, created_at, next_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (r["msg_id"], r["destination"], r["kind"], r["alert_id"], r["event"], r["payload"], now, now))
                if cur.rowcount:
                    new.append(r["msg_id"])
        return new

    def due(self, now: float, destinations: set[str], limit: int = 100) -> list[Message]:
        """Pending messages due now, for enabled destinations, oldest first, in order per
        (destination, alert): a message waits while an earlier one of its alert is pending."""
        if not destinations:
            return []
        qs = ",".join("?" * len(destinations))
        with self._lock:
            rows = self.db.execute(
                f"SELECT seq, msg_id, destination, kind, alert_id, event, payload, attempts, next_at, round_base FROM messages m "
                f"WHERE state = 'pending' AND next_at <= ? AND destination IN ({qs}) "
                "AND destination NOT IN (SELECT name FROM destinations WHERE disabled_at IS NOT NULL) "
                "AND NOT EXISTS (SELECT 1 FROM messages p WHERE p.state = 'pending' AND p.destination = m.destination "
                "AND p.alert_id = m.alert_id AND p.seq < m.seq) ORDER BY next_at, seq LIMIT ?",
                (now, *sorted(destinations), limit)).fetchall()
        return [Message(*r) for r in rows]

    def next_due(self, destinations: set[str]) -> float | None:
        if not destinations:
            return None
        qs = ",".join("?" * len(destinations))
        with self._lock:
            row = self.db.execute(
                f"SELECT min(next_at) FROM messages m WHERE state = 'pending' AND destination IN ({qs}) "
                "AND destination NOT IN (SELECT name FROM destinations WHERE disabled_at IS NOT NULL) "
                "AND NOT EXISTS (SELECT 1 FROM messages p WHERE p.state = 'pending' AND p.destination = m.destination "
                "AND p.alert_id = m.alert_id AND p.seq < m.seq)",
                tuple(sorted(destinations))).fetchone()
        return row[0] if row else None

    def record_attempt(self, m: Message, *, started_at: float, latency_ms: float | None, status: int | None,
                       error: str | None, retry_after: float | None, outcome: str, next_at: float | None) -> None:
        """outcome: delivered | retry | dead | gone (410: destination disabled)."""
        n = m.attempts + 1
        with self.tx() as db:
            db.execute("INSERT INTO attempts (msg_id, n, started_at, latency_ms, status, error, retry_after, outcome, next_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (m.msg_id, n, started_at, latency_ms, status, error, retry_after, outcome, next_at))
            if outcome == "delivered":
                db.execute("UPDATE messages SET state='delivered', attempts=?, last_status=?, last_error=NULL, finished_at=? "
                           "WHERE msg_id=?", (n, status, time.time(), m.msg_id))
            elif outcome in ("dead", "gone"):
                db.execute("UPDATE messages SET state='dead', attempts=?, last_status=?, last_error=?, finished_at=? "
                           "WHERE msg_id=?", (n, status, error, time.time(), m.msg_id))
            else:
                db.execute("UPDATE messages SET attempts=?, last_status=?, last_error=?, next_at=? WHERE msg_id=?",
                           (n, status, error, next_at, m.msg_id))
            if outcome == "gone":
                db.execute("INSERT INTO destinations (name, disabled_at, disabled_reason) VALUES (?, ?, ?) "
                           "ON CONFLICT(name) DO UPDATE SET disabled_at=excluded.disabled_at, "
                           "disabled_reason=excluded.disabled_reason",
                           (m.destination, time.time(), f"receiver answered {status} Gone"))

    def requeue(self, msg_id: str) -> bool:
        """Manual re-send: the same id and body, a fresh round of max_attempts, due now (the
        attempt numbers in the delivery log keep counting)."""
        with self.tx() as db:
            cur = db.execute("UPDATE messages SET state='pending', round_base=attempts, next_at=?, finished_at=NULL "
                             "WHERE msg_id=?", (time.time(), msg_id))
            return bool(cur.rowcount)

    def messages_of_alert(self, alert_id: str) -> list[dict[str, Any]]:
        with self._lock:
            cur = self.db.execute(f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages WHERE alert_id=? ORDER BY seq",
                                  (alert_id,))
            return [dict(zip(MESSAGE_COLUMNS, r, strict=True)) for r in cur.fetchall()]

    def has_message(self, msg_id: str) -> bool:
        with self._lock:
            return self.db.execute("SELECT 1 FROM messages WHERE msg_id=?", (msg_id,)).fetchone() is not None

    def purge(self, older_than: float) -> int:
        with self.tx() as db:
            db.execute("DELETE FROM attempts WHERE msg_id IN (SELECT msg_id FROM messages WHERE state != 'pending' "
                       "AND finished_at < ?)", (older_than,))
            return db.execute("DELETE FROM messages WHERE state != 'pending' AND finished_at < ?", (older_than,)).rowcount

    def kill_orphans(self, configured: set[str]) -> int:
        """Pending messages of destinations removed from the config are dead-lettered (visible)."""
        qs = ",".join("?" * len(configured)) or "''"
        with self.tx() as db:
            return db.execute(
                f"UPDATE messages SET state='dead', last_error='destination no longer configured', finished_at=? "
                f"WHERE state='pending' AND destination NOT IN ({qs})", (time.time(), *sorted(configured))).rowcount

    # -- destinations ------------------------------------------------------------------------
    def sync_destinations(self, fingerprints: dict[str, str]) -> None:
        """A destination disabled by a 410 is enabled again when its URL changes in the config."""
        with self.tx() as db:
            for name, fp in fingerprints.items():
                row = db.execute("SELECT url_fp FROM destinations WHERE name=?", (name,)).fetchone()
                if row is None:
                    db.execute("INSERT INTO destinations (name, url_fp) VALUES (?, ?)", (name, fp))
                elif row[0] != fp:
                    db.execute("UPDATE destinations SET url_fp=?, disabled_at=NULL, disabled_reason=NULL WHERE name=?",
                               (fp, name))

    def set_enabled(self, name: str) -> bool:
        with self.tx() as db:
            return bool(db.execute("UPDATE destinations SET disabled_at=NULL, disabled_reason=NULL WHERE name=?",
                                   (name,)).rowcount)

    def disabled(self) -> dict[str, str]:
        with self._lock:
            return {n: r for n, r in self.db.execute(
                "SELECT name, disabled_reason FROM destinations WHERE disabled_at IS NOT NULL").fetchall()}

    # -- requests from other processes ---------------------------------------------------------
    def take_requests(self) -> list[dict[str, Any]]:
        """Requests appended since the last call (offset kept in the database)."""
        try:
            size = self.requests_path.stat().st_size
        except FileNotFoundError:
            return []
        with self._lock:
            row = self.db.execute("SELECT v FROM kv WHERE k='requests_offset'").fetchone()
        off = int(row[0]) if row else 0
        if size <= off:
            return []
        with open(self.requests_path, "rb") as fh:
            fh.seek(off)
            data = fh.read(size - off)
        end = data.rfind(b"\n") + 1
        out = []
        for raw in data[:end].splitlines():
            try:
                out.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                continue
        with self.tx() as db:
            db.execute("INSERT INTO kv (k, v) VALUES ('requests_offset', ?) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
                       (str(off + end),))
        return out


def append_request(state_dir: Path | str, name: str, req: dict[str, Any]) -> None:
    """Any process: ask the owner of outbox `name` to do something (applied on its next loop)."""
    d = delivery_dir(Path(state_dir))
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{name}.requests.jsonl", "ab") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            fh.write(orjson.dumps(req) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def owner_running(state_dir: Path | str, name: str) -> bool:
    p = delivery_dir(Path(state_dir)) / f"{name}.lock"
    if not p.exists():
        return False
    fd = os.open(p, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we may have taken
    return False


def outbox_names(state_dir: Path | str) -> list[str]:
    d = delivery_dir(Path(state_dir))
    return sorted(p.stem for p in d.glob("*.db")) if d.is_dir() else []


# -- read side (any process, read-only) ------------------------------------------------------------
def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def read_messages(state_dir: Path | str, *, alert_id: str | None = None, state: str | None = None,
                  destination: str | None = None, msg_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    where, params = [], []
    for col, val in (("alert_id", alert_id), ("state", state), ("destination", destination), ("msg_id", msg_id)):
        if val is not None:
            where.append(f"{col} = ?")
            params.append(val)
    sql = (f"SELECT {', '.join(MESSAGE_COLUMNS)} FROM messages" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY created_at DESC, seq DESC LIMIT ?")
    for name in outbox_names(state_dir):
        con = _ro(delivery_dir(Path(state_dir)) / f"{name}.db")
        try:
            for r in con.execute(sql, (*params, limit)).fetchall():
                d = dict(zip(MESSAGE_COLUMNS, r, strict=True))
                d["outbox"] = name
                out.append(d)
        except sqlite3.OperationalError:
            continue
        finally:
            con.close()
    out.sort(key=lambda d: (d["created_at"], d["seq"]), reverse=True)
    return out[:limit]


def read_attempts(state_dir: Path | str, msg_ids: list[str]) -> list[dict[str, Any]]:
    cols = ("msg_id", "n", "started_at", "latency_ms", "status", "error", "retry_after", "outcome", "next_at")
    out: list[dict[str, Any]] = []
    if not msg_ids:
        return out
    qs = ",".join("?" * len(msg_ids))
    for name in outbox_names(state_dir):
        con = _ro(delivery_dir(Path(state_dir)) / f"{name}.db")
        try:
            out.extend(dict(zip(cols, r, strict=True)) for r in con.execute(
                f"SELECT {', '.join(cols)} FROM attempts WHERE msg_id IN ({qs}) ORDER BY id", msg_ids).fetchall())
        except sqlite3.OperationalError:
            continue
        finally:
            con.close()
    return out


def read_destinations(state_dir: Path | str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in outbox_names(state_dir):
        con = _ro(delivery_dir(Path(state_dir)) / f"{name}.db")
        try:
            rows = con.execute(
                "SELECT d.name, d.disabled_at, d.disabled_reason, "
                "(SELECT count(*) FROM messages m WHERE m.destination=d.name AND m.state='pending'), "
                "(SELECT count(*) FROM messages m WHERE m.destination=d.name AND m.state='delivered'), "
                "(SELECT count(*) FROM messages m WHERE m.destination=d.name AND m.state='dead') "
                "FROM destinations d ORDER BY d.name").fetchall()
        except sqlite3.OperationalError:
            rows = []
        finally:
            con.close()
        for n, dis_at, reason, p, dl, dd in rows:
            out.append({"outbox": name, "destination": n, "enabled": dis_at is None, "disabled_reason": reason,
                        "pending": p, "delivered": dl, "dead": dd})
    return out
