"""Incident commands: investigate, export, verify-bundle, alerts (list / resend / deliveries /
destinations / enable / secret).

    tooltrail investigate alert al_1a2b              # the alert, its evidence and the session around it
    tooltrail investigate session s-31a --format json
    tooltrail investigate principal user_8842 --since 24h --summary
    tooltrail investigate tool send_email --since 7d --summary
    tooltrail export --alert al_1a2b -o incident.json && tooltrail verify-bundle incident.json
    tooltrail alerts list --status open
    tooltrail alerts deliveries --alert al_1a2b --attempts
    tooltrail alerts resend al_1a2b
"""

from __future__ import annotations

import argparse
import io
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson

from tooltrail.commands.common import config_from_args
from tooltrail.commands.store import format_table

FORMATS = ["table", "json", "csv"]


def _fmt(p: argparse.ArgumentParser, limit: bool = True) -> None:
    p.add_argument("--format", choices=FORMATS, default="table")
    if limit:
        p.add_argument("--limit", type=int, default=1000, help="row limit (default 1000)")


def _range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", help="from this time (RFC 3339, a date, or relative: 24h, now-7d)")
    p.add_argument("--until", help="before this time (same forms)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("investigate", help="investigation queries: session, principal, tool, alert")
    isub = p.add_subparsers(dest="investigate_command", metavar="WHAT")
    isub.required = True

    s = isub.add_parser("session", help="a session's ordered timeline: decisions, redaction markers, alerts, chain status")
    s.add_argument("session")
    _range(s)
    s.add_argument("--verify", action="store_true", help="check each event's inclusion proof under a signed checkpoint")
    s.add_argument("--all-columns", action="store_true", help="table output: every column (incl. args)")
    _fmt(s)
    s.set_defaults(func=cmd_session)

    s = isub.add_parser("principal", help="what a principal did (events, or --summary per session)")
    s.add_argument("principal")
    _range(s)
    s.add_argument("--summary", action="store_true", help="one row per session")
    s.add_argument("--all-columns", action="store_true")
    _fmt(s)
    s.set_defaults(func=cmd_principal)

    s = isub.add_parser("tool", help="who called a tool, when, with what outcome (or --summary per principal)")
    s.add_argument("tool")
    s.add_argument("--server", help="only this MCP server")
    _range(s)
    s.add_argument("--summary", action="store_true", help="one row per calling principal")
    s.add_argument("--all-columns", action="store_true")
    _fmt(s)
    s.set_defaults(func=cmd_tool)

    s = isub.add_parser("alert", help="an alert with its evidence events and the surrounding session context")
    s.add_argument("alert_id", help="alert id (a unique prefix is enough)")
    s.add_argument("--context", default="30m", help="session context around the matches (default 30m; 0 = none)")
    s.add_argument("--evidence-only", action="store_true", help="only the evidence events")
    s.add_argument("--verify", action="store_true", help="check each event's inclusion proof")
    s.add_argument("--all-columns", action="store_true")
    _fmt(s)
    s.set_defaults(func=cmd_alert)

    p = sub.add_parser("export", help="write an evidence bundle (events + inclusion proofs + signed checkpoints + key)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--session", help="every event of this session")
    g.add_argument("--alert", dest="alert_id", help="an alert's evidence and session context")
    _range(p)
    p.add_argument("--principal", help="time range: only this principal")
    p.add_argument("--tool", help="time range: only this tool")
    p.add_argument("--context", default="30m", help="--alert: session context (default 30m)")
    p.add_argument("--evidence-only", action="store_true", help="--alert: only the evidence events")
    p.add_argument("--by", dest="exported_by", help="who exports (default user@host)")
    p.add_argument("--max-events", type=int, default=50_000)
    p.add_argument("--allow-partial", action="store_true", help="export even if some events are not signed yet")
    p.add_argument("-o", "--output", required=True, help="bundle file to write ('-' = standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify-bundle", help="check an evidence (or proof) bundle offline - same checks as verify-proof")
    p.add_argument("file", help="bundle file ('-' for standard input)")
    p.add_argument("--trusted-key", help="public key (base64 or file) to trust instead of the one inside the bundle")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_verify_bundle)

    p = sub.add_parser("alerts", help="alerts and their webhook delivery: list, deliveries, resend, destinations")
    asub = p.add_subparsers(dest="alerts_command", metavar="ACTION")
    asub.required = True
    s = asub.add_parser("list", help="alerts, most recent first, with their delivery state")
    s.add_argument("--status", choices=["open", "acknowledged", "resolved"])
    s.add_argument("--min-severity", choices=["low", "medium", "high", "critical"])
    s.add_argument("--rule", help="rule id or glob (TT-EXFIL-*)")
    s.add_argument("--principal")
    s.add_argument("--session")
    _range(s)
    _fmt(s)
    s.set_defaults(func=cmd_alerts_list)

    s = asub.add_parser("deliveries", help="the delivery log: messages (or --attempts) with states and status codes")
    s.add_argument("--alert", dest="alert_id")
    s.add_argument("--state", choices=["pending", "delivered", "dead"])
    s.add_argument("--destination")
    s.add_argument("--attempts", action="store_true", help="one row per attempt (status code, latency, error)")
    _fmt(s)
    s.set_defaults(func=cmd_deliveries)

    s = asub.add_parser("resend", help="send an alert (alert id) or one message (msg_ id) again")
    s.add_argument("id", help="alert id or message id (webhook-id)")
    s.add_argument("--destination", help="only this destination (and send even if its routing would not)")
    s.add_argument("--outbox", help="outbox name (default: the one holding the id, else 'outbox')")
    s.add_argument("--wait", type=float, default=30.0,
                   help="when no delivery process runs: deliver here for at most this many seconds (default 30)")
    s.set_defaults(func=cmd_resend)

    s = asub.add_parser("destinations", help="configured destinations and their state (never URLs or secrets)")
    _fmt(s, limit=False)
    s.set_defaults(func=cmd_destinations)

    s = asub.add_parser("enable", help="re-enable a destination disabled by a 410 Gone")
    s.add_argument("destination")
    s.set_defaults(func=cmd_enable)

    s = asub.add_parser("secret", help="print a new Standard Webhooks signing secret (whsec_...)")
    s.set_defaults(func=cmd_secret)


