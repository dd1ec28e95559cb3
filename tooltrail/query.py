"""The read-only query layer: DuckDB views over the lake, shared by the CLI, the read API,
the dashboard and investigations. It lives in `tooltrail/` because every package reads
through it and none owns it.

Guarantees:
- only a single SELECT (or WITH ... SELECT) statement runs; anything else is refused;
- SQL can open files only inside <data>/lake (DuckDB `allowed_directories` with external
  access disabled and the configuration locked): no keys, no network, no extensions;
- every query has a row limit and a timeout (interrupted), and a memory limit.
Views: events, quarantine, checkpoints, alerts. `events` lists the live segments from the
manifests, so a segment being compacted is never counted twice.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ingest.layout import Layout
from ingest.segments import live_segments
from schemas.stored import ARROW_SCHEMA
from tooltrail.logs import get_logger

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 1_000_000
DEFAULT_TIMEOUT_S = 30.0

# Columns the `events` view derives from the hashed record.
_DERIVED = {
    "args": "json_extract(record, '$.args')",
    "labels": "json_extract(record, '$.labels')",
    "redactions": "json_extract(record, '$.redactions')",
    "redaction_count": "coalesce(list_sum(list_transform(json_keys(json_extract(record, '$.redactions')), "
                       "lambda k: (json_extract(record, '$.redactions') ->> k)::INTEGER)), 0)",
    "reason": "record ->> '$.reason'",
    "error": "record ->> '$.error'",
    "token_id": "record ->> '$.token_id'",
    "correlation_id": "record ->> '$.correlation_id'",
    "server_version": "record ->> '$.server_version'",
    "tool_description_hash": "record ->> '$.tool_description_hash'",
    "scopes_granted": "CAST(json_extract(record, '$.scopes_granted') AS VARCHAR[])",
    "origin": "record ->> '$.origin'",
}


_EMPTY_ALERTS = ("SELECT NULL::VARCHAR AS alert_id, NULL::VARCHAR AS rule_id, NULL::VARCHAR AS title, "
                 "NULL::VARCHAR AS severity, NULL::VARCHAR AS status, NULL::VARCHAR AS principal, "
                 "NULL::VARCHAR AS session, NULL::TIMESTAMPTZ AS first_seen, NULL::TIMESTAMPTZ AS last_seen, "
                 "NULL::BIGINT AS match_count WHERE false")
log = get_logger("tooltrail.query")


class QueryError(ValueError):
    """The query was refused or failed; the message is safe to show to the user."""


def check_read_only(sql: str) -> str:
    try:
        stmts = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"SQL syntax error: {str(exc).splitlines()[0]}") from exc
    if len(stmts) != 1:
        raise QueryError("exactly one statement is allowed")
    if stmts[0].type != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed (got {stmts[0].type.name})")
    return sql


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


class ReadOnlyQuery:
    def __init__(self, config: Any = None, *, layout: Layout | None = None, memory_limit: str = "2GB",
                 threads: int = 2) -> None:
        self.layout = layout or config.layout
        self.memory_limit = memory_limit
        self.threads = threads
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._signature: tuple = ()

    @classmethod
    def at(cls, data_dir: str | Path) -> ReadOnlyQuery:
        return cls(layout=Layout.at(data_dir))

    # -------------------------------------------------------------- views
    def segment_files(self) -> list[str]:
        lay = self.layout
        return [str(lay.lake / s.path) for c in lay.chain_ids() for s in live_segments(lay, c)]

    def _manifest_signature(self) -> tuple:
        lay = self.layout
        sig = []
        for d in (lay.manifests_dir, lay.checkpoints_dir, lay.alerts_dir):
            if d.exists():
                for p in sorted(d.iterdir()):
                    st = p.stat()
                    sig.append((p.name, st.st_size, st.st_mtime_ns))
        return tuple(sig)

    def _build(self) -> duckdb.DuckDBPyConnection:
        lay = self.layout
        lay.lake.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(":memory:")
        con.execute(f"SET memory_limit={_sql_str(self.memory_limit)}")
        con.execute(f"SET threads={int(self.threads)}")
        con.execute("SET parquet_metadata_cache=true")  # segments are immutable: footers can be cached
        con.execute("SET autoinstall_known_extensions=false")
        con.execute("SET autoload_known_extensions=false")
        con.execute(f"SET allowed_directories=[{_sql_str(str(lay.lake) + '/')}]")
        con.execute("SET enable_external_access=false")
        files = self.segment_files()
        if files:
            src = "read_parquet([" + ", ".join(_sql_str(f) for f in files) + "])"
        else:
            con.register("_empty", pa.Table.from_batches([], ARROW_SCHEMA))
            con.execute("CREATE TABLE _no_events AS SELECT * FROM _empty")  # tables are visible to cursors
            con.unregister("_empty")
            src = "_no_events"
        derived = ", ".join(f"{expr} AS {name}" for name, expr in _DERIVED.items())
        con.execute(f"CREATE VIEW events AS SELECT *, {derived} FROM {src}")
        q_glob = str(lay.quarantine_dir) + "/*/*.jsonl"
        if list(lay.quarantine_dir.glob("*/*.jsonl")):
            con.execute(
                "CREATE VIEW quarantine AS SELECT * FROM read_json(" + _sql_str(q_glob) + ", format='newline_delimited', "
                "ignore_errors=true, hive_partitioning=true, columns={received_at: 'TIMESTAMPTZ', source: 'VARCHAR', "
                "origin: 'VARCHAR', reasons: 'JSON', raw: 'VARCHAR', raw_truncated: 'BOOLEAN', redactions: 'JSON'})")
        else:
            con.execute("CREATE VIEW quarantine AS SELECT NULL::TIMESTAMPTZ AS received_at, NULL::VARCHAR AS source, "
                        "NULL::VARCHAR AS origin, NULL::JSON AS reasons, NULL::VARCHAR AS raw, "
                        "NULL::BOOLEAN AS raw_truncated, NULL::JSON AS redactions, NULL::DATE AS date WHERE false")
        if list(lay.checkpoints_dir.glob("*.jsonl")):
            con.execute(
                "CREATE VIEW checkpoints AS SELECT * FROM read_json(" + _sql_str(str(lay.checkpoints_dir) + "/*.jsonl")
                + ", format='newline_delimited', ignore_errors=true, columns={chain_id: 'VARCHAR', size: 'BIGINT', "
                "root: 'VARCHAR', head: 'VARCHAR', time: 'TIMESTAMPTZ', key_id: 'VARCHAR', signature: 'VARCHAR'})")
        else:
            con.execute("CREATE VIEW checkpoints AS SELECT NULL::VARCHAR AS chain_id, NULL::BIGINT AS size, "
                        "NULL::VARCHAR AS root, NULL::VARCHAR AS head, NULL::TIMESTAMPTZ AS time, "
                        "NULL::VARCHAR AS key_id, NULL::VARCHAR AS signature WHERE false")
        try:
            con.execute(f"CREATE VIEW alerts AS {self._alerts_sql()}")
        except duckdb.Error as exc:  # an unreadable alert store must not take the event views down
            log.warning("alerts_view_unavailable", error=str(exc).splitlines()[0][:200])
            con.execute(f"CREATE VIEW alerts AS {_EMPTY_ALERTS}")
        con.execute("SET lock_configuration=true")
        return con

    def _alerts_sql(self) -> str:
        try:
            from detect.alerts import alerts_view_sql
        except ImportError:
            alerts_view_sql = None
        if alerts_view_sql is not None:
            try:
                return alerts_view_sql(self.layout.alerts_dir)
            except Exception as exc:  # an empty or half-written store must not break every other view
                log.warning("alerts_view_unavailable", error=str(exc)[:200])
        return _EMPTY_ALERTS

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor on a database whose views reflect the current manifests."""
        sig = self._manifest_signature()
        with self._lock:
            if self._con is None or sig != self._signature:
                self._con = self._build()
                self._signature = sig
            return self._con.cursor()

    # -------------------------------------------------------------- queries
    def sql(self, sql: str, params: list | dict | None = None, *, limit: int = DEFAULT_LIMIT,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> pa.Table:
        """Run one read-only SELECT; at most `limit` rows; interrupted after `timeout_s`."""
        check_read_only(sql)
        limit = max(1, min(int(limit), MAX_LIMIT))
        for attempt in (1, 2):
            cur = self.connection()
            timer = threading.Timer(timeout_s, cur.interrupt)
            timer.start()
            try:
                reader = cur.sql(sql, params=params or None).to_arrow_reader(min(limit, 100_000))
                batches, n = [], 0
                for batch in reader:
                    batches.append(batch)
                    n += batch.num_rows
                    if n >= limit:
                        break
                table = pa.Table.from_batches(batches, reader.schema) if batches else reader.schema.empty_table()
                return table.slice(0, limit)
            except duckdb.InterruptException as exc:
                raise QueryError(f"query interrupted after {timeout_s:g}s timeout") from exc
            except duckdb.IOException as exc:
                # A segment was compacted away between planning and reading: retry once.
                if attempt == 2:
                    raise QueryError(f"query failed: {str(exc).splitlines()[0]}") from exc
                with self._lock:
                    self._con = None
            except duckdb.Error as exc:
                raise QueryError(f"query failed: {str(exc).splitlines()[0]}") from exc
            finally:
                timer.cancel()
                cur.close()
        raise QueryError("query failed")

    def rows(self, sql: str, params: list | dict | None = None, **kw: Any) -> list[dict[str, Any]]:
        return self.sql(sql, params, **kw).to_pylist()

    def scalar(self, sql: str, params: list | dict | None = None, **kw: Any) -> Any:
        t = self.sql(sql, params, limit=1, **kw)
        return t.column(0)[0].as_py() if t.num_rows else None
