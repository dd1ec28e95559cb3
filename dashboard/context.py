"""What every page's callbacks need: settings, the read layer, actions, the signed-in user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import g

from dashboard.actions import Actions
from dashboard.data import DashboardData
from dashboard.settings import DashboardSettings


@dataclass
class Ctx:
    config: Any
    settings: DashboardSettings
    data: DashboardData
    actions: Actions

    @staticmethod
    def user() -> str:
        s = getattr(g, "tt_session", None)
        return s.user if s is not None else "unknown"
