"""Configuration of detection and alert delivery."""

from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class StatsTuning(BaseModel):
    """Thresholds of the statistical detectors (defaults measured with `tooltrail eval`)."""

    model_config = ConfigDict(extra="forbid")

    volume_min_days: int = Field(2, ge=1, description="Days of history before volume alerts.")
    volume_z: float = Field(6.0, gt=0, description="Robust z-score threshold of the volume shift.")
    volume_ratio: float = Field(
        2.0,
        ge=1,
        description="... and at least this many times the key's busy-hour level (p95 of active hours, 7 days).",
    )
    volume_min_principal: int = Field(150, ge=1, description="Minimum calls per hour (principal) to alert.")
    volume_min_tool: int = Field(100, ge=1, description="Minimum calls per hour (principal x tool) to alert.")
    deny_window_s: float = Field(1800.0, gt=0)
    deny_alpha: float = Field(1e-6, gt=0, lt=1, description="Binomial test significance level.")
    deny_min_k: int = Field(4, ge=1)
    deny_min_baseline: int = Field(200, ge=1, description="Calls of history before deny-ratio alerts.")
    seq_min_total: int = Field(10_000, ge=1, description="Transitions learned before rare-sequence alerts.")
    seq_min_from: int = Field(200, ge=1)
    seq_p_rare: float = Field(0.001, gt=0, lt=1)
    seq_window: int = Field(10, ge=2)
    seq_k_rare: int = Field(3, ge=1)
    iforest_window_s: float = Field(3600.0, gt=0)
    iforest_min_train: int = Field(300, ge=10)
    iforest_train_size: int = Field(4000, ge=100)
    iforest_quantile: float = Field(0.01, gt=0, lt=0.5)
    iforest_min_events: int = Field(10, ge=1)
    iforest_margin: float = Field(0.06, ge=0)
    iforest_trees: int = Field(200, ge=10)
    iforest_max_samples: int = Field(512, ge=16)


class SuppressionEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str = Field("*", description="Rule id glob.")
    principal: str | None = None
    session: str | None = None
    server: str | None = None
    tool: str | None = None
    until: str | None = Field(None, description="Event time (RFC 3339) after which the entry no longer applies.")


class DetectSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    rule_dirs: list[str] = Field(default_factory=list, description="Extra rule directories (YAML).")
    catalog_file: str | None = Field(None, description="Tool catalog overrides (YAML).")
    statistical: bool = Field(True, description="Run the statistical detectors.")
    detectors: list[str] | None = Field(
        None, description="Subset of volume, deny_ratio, rare_sequence, isolation_forest (default: all)."
    )
    stats: StatsTuning = Field(default_factory=StatsTuning)
    suppressions: list[SuppressionEntry] = Field(
        default_factory=list, description="Matches covered are counted, not raised."
    )
    save_state_every_s: float = Field(5.0, gt=0, description="How often the live detector persists its state.")
    follow_poll_s: float = Field(1.0, gt=0, description="`tooltrail detect --follow`: poll interval for new segments.")

    def stats_settings(self) -> Any:
        from detect.stats import StatsSettings

        return StatsSettings(**self.stats.model_dump())


