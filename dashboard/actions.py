"""State-changing and compute-heavy actions of the dashboard: alert status changes (through the
detection package's alert store, recording who and when), integrity verification in the
background with progress, inclusion proofs of single events, evidence bundles."""

from __future__ import annotations

import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tooltrail.logs import get_logger

log = get_logger("tooltrail.dashboard.actions")


class ActionError(Exception):
    """An action could not be carried out; the message tells the analyst why."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class VerifyJob:
    running: bool = False
    started: str | None = None
    finished: str | None = None
    by: str | None = None
    done: int = 0
    total: int = 0
    message: str = ""
    ok: bool | None = None
    report: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Actions:
    def __init__(self, config: Any) -> None:
        self.config = config
        self.layout = config.layout
        self._verify_lock = threading.Lock()
        self.verify_job = VerifyJob()
        self._load_last_verify()

    # ------------------------------------------------------------------ alerts
    def set_alert_status(self, alert_id: str, status: str, who: str, note: str) -> None:
        if status not in ("open", "acknowledged", "resolved"):
            raise ActionError(f"unknown status {status!r}")
        note = (note or "").strip()
        if len(note) > 2000:
            raise ActionError("the note is longer than 2000 characters")
        try:
            from detect.alerts import AlertStore  # owned by the detection package
        except ImportError as exc:
            raise ActionError("the alert store is not available in this installation") from exc
        try:
            # owner=False: status changes are appended to the store's status log under a lock; the
            # detector process (the owner) picks them up. Who and when are recorded there.
            AlertStore(self.layout.alerts_dir, owner=False).set_status(alert_id, status, who, note or None)
        except KeyError as exc:
            raise ActionError(f"no alert {alert_id!r} in this data dir") from exc
        except (ValueError, OSError) as exc:
            raise ActionError(str(exc)) from exc
        log.info("dashboard_alert_status", alert_id=alert_id, status=status, user=who, note_len=len(note))

    # ------------------------------------------------------------------ proofs
    def event_proof(self, row: dict[str, Any]) -> dict[str, Any]:
        """An RFC 6962 inclusion proof of one stored event against the latest signed checkpoint
        of its chain, verified here. Keys: verified, pending, reason, index, path, checkpoint."""
        try:
            from ingest import proofs
        except ImportError as exc:
            raise ActionError("inclusion proofs are not available in this installation") from exc
        return proofs_for_row(proofs, self.layout, row)

    def evidence_bundle(
        self, data: Any, tr: Any, session: str | None, principal: str | None, who: str
    ) -> tuple[str, str]:
        """(file name, JSON text) of the events in view with their inclusion proofs."""
        return build_bundle(self, data, tr, session, principal, who)

    # ------------------------------------------------------------------ verify
    @property
    def _verify_state_file(self):
        return self.layout.state_dir / "dashboard" / "verify-last.json"

    def _load_last_verify(self) -> None:
        try:
            data = json.loads(self._verify_state_file.read_text())
            self.verify_job = VerifyJob(**{k: v for k, v in data.items() if k in VerifyJob.__dataclass_fields__})
            self.verify_job.running = False
        except (OSError, ValueError, TypeError):
            pass

    def _save_last_verify(self) -> None:
        try:
            self._verify_state_file.parent.mkdir(parents=True, exist_ok=True)
            self._verify_state_file.write_text(json.dumps(self.verify_job.as_dict(), default=str))
        except OSError as exc:
            log.warning("dashboard_verify_state_not_saved", error=str(exc)[:200])

    def last_verify(self) -> dict[str, Any]:
        """The running job, or the latest finished verification: this dashboard's, or one that
        `tooltrail verify` ran later (ingest saves every run's report)."""
        job = self.verify_job.as_dict()
        if job["running"]:
            return job
        try:
            from ingest.verify import last_report

            rep = last_report(self.layout)
        except Exception:
            rep = None
        if not rep:
            return job
        cli_at = _parse(rep.get("verified_at"))
        ours = _parse(job.get("finished"))
        # our own run saves the same report a moment before it finishes: only a later one is the CLI's
        if cli_at is not None and (ours is None or (cli_at - ours).total_seconds() > 2):
            return {"running": False, "started": rep.get("verified_at"), "finished": rep.get("verified_at"),
                    "by": "tooltrail verify", "done": rep.get("events", 0), "total": rep.get("events", 0),
                    "message": f"{rep.get('events', 0):,} events in {rep.get('seconds', 0)} s", "ok": rep.get("ok"),
                    "report": rep, "error": None}
        return job

    def start_verify(self, who: str) -> bool:
        """Start a verification run in the background; False when one is already running."""
        with self._verify_lock:
            if self.verify_job.running:
                return False
            self.verify_job = VerifyJob(running=True, started=_now(), by=who, message="starting")
        threading.Thread(target=self._run_verify, name="tooltrail-verify", daemon=True).start()
        log.info("dashboard_verify_started", user=who)
        return True

    def _progress(self, n: int) -> None:
        """ingest.verify reports progress as increments of events checked."""
        self.verify_job.done += int(n)

    def _run_verify(self) -> None:
        job = self.verify_job
        t0 = time.perf_counter()
        try:
            from ingest.segments import all_live_segments
            from ingest.verify import verify

            job.total = sum(s.rows for s in all_live_segments(self.layout))
            job.message = f"{len(self.layout.chain_ids())} chains"
            report = verify(self.layout, progress=self._progress)  # also saves lake/verify/last.json
            rep = _report_dict(report)
            job.report = rep
            job.ok = bool(rep.get("ok", False))
            job.message = f"finished in {time.perf_counter() - t0:.1f} s"
        except Exception as exc:
            job.ok = False
            job.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            job.message = "verification could not run"
            log.warning("dashboard_verify_failed", error=job.error, tb=traceback.format_exc(limit=3)[-500:])
        finally:
            job.finished = _now()
            job.running = False
            self._save_last_verify()
            log.info("dashboard_verify_finished", ok=job.ok, user=job.by)


def _report_dict(report: Any) -> dict[str, Any]:
    if report is None:
        return {}
    if isinstance(report, dict):
        return json.loads(json.dumps(report, default=str))
    if hasattr(report, "model_dump"):
        return json.loads(json.dumps(report.model_dump(mode="json"), default=str))
    if hasattr(report, "to_dict"):
        return json.loads(json.dumps(report.to_dict(), default=str))
    if hasattr(report, "__dataclass_fields__"):
        import dataclasses

        return json.loads(json.dumps(dataclasses.asdict(report), default=str))
    return {"ok": bool(getattr(report, "ok", False)), "text": str(report)}


def _row_tuple(row: dict[str, Any]) -> tuple[str, int, str, str, str]:
    return (row["chain_id"], int(row["seq"]), row["record"], row["prev_hash"], row["hash"])


def proofs_for_row(proofs: Any, layout: Any, row: dict[str, Any]) -> dict[str, Any]:
    """Build the inclusion proof of one stored row and verify it (signature, canonical form,
    chain link, Merkle path to the signed root) with the offline verifier."""
    try:
        bundle = proofs.build_bundle(layout, [_row_tuple(row)], {"event_id": row.get("event_id")})
    except proofs.ProofError as exc:
        msg = str(exc)
        return {"verified": False, "pending": "checkpoint" in msg, "reason": msg}
    except (OSError, ValueError) as exc:
        return {"verified": False, "reason": f"{type(exc).__name__}: {str(exc)[:200]}"}
    check = proofs.verify_bundle(bundle)
    ev = bundle["events"][0]
    cp = bundle["checkpoints"].get(row["chain_id"], {})
    return {"verified": check.ok, "reason": "; ".join(check.problems), "index": ev["leaf_index"],
            "tree_size": ev["tree_size"], "path": ev["path"], "checkpoint": cp, "public_key": bundle["public_key"]}


MAX_BUNDLE_EVENTS = 5000


def build_bundle(actions: Actions, data: Any, tr: Any, session: str | None, principal: str | None,
                 who: str) -> tuple[str, str]:
    """An evidence bundle of the events in view (`tooltrail.evidence`, the exporter behind
    `tooltrail export`): inclusion proofs, signed checkpoints, public key, and `meta.export`
    saying what was selected, by whom. `tooltrail verify-bundle FILE` checks it offline."""
    try:
        from tooltrail.evidence import ExportError, export_evidence
    except ImportError as exc:
        raise ActionError("evidence export is not available in this installation") from exc
    sel: dict[str, Any] = {"session": session} if session else {"principal": principal}
    try:
        bundle = export_evidence(actions.config, since=_iso(tr.start), until=_iso(tr.end), exported_by=who,
                                 max_events=MAX_BUNDLE_EVENTS, rq=data.query, **sel)
    except (ExportError, ValueError, OSError) as exc:
        raise ActionError(str(exc)) from exc
    subject = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (session or principal or "view"))[:60]
    name = f"evidence-{subject}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    log.info("dashboard_evidence_export", user=who, events=len(bundle.get("events", [])), session=session,
             principal=principal)
    return name, json.dumps(bundle, indent=1)


def _parse(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