# ----------------------------------------------------------------------------- helpers
def _rq(args: argparse.Namespace) -> Any:
    from tooltrail.query import ReadOnlyQuery

    return ReadOnlyQuery(config_from_args(args))


def _cell(v: Any) -> Any:
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    if isinstance(v, dict):
        return orjson.dumps(v).decode()
    if isinstance(v, bool):
        return "*" if v else ""
    return v


def _print(rows: list[dict[str, Any]], columns: list[str], fmt: str, limit: int | None = None) -> None:
    from tooltrail.investigate import plain_rows

    rows = plain_rows(rows)
    cols = [c for c in columns if not rows or c in rows[0]]
    if fmt == "table" and rows:  # a terminal is narrow: leave out columns empty in every row
        cols = [c for c in cols if any(r.get(c) not in (None, "", [], {}, False) for r in rows)]
    if fmt == "json":
        format_table(rows, cols, fmt, sys.stdout)
    else:
        flat = [{c: _cell(r.get(c)) for c in cols} for r in rows]
        buf = io.StringIO() if fmt == "table" else sys.stdout
        format_table(flat, cols, fmt, buf)
        if buf is not sys.stdout:
            sys.stdout.write(buf.getvalue())
    if limit is not None and len(rows) >= limit:
        print(f"(stopped at the row limit of {limit})", file=sys.stderr)


def _user_error(exc: Exception) -> Exception:
    from tooltrail.cli import UserError

    return UserError(str(exc))


def _run(fn: Any, *a: Any, **kw: Any) -> Any:
    from tooltrail.investigate import NotFound
    from tooltrail.query import QueryError

    try:
        return fn(*a, **kw)
    except (NotFound, QueryError, ValueError) as exc:
        raise _user_error(exc) from exc


def _seconds(text: str) -> float:
    from detect.timeutil import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise _user_error(exc) from exc