DELIVERY_EVENTS: tuple[str, ...] = ("firing", "updated", "resolved")
_SEVERITIES = ("low", "medium", "high", "critical")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class WebhookDestination(BaseModel):
    """One alert destination (`[[alerting.webhooks]]`). URLs, signing secrets and routing keys
    are admin configuration and secrets: never logged, never written to the outbox. Each can
    also be read from an environment variable (`url_env`, `secrets_env`, `routing_key_env`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Unique name; shows in the delivery log.")
    kind: Literal["generic", "slack", "pagerduty"] = "generic"
    url: str | None = Field(None, repr=False, description="Endpoint (PagerDuty: defaults to the Events v2 API).")
    url_env: str | None = Field(None, description="Environment variable holding the URL.")
    secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Standard Webhooks secrets 'whsec_<base64>'; "
        "every one signs each message (rotation: add the new one, later drop the old).",
    )
    secrets_env: list[str] = Field(default_factory=list, description="Environment variables holding more secrets.")
    routing_key: SecretStr | None = Field(None, description="PagerDuty Events v2 integration (routing) key.")
    routing_key_env: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra request headers (e.g. auth).")
    enabled: bool = True
    # routing: every given criterion must hold; list criteria match when any element matches
    min_severity: Literal["low", "medium", "high", "critical"] = "low"
    severities: list[Literal["low", "medium", "high", "critical"]] | None = None
    tags: list[str] = Field(default_factory=list, description="Only alerts carrying at least one of these tags.")
    rule_ids: list[str] = Field(default_factory=list, description="Only these rule ids (globs, e.g. 'TT-EXFIL-*').")
    exclude_rule_ids: list[str] = Field(default_factory=list, description="Never these rule ids (globs).")
    on: list[Literal["firing", "updated", "resolved"]] = Field(
        default_factory=lambda: ["firing", "resolved"], description="Alert events to send."
    )
    # delivery
    timeout_s: float = Field(10.0, gt=0, le=120, description="Per-attempt timeout.")
    max_attempts: int = Field(8, ge=1, le=100, description="Attempts before the message is dead-lettered.")
    backoff_base_s: float = Field(2.0, gt=0, description="First retry delay; doubles per attempt (with jitter).")
    backoff_max_s: float = Field(900.0, gt=0, description="Longest delay between attempts.")
    retry_after_max_s: float = Field(3600.0, gt=0, description="Cap on a receiver's Retry-After.")
    allow_private: bool = Field(False, description="Allow loopback / private-range / link-local targets.")
    allow_http: bool = Field(False, description="Allow plain http:// (https only by default).")

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("use 1-64 of [A-Za-z0-9_.-]")
        return v

    @model_validator(mode="after")
    def _check_url(self) -> WebhookDestination:
        if self.url is not None:
            check_url(self.url, self.allow_http)
        if self.url is None and self.url_env is None and self.kind != "pagerduty":
            raise ValueError(f"webhook {self.name!r}: give url or url_env")
        if self.kind == "pagerduty" and self.routing_key is None and self.routing_key_env is None:
            raise ValueError(f"webhook {self.name!r}: PagerDuty needs routing_key or routing_key_env")
        return self

    @field_validator("secrets")
    @classmethod
    def _check_secrets(cls, v: list[SecretStr]) -> list[SecretStr]:
        for s in v:
            check_whsec(s.get_secret_value())
        return v

    def resolved_url(self, env: dict[str, str] | None = None) -> str | None:
        env = os.environ if env is None else env
        url = self.url or (env.get(self.url_env) if self.url_env else None)
        if url is None and self.kind == "pagerduty":
            url = PAGERDUTY_EVENTS_URL
        return url

    def resolved_secrets(self, env: dict[str, str] | None = None) -> list[str]:
        env = os.environ if env is None else env
        out = [s.get_secret_value() for s in self.secrets]
        for name in self.secrets_env:
            val = env.get(name)
            if val:
                out.extend(x for x in val.split() if x)
        for s in out:
            check_whsec(s)
        return out

    def resolved_routing_key(self, env: dict[str, str] | None = None) -> str | None:
        env = os.environ if env is None else env
        if self.routing_key is not None:
            return self.routing_key.get_secret_value()
        return env.get(self.routing_key_env) if self.routing_key_env else None


def check_url(url: str, allow_http: bool = False) -> str:
    """ValueError unless `url` is an absolute https (or, when allowed, http) URL with a host.
    The message never repeats the URL (it may carry a token)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("webhook url must be an absolute http(s) URL with a host")
    if parts.scheme == "http" and not allow_http:
        raise ValueError("webhook url must use https (set allow_http = true for a plain-http receiver)")
    if parts.username or parts.password:
        raise ValueError("webhook url must not carry user:password (use headers)")
    return url


def check_whsec(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret 'whsec_<base64>' (ValueError if malformed)."""
    if not secret.startswith("whsec_"):
        raise ValueError("webhook secrets look like 'whsec_<base64>' (create one with `tooltrail alerts secret`)")
    try:
        key = base64.b64decode(secret[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("webhook secret is not valid base64 after 'whsec_'") from exc
    if not 16 <= len(key) <= 128:
        raise ValueError("webhook secret must decode to 16-128 bytes")
    return key


class AlertingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dashboard_url: str = Field("http://127.0.0.1:8050", description="Base URL of the dashboard for links in alerts.")
    webhooks: list[WebhookDestination] = Field(
        default_factory=list, description="Alert destinations (see docs/readme/alerting.md)."
    )
    retention_days: float = Field(30.0, gt=0, description="Delivered / dead outbox messages are kept this long.")
    delivery_workers: int = Field(4, ge=1, le=32, description="Parallel deliveries (at most one per destination).")

    @field_validator("webhooks")
    @classmethod
    def _unique_names(cls, v: list[WebhookDestination]) -> list[WebhookDestination]:
        names = [d.name for d in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate webhook name(s): {', '.join(sorted(dup))}")
        return v
