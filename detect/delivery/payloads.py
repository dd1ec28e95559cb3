"""What goes to each destination kind, and which alerts go where (routing).

Alert events: "firing" (a new alert), "updated" (more matches folded in, or acknowledged /
reopened by an analyst), "resolved". Message ids are derived from the destination, the alert
and the alert's state, so the same alert change always gets the same id - after a retry, a
restart, or a detector replay after a crash - and receivers can dedupe on `webhook-id`.
"""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Any
from urllib.parse import urlencode

import orjson

from detect.settings import WebhookDestination
from schemas.alert import SEVERITIES, Alert

PAYLOAD_VERSION = 1
PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
_CONTEXT_MARGIN_S = 15 * 60


def event_for(kind: str, alert: Alert) -> str:
    """Map an AlertStore change kind to the delivered event."""
    if kind == "created":
        return "resolved" if alert.status == "resolved" else "firing"
    if kind == "status":
        return "resolved" if alert.status == "resolved" else "updated"
    return "resolved" if alert.status == "resolved" else "updated"


def routes(dest: WebhookDestination, alert: Alert, event: str) -> bool:
    """Does this destination take this alert event? Every given criterion must hold."""
    if not dest.enabled or event not in dest.on:
        return False
    if SEVERITIES.index(alert.severity) < SEVERITIES.index(dest.min_severity):
        return False
    if dest.severities is not None and alert.severity not in dest.severities:
        return False
    if dest.tags and not set(dest.tags) & set(alert.tags):
        return False
    if dest.rule_ids and not any(fnmatch.fnmatchcase(alert.rule_id, g) for g in dest.rule_ids):
        return False
    return not any(fnmatch.fnmatchcase(alert.rule_id, g) for g in dest.exclude_rule_ids)


def message_id(destination: str, alert: Alert, event: str, discriminator: str | None = None) -> str:
    if discriminator is None:
        if event == "firing":
            discriminator = ""
        elif event == "resolved":
            discriminator = str(len(alert.history))
        else:
            discriminator = (f"{alert.status}:{len(alert.history)}:{alert.match_count}:"
                             f"{alert.suppressed_count}:{alert.evidence_total}")
    h = hashlib.sha256("\x1f".join((destination, alert.alert_id, event, discriminator)).encode()).hexdigest()
    return "msg_" + h[:32]


def links(alert: Alert, dashboard_url: str) -> dict[str, str]:
    base = dashboard_url.rstrip("/")
    q: dict[str, str] = {"alert": alert.alert_id}
    if alert.entities.session:
        q["session"] = alert.entities.session
    elif alert.entities.principal:
        q["principal"] = alert.entities.principal
    from detect.timeutil import epoch_ts

    q["from"] = epoch_ts(alert.first_seen.timestamp() - _CONTEXT_MARGIN_S)
    q["to"] = epoch_ts(alert.last_seen.timestamp() + _CONTEXT_MARGIN_S)
    return {"alert": f"{base}/alerts?{urlencode({'id': alert.alert_id})}", "timeline": f"{base}/timeline?{urlencode(q)}"}


def alert_data(alert: Alert, event: str, dashboard_url: str) -> dict[str, Any]:
    a = alert.model_dump(mode="json")
    last = alert.history[-1].model_dump(mode="json") if alert.history else None
    return {
        "alert_id": a["alert_id"],
        "status": event,
        "alert_status": a["status"],
        "title": a["title"],
        "severity": a["severity"],
        "rule": {"id": a["rule_id"], "version": a["rule_version"], "title": a["title"], "severity": a["severity"],
                 "tags": a["tags"], "runbook": a["runbook"], "description": a["description"], "detector": a["detector"]},
        "dedup_key": a["dedup_key"],
        "match_count": a["match_count"],
        "suppressed_count": a["suppressed_count"],
        "first_seen": a["first_seen"],
        "last_seen": a["last_seen"],
        "created_at": a["created_at"],
        "updated_at": a["updated_at"],
        "entities": a["entities"],
        "context": a["context"],
        "evidence": a["evidence"],
        "evidence_total": a["evidence_total"],
        "score": a["score"],
        "actual": a["actual"],
        "expected": a["expected"],
        "last_change": last,
        "links": links(alert, dashboard_url),
    }