# ----------------------------------------------------------------------------- investigate
def cmd_session(args: argparse.Namespace) -> int:
    from tooltrail import investigate as inv

    rows = _run(inv.session_timeline, _rq(args), args.session, since=args.since, until=args.until, limit=args.limit,
                verify=args.verify)
    if not rows:
        raise _user_error(ValueError(f"no stored events in session {args.session!r}"))
    cols = inv.EVENT_COLUMNS if args.all_columns or args.format != "table" else inv.TIMELINE_COLUMNS
    _print(rows, cols, args.format, args.limit)
    return 0


def cmd_principal(args: argparse.Namespace) -> int:
    from tooltrail import investigate as inv

    if args.summary:
        rows = _run(inv.principal_sessions, _rq(args), args.principal, since=args.since, until=args.until, limit=args.limit)
        cols = ["session", "first_ts", "last_ts", "events", "agents", "tools", "denied", "errors", "redactions", "alerts"]
    else:
        rows = _run(inv.principal_activity, _rq(args), args.principal, since=args.since, until=args.until, limit=args.limit)
        cols = inv.EVENT_COLUMNS if args.all_columns or args.format != "table" else [
            "ts", "session", "agent", "server", "tool", "decision", "result", "reason", "redaction_markers", "alerts",
            "event_id"]
    _print(rows, cols, args.format, args.limit)
    return 0


def cmd_tool(args: argparse.Namespace) -> int:
    from tooltrail import investigate as inv

    if args.summary:
        rows = _run(inv.tool_callers, _rq(args), args.tool, server=args.server, since=args.since, until=args.until,
                    limit=args.limit)
        cols = ["principal", "servers", "calls", "allowed", "denied", "ok", "errors", "sessions", "first_ts", "last_ts"]
    else:
        rows = _run(inv.tool_usage, _rq(args), args.tool, server=args.server, since=args.since, until=args.until,
                    limit=args.limit)
        cols = inv.EVENT_COLUMNS if args.all_columns or args.format != "table" else [
            "ts", "principal", "agent", "session", "server", "decision", "result", "reason", "latency_ms", "alerts",
            "event_id"]
    _print(rows, cols, args.format, args.limit)
    return 0


