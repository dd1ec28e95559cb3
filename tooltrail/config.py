"""One configuration: a TOML file plus TOOLTRAIL_* environment variables, with defaults
that run on one machine with no external services.

Precedence: defaults < TOML file (--config or TOOLTRAIL_CONFIG) < environment.
Environment: TOOLTRAIL_DATA_DIR, TOOLTRAIL_API_KEYS ("src=token,src2=token2"), and
TOOLTRAIL_<SECTION>__<FIELD> for any field (e.g. TOOLTRAIL_HTTP__PORT=9000).
"""

from __future__ import annotations

import json
import os
import tomllib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dashboard.settings import DashboardSettings
from detect.settings import AlertingSettings, DetectSettings
from ingest.layout import Layout
from ingest.settings import HttpSettings, KafkaSettings, RedactionSettings, StorageSettings


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data_dir: str = "./tooltrail-data"
    storage: StorageSettings = Field(default_factory=StorageSettings)
    redaction: RedactionSettings = Field(default_factory=RedactionSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)

    @property
    def layout(self) -> Layout:
        return Layout.at(self.data_dir)


def _parse_pairs(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, token = part.partition("=")
        if not sep or not name or not token:
            raise ValueError("TOOLTRAIL_API_KEYS must look like 'source=token,source2=token2'")
        out[name.strip()] = token.strip()
    return out


def _env_overlay(env: dict[str, str]) -> dict[str, Any]:
    overlay: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("TOOLTRAIL_") or key in ("TOOLTRAIL_CONFIG",):
            continue
        rest = key[len("TOOLTRAIL_"):].lower()
        if rest == "data_dir":
            overlay["data_dir"] = value
        elif rest == "api_keys":
            overlay.setdefault("http", {})["api_keys"] = _parse_pairs(value)
        elif rest == "read_keys":
            overlay.setdefault("http", {})["read_keys"] = _parse_pairs(value)
        elif "__" in rest:
            section, field = rest.split("__", 1)
            try:
                parsed: Any = json.loads(value)
            except ValueError:
                parsed = value
            overlay.setdefault(section, {})[field] = parsed
    return overlay


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | os.PathLike[str] | None = None, *, data_dir: str | None = None,
                env: dict[str, str] | None = None) -> Config:
    """Load the configuration. Raises ValueError with the offending key on bad input."""
    env = dict(os.environ) if env is None else env
    path = path or env.get("TOOLTRAIL_CONFIG")
    raw: dict[str, Any] = {}
    if path:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    raw = _merge(raw, _env_overlay(env))
    if data_dir is not None:
        raw["data_dir"] = data_dir
    return Config.model_validate(raw)
