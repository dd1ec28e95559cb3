"""Store commands: import, verify, prove, verify-proof, query, flush, compact."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import IO, Any

import orjson

from tooltrail.commands.common import config_from_args

EXIT_QUARANTINED = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import JSONL/NDJSON tool-call events (exit 3 when some were quarantined)")
    p.add_argument("files", nargs="+", help="files to import; '-' reads standard input")
    p.add_argument("--source", default="file-import", help="source name recorded on every event (default file-import)")
    p.add_argument("--format", default="v1", help="input format: v1 (default) or a gateway audit format "
                   "(see `tooltrail import --list-formats`)")
    p.add_argument("--chain", default="import", help="hash chain to append to (default import)")
    p.add_argument("--workers", type=int, default=1,
                   help="parallel writer processes, each with its own chain <chain>-N (default 1)")
    p.add_argument("--no-compact", action="store_true",
                   help="leave the new segments as written (default: merge them into large ones at the end, "
                        "as the collectors do while they run; session lookups read far fewer files)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("verify", help="verify every chain: hashes, links, columns, Merkle roots, signatures")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--trusted-key", help="public key (base64 or file) to trust instead of <data>/keys/signing.pub")
    p.add_argument("--checkpoints-from", help="directory of exported checkpoints to check against (rollback detection)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("prove", help="print an inclusion-proof bundle for one event")
    p.add_argument("event_id")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_prove)

    p = sub.add_parser("verify-proof", help="check a proof or evidence bundle offline")
    p.add_argument("file", help="bundle file ('-' for standard input)")
    p.add_argument("--trusted-key", help="public key (base64) to trust instead of the one inside the bundle")
    p.set_defaults(func=cmd_verify_proof)

    p = sub.add_parser("query", help="run a read-only SQL query over events, quarantine, checkpoints, alerts")
    p.add_argument("sql", nargs="?", help="one SELECT statement")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--limit", type=int, default=1000, help="row limit (default 1000)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before the query is interrupted")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="named parameter ($k in SQL)")
    p.add_argument("--saved", metavar="NAME", help="run a saved query (tooltrail/saved_queries, <data>/queries)")
    p.add_argument("--list-saved", action="store_true", help="list saved queries with their parameters")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("compact", help="merge small segments of each chain into larger ones")
    p.set_defaults(func=cmd_compact)


# ----------------------------------------------------------------------------- import
def cmd_import(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from ingest.file_import import import_files, open_sources
    from ingest.pipeline import ChainBusyError
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    if args.format != "v1":
        try:
            from ingest.adapters import get_adapter

            get_adapter(args.format)
        except (ImportError, KeyError, ValueError) as exc:
            raise UserError(f"unknown format {args.format!r}: {exc}") from exc
    for f in args.files:
        if f != "-" and not Path(f).is_file():
            raise UserError(f"no such file: {f}")
    total = sum(Path(f).stat().st_size for f in args.files if f != "-") or None
    show = not args.no_progress and sys.stderr.isatty()
    with Progress(TextColumn("import"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[stats]}"), disable=not show, transient=True) as progress:
        task = progress.add_task("import", total=total, stats="")
        try:
            totals = import_files(
                cfg, open_sources(args.files, sys.stdin.buffer), source=args.source, chain=args.chain,
                fmt=args.format, workers=args.workers, compact=not args.no_compact,
                on_progress=lambda n, t: progress.update(task, advance=n, stats=_import_status(t)))
        except ChainBusyError as exc:
            raise UserError(str(exc)) from exc
    print(json.dumps(totals.as_dict()))
    return EXIT_QUARANTINED if totals.quarantined else 0


def _import_status(t: Any) -> str:
    return f"stored {t.stored:,}" + (", compacting segments ..." if t.phase == "compact" else "")


# ----------------------------------------------------------------------------- verify / proofs
def cmd_verify(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ingest.verify import verify
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    if not (cfg.layout.keys / "signing.pub").exists() and not args.trusted_key:
        raise UserError(f"no public key at {cfg.layout.keys / 'signing.pub'}: is {cfg.data_dir} a ToolTrail data dir?")
    show = sys.stderr.isatty() and not args.json
    with Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn(), disable=not show, transient=True) as prog:
        task = prog.add_task("verify", total=None)
        report = verify(cfg.layout, trusted_key=args.trusted_key, checkpoints_from=args.checkpoints_from,
                        progress=lambda n: prog.update(task, advance=n))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{'OK' if report.ok else 'FAILED'}: {report.events:,} events in {len(report.chains)} chain(s), "
              f"{report.seconds:.2f}s")
        for c in report.chains:
            status = "ok" if c.ok else "TAMPERED"
            print(f"  {c.chain_id}: {status}, {c.events:,} events, {c.segments} segments, {c.checkpoints} checkpoints, "
                  f"signed through {c.signed_size:,}, unsigned tail {c.unsigned_tail:,}")
            fb = c.first_bad
            if fb:
                print(f"    first bad: seq {fb.seq} in {fb.file or '-'}: {fb.kind}: {fb.detail}")
            for p in c.problems[1:]:
                print(f"    also: {p.kind} seq {p.seq} {p.file or ''}: {p.detail}")
        for w in report.warnings:
            print(f"  warning: {w}")
    return 0 if report.ok else 1


def cmd_prove(args: argparse.Namespace) -> int:
    from ingest.proofs import ProofError, prove
    from tooltrail.cli import UserError

    cfg = config_from_args(args)
    try:
        bundle = prove(cfg.layout, args.event_id)
    except ProofError as exc:
        raise UserError(str(exc)) from exc
    data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2)
    if args.output:
        Path(args.output).write_bytes(data)
    else:
        sys.stdout.write(data.decode() + "\n")
    return 0


def cmd_verify_proof(args: argparse.Namespace) -> int:
    from ingest.proofs import verify_bundle
    from tooltrail.cli import UserError

    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
    try:
        bundle = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UserError(f"not a JSON bundle: {exc}") from exc
    check = verify_bundle(bundle, trusted_key=args.trusted_key)
    if check.ok:
        print(f"OK: {check.events} event(s) proven included under signed checkpoints")
        return 0
    print("FAILED:")
    for p in check.problems:
        print(f"  {p}")
    return 1


# ----------------------------------------------------------------------------- query
def _parse_params(items: list[str]) -> dict[str, Any] | None:
    from tooltrail.cli import UserError

    out: dict[str, Any] = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise UserError(f"--param takes K=V, got {it!r}")
        out[k] = v
    return out or None


def format_table(rows: list[dict[str, Any]], columns: list[str], fmt: str, out: IO[str]) -> None:
    """Print rows as an aligned table, JSON lines array, or CSV (shared by query/investigate)."""
    if fmt == "json":
        out.write(orjson.dumps(rows, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(["" if r[c] is None else r[c] for c in columns])
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*["" if r[c] is None else str(r[c]) for c in columns])
    Console(file=out, width=200 if not out.isatty() else None).print(t)


def cmd_query(args: argparse.Namespace) -> int:
    from tooltrail.cli import UserError
    from tooltrail.query import QueryError, ReadOnlyQuery

    cfg = config_from_args(args)
    sql, params = args.sql, _parse_params(args.param)
    if args.list_saved or args.saved:
        from tooltrail.saved import SavedQueryError, list_saved, load_saved, prepare

        if args.list_saved:
            rows = [{"name": q.name, "title": q.title, "params": " ".join(
                f"{p.name}:{p.type}" + ("" if p.required else f"={p.default}") for p in q.params), "origin": q.origin}
                for q in list_saved(cfg.layout.root)]
            format_table(rows, ["name", "title", "params", "origin"], args.format, sys.stdout)
            return 0
        if sql is not None:
            raise UserError("give either a SELECT statement or --saved NAME, not both")
        try:
            sql, params = prepare(load_saved(args.saved, cfg.layout.root), params or {})
        except SavedQueryError as exc:
            raise UserError(str(exc)) from exc
    if sql is None:
        raise UserError("give a SELECT statement")
    try:
        table = ReadOnlyQuery(cfg).sql(sql, params, limit=args.limit, timeout_s=args.timeout)
    except QueryError as exc:
        raise UserError(str(exc)) from exc
    buf = io.StringIO() if args.format == "table" else sys.stdout
    format_table(table.to_pylist(), table.column_names, args.format, buf)
    if buf is not sys.stdout:
        sys.stdout.write(buf.getvalue())
    if table.num_rows >= args.limit:
        print(f"(stopped at the row limit of {args.limit})", file=sys.stderr)
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from ingest.compaction import compact_all

    cfg = config_from_args(args)
    results = compact_all(cfg)
    for chain_id, merged in results.items():
        print(f"{chain_id}: merged {merged} segment(s)")
    return 0
