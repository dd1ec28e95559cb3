"""Optional tool policy enforced at the proxy (or by the server middleware).

A policy file (TOML, YAML or JSON) looks like::

    allow = ["read_*", "list_*", "write_note"]   # omit = every tool allowed
    deny = ["delete_*"]                          # deny wins over allow
    hide_denied = false                          # also drop denied tools from tools/list
    default_scopes = ["notes:read"]              # scopes of an unauthenticated (stdio) principal

    [required_scopes]                            # tool pattern -> scopes the caller must hold
    "write_*" = ["notes:write"]

Patterns are shell globs (``fnmatch``, case-sensitive) over the tool name. A denied call is
answered with an MCP error and recorded with ``decision: deny``, ``result: denied``, the
reason and (for a scope failure) ``scope_checked``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# JSON-RPC error code of a policy denial: implementation-defined server error range
# (-32000..-32099); the SDK uses -32000/-32001/-32020..-32022/-32042, not -32003.
POLICY_DENIED_CODE = -32003


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str | None = None
    scope_checked: str | None = None


ALLOW = Decision(True)


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow: list[str] | None = Field(None, description="Tool name globs that may be called; None = all.")
    deny: list[str] = Field(default_factory=list, description="Tool name globs that may never be called.")
    required_scopes: dict[str, list[str]] = Field(default_factory=dict,
                                                  description="Tool name glob -> scopes the caller must hold (all).")
    default_scopes: list[str] = Field(default_factory=list,
                                      description="Scopes granted to a principal without a token (stdio / config).")
    hide_denied: bool = Field(False, description="Remove tools denied by allow/deny from tools/list.")

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a TOML (.toml), YAML (.yaml/.yml) or JSON file. ValueError names the problem."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ValueError(f"policy file {p}: {exc.strerror or exc}") from exc
        try:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                data: Any = yaml.safe_load(raw) or {}
            elif p.suffix == ".json":
                data = json.loads(raw)
            else:
                data = tomllib.loads(raw.decode("utf-8"))
        except Exception as exc:  # parse errors of three libraries
            raise ValueError(f"policy file {p}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"policy file {p}: top level must be a table/object")
        return cls.model_validate(data)

    def listed(self, tool: str) -> Decision:
        """The allow/deny-list part of the decision (independent of the caller)."""
        for pat in self.deny:
            if fnmatchcase(tool, pat):
                return Decision(False, f"tool {tool!r} is on the deny list ({pat})")
        if self.allow is not None and not any(fnmatchcase(tool, pat) for pat in self.allow):
            return Decision(False, f"tool {tool!r} is not on the allow list")
        return ALLOW

    def scopes_for(self, tool: str) -> list[str]:
        out: list[str] = []
        for pat, scopes in self.required_scopes.items():
            if fnmatchcase(tool, pat):
                out.extend(s for s in scopes if s not in out)
        return out

    def decide(self, tool: str, granted: list[str] | tuple[str, ...] | frozenset[str] | None) -> Decision:
        """Allow or deny one call of `tool` by a caller holding `granted` scopes."""
        d = self.listed(tool)
        if not d.allowed:
            return d
        required = self.scopes_for(tool)
        if not required:
            return ALLOW
        have = set(granted or ())
        for scope in required:
            if scope not in have:
                return Decision(False, f"missing required scope {scope!r} for tool {tool!r}", scope)
        return Decision(True, None, " ".join(required))
