"""Configuration of detection and alert delivery."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class StatsTuning(BaseModel):
    """Thresholds of the statistical detectors (defaults measured with `tooltrail eval`)."""

    model_config = ConfigDict(extra="forbid")

    volume_min_days: int = Field(2, ge=1, description="Days of history before volume alerts.")
    volume_z: float = Field(6.0, gt=0, description="Robust z-score threshold of the volume shift.")
    volume_ratio: float = Field(2.0, ge=1, description="... and at least this many times the key's busy-hour level (p95 of active hours, 7 days).")
    volume_min_principal: int = Field(150, ge=1, description="Minimum calls per hour (principal) to alert.")
    volume_min_tool: int = Field(100, ge=1, description="Minimum calls per hour (principal x tool) to alert.")
    deny_window_s: float = Field(1800.0, gt=0)
    deny_alpha: float = Field(1e-6, gt=0, lt=1, description="Binomial test significance level.")
    deny_min_k: int = Field(4, ge=1)
    deny_min_baseline: int = Field(200, ge=1, description="Calls of history before deny-ratio alerts.")
    seq_min_total: int = Field(20_000, ge=1, description="Transitions learned before rare-sequence alerts.")
    seq_min_from: int = Field(200, ge=1)
    seq_p_rare: float = Field(0.001, gt=0, lt=1)
    seq_window: int = Field(10, ge=2)
    seq_k_rare: int = Field(3, ge=1)
    iforest_window_s: float = Field(3600.0, gt=0)
    iforest_min_train: int = Field(300, ge=10)
    iforest_train_size: int = Field(4000, ge=100)
    iforest_quantile: float = Field(0.01, gt=0, lt=0.5)
    iforest_min_events: int = Field(10, ge=1)
    iforest_margin: float = Field(0.05, ge=0)
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
    detectors: list[str] | None = Field(None, description="Subset of volume, deny_ratio, rare_sequence, isolation_forest (default: all).")
    stats: StatsTuning = Field(default_factory=StatsTuning)
    suppressions: list[SuppressionEntry] = Field(default_factory=list, description="Matches covered are counted, not raised.")
    save_state_every_s: float = Field(5.0, gt=0, description="How often the live detector persists its state.")
    follow_poll_s: float = Field(1.0, gt=0, description="`tooltrail detect --follow`: poll interval for new segments.")

    def stats_settings(self) -> Any:
        from detect.stats import StatsSettings

        return StatsSettings(**self.stats.model_dump())


class AlertingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dashboard_url: str = "http://127.0.0.1:8050"
    webhooks: list[dict] = Field(default_factory=list, description="Webhook destinations.")