def generic_payload(alert: Alert, event: str, dashboard_url: str) -> dict[str, Any]:
    """Standard Webhooks shape: {type, timestamp, data}."""
    return {"type": f"alert.{event}", "version": PAYLOAD_VERSION, "timestamp": alert.model_dump(mode="json")["updated_at"],
            "data": alert_data(alert, event, dashboard_url)}


def slack_escape(text: Any) -> str:
    """Slack mrkdwn control characters; event fields are attacker-influenced (no injected links)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_ICON = {"firing": ":rotating_light:", "updated": ":arrows_counterclockwise:", "resolved": ":white_check_mark:"}


def slack_payload(alert: Alert, event: str, dashboard_url: str) -> dict[str, Any]:
    e = alert.entities
    lk = links(alert, dashboard_url)
    head = f"{_SLACK_ICON.get(event, '')} [{alert.severity.upper()}] {event}: {alert.title}"[:150]
    fields = [("Rule", f"{alert.rule_id} v{alert.rule_version}"), ("Matches", str(alert.match_count)),
              ("Principal", e.principal), ("Agent", e.agent), ("Session", e.session), ("Server", e.server),
              ("Tools", ", ".join(e.tools[:8]) or None), ("First / last seen",
               f"{alert.first_seen:%Y-%m-%d %H:%M:%S} / {alert.last_seen:%H:%M:%S} UTC")]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head, "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{slack_escape(v)[:500]}"}
                                       for k, v in fields if v][:10]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{lk['alert']}|Open alert> | <{lk['timeline']}|Timeline>"
                                          f" | `{alert.alert_id}` | tags: {slack_escape(', '.join(alert.tags) or '-')}"}]},
    ]
    text = f"[{alert.severity.upper()}] {event}: {slack_escape(alert.title)} ({alert.rule_id}, {alert.alert_id})"
    return {"text": text, "blocks": blocks}


def pagerduty_payload(alert: Alert, event: str, dashboard_url: str) -> dict[str, Any]:
    """Events API v2 without `routing_key` (added at send time, never stored)."""
    if event == "resolved":
        action = "resolve"
    elif alert.status == "acknowledged":
        action = "acknowledge"
    else:
        action = "trigger"
    body: dict[str, Any] = {"event_action": action, "dedup_key": alert.alert_id}
    if action == "trigger":
        e = alert.entities
        lk = links(alert, dashboard_url)
        who = e.principal or e.session or e.agent or "-"
        body["payload"] = {
            "summary": f"[{alert.rule_id}] {alert.title} ({who})"[:1024],
            "source": e.server or e.source or "tooltrail",
            "severity": PD_SEVERITY[alert.severity],
            "timestamp": alert.model_dump(mode="json")["last_seen"],
            "component": e.server,
            "group": e.principal,
            "class": alert.rule_id,
            "custom_details": {k: v for k, v in alert_data(alert, event, dashboard_url).items()
                               if k in ("alert_id", "match_count", "first_seen", "last_seen", "entities", "context",
                                        "evidence_total", "dedup_key")} | {
                "tags": alert.tags, "runbook": alert.runbook,
                "evidence": [r.event_id for r in alert.evidence[:20]]},
        }
        body["links"] = [{"href": lk["alert"], "text": "ToolTrail alert"}, {"href": lk["timeline"], "text": "Session timeline"}]
        body["client"] = "ToolTrail"
        body["client_url"] = lk["alert"]
    return body


BUILDERS = {"generic": generic_payload, "slack": slack_payload, "pagerduty": pagerduty_payload}


def build(dest: WebhookDestination, alert: Alert, event: str, dashboard_url: str) -> bytes:
    """The stored payload (exact request body, except PagerDuty's routing key)."""
    return orjson.dumps(BUILDERS[dest.kind](alert, event, dashboard_url))


def finalize(kind: str, payload: bytes, routing_key: str | None) -> bytes:
    if kind == "pagerduty":
        return orjson.dumps({"routing_key": routing_key or "", **orjson.loads(payload)})
    return payload
