"""Configuration of the SOC dashboard (`[dashboard]` in the TOML file, TOOLTRAIL_DASHBOARD__<FIELD>)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DashboardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(
        "127.0.0.1", description="Bind address. Anything but loopback needs a TLS reverse proxy in front."
    )
    port: int = Field(8050, ge=0, le=65535)
    session_minutes: int = Field(60, ge=1, description="A session ends after this many minutes without a request.")
    session_max_hours: float = Field(12.0, gt=0, description="... and at the latest this long after login.")
    trusted_user_header: str | None = Field(
        None, description="Header set by a trusted reverse proxy carrying the user name (e.g. X-Forwarded-User)."
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Peer addresses allowed to assert `trusted_user_header`; requests from elsewhere are refused.",
    )
    cookie_secure: bool = Field(False, description="Mark cookies Secure and send HSTS (set when served over HTTPS).")
    users_file: str | None = Field(
        None, description="Local users (argon2 hashes); default <data>/keys/dashboard-users.json."
    )
    page_size: int = Field(25, ge=5, le=500, description="Rows per page in tables.")
    timeline_max_events: int = Field(2000, ge=10, le=50_000, description="Events drawn on one timeline view.")
    query_row_limit: int = Field(1000, ge=1, le=100_000, description="Upper bound of the Query page's row limit.")
    query_timeout_s: float = Field(10.0, gt=0, le=600, description="Upper bound of the Query page's timeout.")
    page_timeout_s: float = Field(10.0, gt=0, le=600, description="Timeout of each query a page issues.")
    refresh_seconds: int = Field(15, ge=2, le=3600, description="Auto-refresh period of the Overview page.")
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user or address within 15 minutes before a lockout."
    )
    saved_query_dirs: list[str] = Field(default_factory=list, description="Extra directories of saved queries (*.sql).")