def cmd_alert(args: argparse.Namespace) -> int:
    from tooltrail import investigate as inv

    got = _run(inv.alert_investigation, _rq(args), args.alert_id, context_s=_seconds(args.context), limit=args.limit,
               evidence_only=args.evidence_only, verify=args.verify)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(inv.plain(got.as_dict()), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    cols = ["evidence", *(inv.EVENT_COLUMNS if args.all_columns or args.format == "csv" else inv.TIMELINE_COLUMNS)]
    if args.format == "csv":
        _print(got.events, cols, "csv")
        return 0
    a = inv.plain(got.alert)
    print(f"{a['alert_id']}  [{str(a.get('severity', '')).upper()}] {a.get('title')}  ({a.get('rule_id')})")
    print(f"  status {a.get('status')}, {a.get('match_count')} match(es), first {a.get('first_seen')}, "
          f"last {a.get('last_seen')}")
    ents = {k: a.get(k) for k in ("principal", "agent", "session", "server") if a.get(k)}
    print("  " + ", ".join(f"{k} {v}" for k, v in ents.items()))
    if a.get("context"):
        print(f"  context {orjson.dumps(a['context']).decode()[:400]}")
    ev_total = a.get("evidence_total") or len(got.evidence_ids)
    print(f"  evidence: {len(got.evidence_ids)} of {ev_total} event(s) cited; timeline: {got.scope} "
          "(* = evidence)")
    if got.missing_evidence:
        print(f"  not yet in the lake: {', '.join(got.missing_evidence)}")
    if a.get("runbook"):
        print("  runbook: " + str(a["runbook"]).strip().replace("\n", "\n           "))
    _print(got.events, cols, "table", args.limit)
    return 0


# ----------------------------------------------------------------------------- export / verify
def cmd_export(args: argparse.Namespace) -> int:
    from tooltrail.evidence import ExportError, export_evidence, write_bundle

    cfg = config_from_args(args)
    if not (args.session or args.alert_id or args.since or args.until):
        raise _user_error(ValueError("say what to export: --session ID, --alert ID, or --since/--until"))
    try:
        bundle = export_evidence(cfg, session=args.session, alert_id=args.alert_id, since=args.since, until=args.until,
                                 principal=args.principal, tool=args.tool, context_s=_seconds(args.context),
                                 evidence_only=args.evidence_only, exported_by=args.exported_by,
                                 max_events=args.max_events, allow_partial=args.allow_partial)
    except ExportError as exc:
        raise _user_error(exc) from exc
    except Exception as exc:
        from tooltrail.investigate import NotFound
        from tooltrail.query import QueryError

        if isinstance(exc, NotFound | QueryError | ValueError):
            raise _user_error(exc) from exc
        raise
    if args.output == "-":
        sys.stdout.write(orjson.dumps(bundle, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        write_bundle(bundle, args.output)
    m = bundle["meta"]
    print(f"exported {m['proven_events']} event(s) from {len(bundle['checkpoints'])} chain(s)"
          + (f", {len(m['unproven_event_ids'])} not yet provable" if m["unproven_event_ids"] else "")
          + ("" if args.output == "-" else f" to {args.output}"), file=sys.stderr)
    return 0


def cmd_verify_bundle(args: argparse.Namespace) -> int:
    """Alias of verify-proof (ingest.proofs.verify_bundle) that also says what the export holds."""
    from ingest.proofs import verify_bundle
    from tooltrail.evidence import describe

    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise _user_error(ValueError(f"cannot read {args.file}: {exc.strerror or exc}")) from exc
    try:
        bundle = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if args.json:
            print(orjson.dumps({"ok": False, "events": 0, "problems": [f"not a JSON bundle: {exc}"]}).decode())
        else:
            print(f"FAILED:\n  not a JSON bundle: {exc}")
        return 1
    trusted = args.trusted_key
    if trusted and Path(trusted).is_file():
        trusted = Path(trusted).read_text().strip()
    check = verify_bundle(bundle, trusted_key=trusted) if isinstance(bundle, dict) else None
    ok = bool(check and check.ok)
    problems = check.problems if check else ["not a bundle object"]
    desc = describe(bundle) if isinstance(bundle, dict) else ""
    if args.json:
        print(orjson.dumps({"ok": ok, "events": check.events if check else 0, "problems": problems,
                            "description": desc}).decode())
    elif ok:
        print(f"OK: {check.events} event(s) proven included under signed checkpoints")
        print(f"  {desc}")
        if not trusted:
            print("  key: the bundle's own public key - compare it with the operator's published key (--trusted-key)")
    else:
        print("FAILED:")
        for p in problems:
            print(f"  {p}")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- alerts
def _delivery_summary(state_dir: Path, alert_ids: list[str]) -> dict[str, str]:
    from detect.delivery.outbox import read_messages

    out: dict[str, dict[str, str]] = {}
    want = set(alert_ids)
    for m in reversed(read_messages(state_dir, limit=100_000)):  # oldest first: later states win
        if m["alert_id"] in want:
            out.setdefault(m["alert_id"], {})[m["destination"]] = m["state"]
    return {a: ", ".join(f"{d}:{s}" for d, s in sorted(v.items())) for a, v in out.items()}


def cmd_alerts_list(args: argparse.Namespace) -> int:
    from schemas.alert import SEVERITIES
    from tooltrail import investigate as inv

    cfg = config_from_args(args)
    rq = _rq(args)
    where, params = ["true"], []
    if args.status:
        where.append("status = ?")
        params.append(args.status)
    if args.min_severity:
        where.append("severity IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(SEVERITIES[SEVERITIES.index(args.min_severity):]))
    if args.rule:
        where.append("rule_id GLOB ?")
        params.append(args.rule)
    for k in ("principal", "session"):
        if getattr(args, k):
            where.append(f"{k} = ?")
            params.append(getattr(args, k))
    try:
        if args.since:
            where.append("last_seen >= ?")
            params.append(inv._time(args.since))
        if args.until:
            where.append("first_seen < ?")
            params.append(inv._time(args.until))
    except ValueError as exc:
        raise _user_error(exc) from exc
    sql = ("SELECT alert_id, severity, status, rule_id, title, principal, session, match_count, first_seen, last_seen "
           f"FROM alerts WHERE {' AND '.join(where)} ORDER BY last_seen DESC, alert_id")
    rows = _run(rq.rows, sql, params, limit=args.limit)
    deliveries = _delivery_summary(cfg.layout.state_dir, [r["alert_id"] for r in rows])
    for r in rows:
        r["delivery"] = deliveries.get(r["alert_id"], "")
    cols = ["alert_id", "severity", "status", "rule_id", "title", "principal", "session", "match_count", "first_seen",
            "last_seen", "delivery"]
    _print(rows, cols, args.format, args.limit)
    return 0


def _ts(v: float | None) -> str | None:
    if v is None:
        return None
    from detect.timeutil import epoch_ts

    return epoch_ts(v)


def cmd_deliveries(args: argparse.Namespace) -> int:
    from detect.delivery.outbox import read_attempts, read_messages

    cfg = config_from_args(args)
    sd = cfg.layout.state_dir
    msgs = read_messages(sd, alert_id=args.alert_id, state=args.state, destination=args.destination, limit=args.limit)
    if args.attempts:
        rows = read_attempts(sd, [m["msg_id"] for m in msgs])
        meta = {m["msg_id"]: m for m in msgs}
        for r in rows:
            m = meta[r["msg_id"]]
            r.update(destination=m["destination"], alert_id=m["alert_id"], event=m["event"],
                     started_at=_ts(r["started_at"]), next_at=_ts(r["next_at"]))
        cols = ["msg_id", "destination", "alert_id", "event", "n", "started_at", "status", "latency_ms", "outcome",
                "retry_after", "next_at", "error"]
    else:
        rows = msgs
        for r in rows:
            r.update(created_at=_ts(r["created_at"]), finished_at=_ts(r["finished_at"]),
                     next_at=_ts(r["next_at"]) if r["state"] == "pending" else None)
        cols = ["msg_id", "outbox", "destination", "alert_id", "event", "state", "attempts", "last_status", "last_error",
                "created_at", "next_at", "finished_at"]
    _print(rows, cols, args.format)
    return 0


def _alert_snapshot(args: argparse.Namespace, alert_id: str) -> dict[str, Any] | None:
    """The alert's latest state as an Alert dict (for a resend of an alert never delivered)."""
    from schemas.alert import Alert
    from tooltrail import investigate as inv

    try:
        a = inv.find_alert(_rq(args), alert_id)
    except inv.NotFound:
        return None
    d = inv.plain(a)
    ent = d.get("entities") or {}
    fields = set(Alert.model_fields)
    snap = {k: v for k, v in d.items() if k in fields and v is not None}
    snap["entities"] = {k: v for k, v in ent.items() if v is not None}
    snap["tags"] = list(d.get("tags") or [])
    snap["history"] = [h for h in (d.get("history") or []) if h.get("who")]
    return Alert.model_validate(snap).model_dump(mode="json")


def cmd_resend(args: argparse.Namespace) -> int:
    from detect.delivery.dispatcher import Dispatcher
    from detect.delivery.outbox import OutboxBusyError, append_request, owner_running, read_messages

    cfg = config_from_args(args)
    sd = cfg.layout.state_dir
    ident = args.id
    found = read_messages(sd, msg_id=ident) if ident.startswith("msg_") else read_messages(sd, alert_id=ident)
    if ident.startswith("msg_") and not found:
        raise _user_error(ValueError(f"no message {ident!r} in any outbox"))
    req: dict[str, Any] = {"op": "resend", "id": ident, "destination": args.destination,
                           "request_id": uuid.uuid4().hex[:12]}
    if args.destination:
        found = [m for m in found if m["destination"] == args.destination]
    if not found:  # never delivered (to this destination): send the alert's current state fresh
        snap = _alert_snapshot(args, ident)
        if snap is None:
            raise _user_error(ValueError(f"no alert {ident!r} (and no delivery of it)"))
        req["id"] = ident = snap["alert_id"]
        req["alert"] = snap
    if args.destination and args.destination not in {d.name for d in cfg.alerting.webhooks}:
        raise _user_error(ValueError(f"no configured destination {args.destination!r}"))
    outbox = args.outbox or (found[0]["outbox"] if found else "outbox")
    append_request(sd, outbox, req)
    if owner_running(sd, outbox):
        print(f"queued: the running delivery process (outbox {outbox!r}) sends {ident} on its next pass; "
              f"see `tooltrail alerts deliveries --alert {found[0]['alert_id'] if found else ident}`")
        return 0
    if not cfg.alerting.webhooks:
        raise _user_error(ValueError("no webhook destinations are configured ([[alerting.webhooks]])"))
    try:
        disp = Dispatcher(cfg, name=outbox)
    except OutboxBusyError:
        print(f"queued for the delivery process of outbox {outbox!r}")
        return 0
    except ValueError as exc:
        raise _user_error(exc) from exc
    try:
        disp.drain(args.wait)
    finally:
        disp.close()
    alert_id = found[0]["alert_id"] if found else ident
    rows = [m for m in read_messages(sd, alert_id=alert_id) if not ident.startswith("msg_") or m["msg_id"] == ident]
    for m in rows[: len({r["destination"] for r in rows})]:
        print(f"{m['msg_id']} -> {m['destination']}: {m['state']} after {m['attempts']} attempt(s)"
              + (f", last status {m['last_status']}" if m["last_status"] else "")
              + (f", {m['last_error']}" if m["last_error"] and m["state"] != "delivered" else ""))
    return 0 if all(m["state"] == "delivered" for m in rows[:1]) else 1


def cmd_destinations(args: argparse.Namespace) -> int:
    from detect.delivery.outbox import read_destinations

    cfg = config_from_args(args)
    state = {d["destination"]: d for d in read_destinations(cfg.layout.state_dir)}
    rows = []
    for d in cfg.alerting.webhooks:
        st = state.get(d.name, {})
        routing = [f"severity>={d.min_severity}"] + ([f"severities={','.join(d.severities)}"] if d.severities else []) + \
            ([f"tags={','.join(d.tags)}"] if d.tags else []) + ([f"rules={','.join(d.rule_ids)}"] if d.rule_ids else []) + \
            ([f"not={','.join(d.exclude_rule_ids)}"] if d.exclude_rule_ids else [])
        enabled = d.enabled and st.get("enabled", True)
        rows.append({"destination": d.name, "kind": d.kind, "enabled": "yes" if enabled else "no",
                     "disabled_reason": st.get("disabled_reason") or ("disabled in config" if not d.enabled else None),
                     "on": ",".join(d.on), "routing": " ".join(routing),
                     "signed": "yes" if (d.secrets or d.secrets_env) else "no",
                     "pending": st.get("pending", 0), "delivered": st.get("delivered", 0), "dead": st.get("dead", 0)})
    cols = ["destination", "kind", "enabled", "disabled_reason", "on", "routing", "signed", "pending", "delivered", "dead"]
    _print(rows, cols, args.format)
    return 0


def cmd_enable(args: argparse.Namespace) -> int:
    from detect.delivery.outbox import Outbox, OutboxBusyError, append_request, outbox_names, owner_running

    cfg = config_from_args(args)
    sd = cfg.layout.state_dir
    names = outbox_names(sd) or ["outbox"]
    for name in names:
        if owner_running(sd, name):
            append_request(sd, name, {"op": "enable", "destination": args.destination})
            print(f"outbox {name!r}: queued for the running delivery process")
            continue
        try:
            ob = Outbox(sd, name)
        except OutboxBusyError:
            append_request(sd, name, {"op": "enable", "destination": args.destination})
            print(f"outbox {name!r}: queued for the running delivery process")
            continue
        try:
            ok = ob.set_enabled(args.destination)
        finally:
            ob.close()
        print(f"outbox {name!r}: {'enabled' if ok else 'was not disabled'}")
    return 0


def cmd_secret(args: argparse.Namespace) -> int:
    from detect.delivery.signing import new_secret

    print(new_secret())
    return 0
