"""Rules as code: YAML rule files, their schema, loading and lint.

A rule file holds one rule (a mapping) or several (`rules: [...]` or a YAML list). Built-in
rules live in `detect/rules/`; DetectSettings.rule_dirs and `--rules DIR` add more. A user
rule with the id of a built-in one replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detect.conditions import ConditionError, Node, compile_condition, fields_of, getter, known_field
from detect.taxonomy import THREATS
from detect.timeutil import parse_duration
from schemas.alert import SEVERITIES

BUILTIN_RULES_DIR = Path(__file__).with_name("rules")
RULE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Kind = Literal["match", "threshold", "sequence", "new_term"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepSpec(_M):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    where: dict[str, Any] | list[Any] | None = None
    absent: bool = Field(False, description="No event matching this step may occur (before the next step).")
    within: str | None = Field(None, description="Leading absence step: look-back window (default: maxspan).")


class ThresholdSpec(_M):
    window: str
    gte: int = Field(ge=1)
    distinct: str | None = Field(None, description="Count distinct values of this field instead of events.")


class NewTermSpec(_M):
    fields: list[str] = Field(min_length=1)
    history_by: list[str] = Field(
        default_factory=list,
        description="Learning period / history per these fields (prefix of `fields`); empty: global.",
    )
    learning: str = Field("0s", description="No alerts until the history group has been seen this long.")
    require_history: bool = Field(
        False, description="Alert only when the group already had another term (drift after first sight)."
    )
    max_terms: int = Field(1_000_000, ge=1)
    unless_known: list[str] = Field(
        default_factory=list,
        description="Peer suppression: no alert when these fields' values already occur in the terms of ...",
    )
    unless_min_groups: int = Field(
        3, ge=1, description="... at least this many other history groups (e.g. a server already used by 3 principals)."
    )


class RuleTestSpec(_M):
    name: str
    alerts: int = Field(ge=0, description="Expected number of alerts.")
    events: list[dict[str, Any]] = Field(default_factory=list)
    quarantine: list[dict[str, Any]] = Field(default_factory=list)
    catalog: dict[str, Any] | None = None


class RuleSpec(_M):
    id: str
    version: int = Field(1, ge=1)
    title: str = Field(min_length=3, max_length=200)
    kind: Kind
    severity: str
    description: str = Field(min_length=10)
    runbook: str = Field(min_length=10)
    tags: list[str] = Field(min_length=1)
    enabled: bool = True
    input: Literal["events", "quarantine"] = "events"
    where: dict[str, Any] | list[Any] | None = None
    group_by: list[str] = Field(default_factory=list)
    threshold: ThresholdSpec | None = None
    maxspan: str | None = None
    steps: list[StepSpec] = Field(default_factory=list)
    new_term: NewTermSpec | None = None
    group_window: str = Field(
        "1h", description="Matches with the same dedup key within this time of the last one fold into the open alert."
    )
    suppress_for: str = Field(
        "0s",
        description="After an alert, further matches of its key within this time of its first match are only counted.",
    )
    dedup_by: list[str] | None = Field(
        None, description="Dedup key fields (default: group_by, else principal + session)."
    )
    context: list[str] = Field(default_factory=list, description="Fields copied into the alert context.")
    tests: list[RuleTestSpec] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        if not RULE_ID_RE.match(v):
            raise ValueError("rule id must be 1-64 of [A-Za-z0-9._-] starting with a letter or digit")
        return v

    @field_validator("severity")
    @classmethod
    def _sev_ok(cls, v: str) -> str:
        if v not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
        return v

    @field_validator("tags")
    @classmethod
    def _tags_ok(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in THREATS]
        if bad:
            raise ValueError(f"unknown threat tag(s) {bad}; known: {', '.join(THREATS)}")
        return v

    @field_validator("maxspan", "group_window", "suppress_for")
    @classmethod
    def _dur_ok(cls, v: str | None) -> str | None:
        if v is not None:
            parse_duration(v)
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> RuleSpec:
        k = self.kind
        if k == "threshold" and self.threshold is None:
            raise ValueError("kind threshold needs `threshold: {window, gte[, distinct]}`")
        if k == "sequence":
            if not self.steps or not self.maxspan:
                raise ValueError("kind sequence needs `steps` and `maxspan`")
            if self.steps[-1].absent:
                raise ValueError("the last step of a sequence cannot be an absence step")
            if not any(not s.absent for s in self.steps):
                raise ValueError("a sequence needs at least one non-absent step")
            names = [s.name for s in self.steps]
            if len(set(names)) != len(names):
                raise ValueError("step names must be unique")
            if not self.group_by:
                raise ValueError("kind sequence needs `group_by` (e.g. [session])")
        if k == "new_term" and self.new_term is None:
            raise ValueError("kind new_term needs `new_term: {fields, ...}`")
        if k != "sequence" and self.steps:
            raise ValueError("`steps` only applies to kind sequence")
        if k == "threshold":
            parse_duration(self.threshold.window)  # type: ignore[union-attr]
        if self.new_term is not None:
            parse_duration(self.new_term.learning)
            if self.new_term.history_by != self.new_term.fields[: len(self.new_term.history_by)]:
                raise ValueError("new_term.history_by must be a prefix of new_term.fields")
            if any(f not in self.new_term.fields[len(self.new_term.history_by) :] for f in self.new_term.unless_known):
                raise ValueError("new_term.unless_known must name fields of new_term.fields outside history_by")
        if self.tests:
            if not any(t.alerts > 0 for t in self.tests):
                raise ValueError("tests need at least one positive case (alerts >= 1)")
            if not any(t.alerts == 0 for t in self.tests):
                raise ValueError("tests need at least one negative case (alerts: 0)")
        return self


@dataclass
class Rule:
    """A compiled rule."""

    spec: RuleSpec
    path: str
    where: Node
    steps: list[tuple[StepSpec, Node]] = field(default_factory=list)
    group_getters: list[Any] = field(default_factory=list)
    dedup_fields: list[str] = field(default_factory=list)
    dedup_getters: list[Any] = field(default_factory=list)
    context_getters: list[tuple[str, Any]] = field(default_factory=list)
    group_window: float = 3600.0
    suppress_for: float = 0.0

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def detector(self) -> str:
        return self.spec.kind


class RuleError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _check_fields(names: list[str], where: str) -> None:
    for n in names:
        if not known_field(n):
            raise ConditionError(f"{where}: unknown field {n!r}")


def compile_rule(spec: RuleSpec, path: str = "<memory>") -> Rule:
    """Compile a validated spec; raises ConditionError with the offending path."""
    where = compile_condition(spec.where, "where")
    steps: list[tuple[StepSpec, Node]] = []
    seen: list[str] = []
    for i, s in enumerate(spec.steps):
        node = compile_condition(s.where, f"steps[{i}].where")
        for r in node.refs:
            step_name, _, fld = r.partition(".")
            if step_name not in seen:
                raise ConditionError(f"steps[{i}].where: reference {r!r} must name an earlier step")
            if not known_field(fld):
                raise ConditionError(f"steps[{i}].where: reference {r!r}: unknown field {fld!r}")
        if s.within is not None:
            parse_duration(s.within)
        if not s.absent:
            seen.append(s.name)
        steps.append((s, node))
    _check_fields(spec.group_by, "group_by")
    dedup = spec.dedup_by if spec.dedup_by is not None else (spec.group_by or ["principal", "session"])
    _check_fields(dedup, "dedup_by")
    _check_fields(spec.context, "context")
    if spec.threshold and spec.threshold.distinct:
        _check_fields([spec.threshold.distinct], "threshold.distinct")
    if spec.new_term:
        _check_fields(spec.new_term.fields, "new_term.fields")
    if spec.input == "quarantine" and spec.kind not in ("match", "threshold"):
        raise ConditionError("input: quarantine supports kinds match and threshold")
    return Rule(
        spec=spec,
        path=path,
        where=where,
        steps=steps,
        group_getters=[getter(g) for g in spec.group_by],
        dedup_fields=list(dedup),
        dedup_getters=[getter(g) for g in dedup],
        context_getters=[(c, getter(c)) for c in spec.context],
        group_window=parse_duration(spec.group_window),
        suppress_for=parse_duration(spec.suppress_for),
    )


def _docs(path: Path) -> list[dict[str, Any]]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if raw is None:
        return []
    if isinstance(raw, dict) and "rules" in raw and "id" not in raw:
        raw = raw["rules"]
    if isinstance(raw, dict):
        return [raw]
    if isinstance(raw, list) and all(isinstance(x, dict) for x in raw):
        return raw
    raise ValueError("a rule file holds a mapping (one rule), a list of rules, or `rules: [...]`")


def _fmt_validation(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(rule)"
        out.append(f"{loc}: {e['msg']}")
    return out


def rule_files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(x for x in p.rglob("*") if x.suffix in (".yaml", ".yml")))
        else:
            files.append(p)
    return files


def lint(paths: list[str | Path]) -> tuple[list[Rule], list[str]]:
    """Validate rule files. Returns (compiled rules, problems as 'file: rule: path: message')."""
    rules: list[Rule] = []
    problems: list[str] = []
    ids: dict[str, str] = {}
    for f in rule_files(paths):
        try:
            docs = _docs(f)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            problems.append(f"{f}: cannot read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        for i, d in enumerate(docs):
            rid = str(d.get("id", f"#{i}"))
            try:
                spec = RuleSpec.model_validate(d)
            except ValidationError as exc:
                problems.extend(f"{f}: {rid}: {m}" for m in _fmt_validation(exc))
                continue
            try:
                rule = compile_rule(spec, str(f))
            except (ConditionError, ValueError) as exc:
                problems.append(f"{f}: {rid}: {exc}")
                continue
            if not spec.tests:
                problems.append(f"{f}: {rid}: tests: every rule needs embedded tests (>= 1 positive, >= 1 negative)")
            if rid in ids:
                problems.append(f"{f}: {rid}: duplicate rule id (also in {ids[rid]})")
                continue
            ids[rid] = str(f)
            rules.append(rule)
    for r in rules:
        for fld in fields_of(r.spec.where):
            if fld.startswith("reasons.") and r.spec.input != "quarantine":
                problems.append(f"{r.path}: {r.id}: where.{fld}: quarantine field used by an events rule")
    return rules, problems


def load_rules(dirs: list[str | Path] | None = None, builtin: bool = True) -> list[Rule]:
    """Built-in pack plus extra directories; a later rule with the same id replaces an earlier
    one. Raises RuleError listing every problem."""
    by_id: dict[str, Rule] = {}
    problems: list[str] = []
    groups: list[list[str | Path]] = ([[BUILTIN_RULES_DIR]] if builtin else []) + [[d] for d in (dirs or [])]
    for g in groups:
        rules, probs = lint(g)
        problems.extend(probs)
        for r in rules:
            by_id[r.id] = r
    if problems:
        raise RuleError(problems)
    return [r for r in by_id.values() if r.spec.enabled]
