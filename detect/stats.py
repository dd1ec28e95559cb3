"""Statistical detectors (numpy, scipy, scikit-learn). Each sees every event in order and
keeps bounded, serialisable state; windows are event-time; results do not depend on how the
input is split into batches.

- VolumeShift: per principal and per (principal, tool), hourly counts against a robust
  seasonal baseline (median / MAD of the same hour of day over the last 7 days).
- DenyRatio: per principal, one-sided binomial test of the denies in a 30 min sliding window
  against the principal's own decayed deny rate.
- RareSequence: population tool-transition model (Laplace-smoothed Markov chain); sessions
  with several improbable transitions among their last ones score high.
- IsolationForestDetector: per-(principal, hour) feature windows, model retrained daily (event
  time) on recent windows; anomalies carry the top contributing features.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import bdtrc

from detect.alerts import Match, RuleMeta
from detect.executors import slim

Emit = Callable[[Match], None]
DAY = 86400.0


@dataclass
class StatsSettings:
    volume_min_days: int = 2
    volume_z: float = 6.0
    volume_ratio: float = 2.0
    volume_min_principal: int = 150
    volume_min_tool: int = 100
    deny_window_s: float = 1800.0
    deny_alpha: float = 1e-6
    deny_min_k: int = 4
    deny_min_baseline: int = 200
    seq_min_total: int = 10_000
    seq_min_from: int = 200
    seq_p_rare: float = 0.001
    seq_window: int = 10
    seq_k_rare: int = 3
    iforest_window_s: float = 3600.0
    iforest_min_train: int = 300
    iforest_train_size: int = 4000
    iforest_quantile: float = 0.01
    iforest_min_events: int = 10
    iforest_margin: float = 0.06
    iforest_trees: int = 200
    iforest_max_samples: int = 512
    session_ttl_s: float = 4 * 3600.0
    principal_ttl_s: float = 30 * DAY
    max_keys: int = 200_000


def _meta(
    rule_id: str,
    title: str,
    severity: str,
    detector: str,
    tags: tuple[str, ...],
    description: str,
    runbook: str,
    group_window: float = 3600.0,
) -> RuleMeta:
    return RuleMeta(
        rule_id=rule_id,
        version=1,
        title=title,
        severity=severity,
        tags=tags,
        description=description,
        runbook=runbook,
        detector=detector,
        group_window=group_window,
        suppress_for=0.0,
    )


class StatDetector:
    name = ""
    meta: RuleMeta

    def on_event(self, rec: dict[str, Any], ts: float, tkey: str, caps: frozenset[str], emit: Emit) -> None:
        raise NotImplementedError

    def on_watermark(self, wm: float, emit: Emit) -> None:
        pass

    def flush(self, emit: Emit) -> None:
        pass

    def state(self) -> Any:
        return None

    def load(self, st: Any) -> None:
        pass


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    if not n:
        return 0.0
    m = n // 2
    return float(s[m]) if n % 2 else (s[m - 1] + s[m]) / 2.0


def _percentile(s: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default) over sorted values."""
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


# ---------------------------------------------------------------------------------------------
class VolumeShift(StatDetector):
    name = "volume"

    def __init__(self, cfg: StatsSettings) -> None:
        self.cfg = cfg
        self.meta = _meta(
            "STAT-VOLUME-001",
            "Volume shift: call volume far above the principal's usual level",
            "medium",
            "volume",
            ("anomaly", "runaway_agent", "exfiltration"),
            "Hourly tool-call count of a principal (or of one tool for a principal) far above its robust seasonal "
            "baseline: the median of the same hour of day over the last 7 days, spread by MAD and Poisson noise.",
            "1. Open the principal's timeline for the hour in the alert.\n2. Check which tools drive the volume and "
            "whether a job, migration or new workflow explains it.\n3. If not expected: look for bulk reads followed by "
            "external writes (data harvesting) or a looping agent; revoke the token if abusive.",
        )
        # key -> [bucket, count, threshold|None, expected, sigma, fired, first_day, {hod: {day: count}}, last_ts]
        self.keys: dict[tuple[str, ...], list[Any]] = {}

    def _threshold(self, st: list[Any], bucket: int, level_min: int) -> tuple[float | None, float, float]:
        day = bucket // 24
        hod = bucket % 24
        known = day - st[6]
        if known < self.cfg.volume_min_days:
            return None, 0.0, 0.0
        hist = st[7].get(hod, {})
        days = range(max(st[6], day - 7), day)
        counts = [float(hist.get(d, 0)) for d in days]
        med = _median(counts)
        mad = _median([abs(c - med) for c in counts]) * 1.4826
        sigma = math.sqrt(med + mad * mad + 1.0)
        busy = _percentile(sorted(st[9]), 0.95) if st[9] else 0.0
        thr = max(float(level_min), med + self.cfg.volume_z * sigma, self.cfg.volume_ratio * busy)
        st[10] = busy
        return thr, med, sigma

    def _bump(self, key: tuple[str, ...], ts: float, rec: dict[str, Any], level_min: int, emit: Emit) -> None:
        bucket = int(ts // 3600)
        st = self.keys.get(key)
        if st is None:
            st = self.keys[key] = [bucket, 0, None, 0.0, 1.0, False, bucket // 24, {}, ts, deque(maxlen=168), 0.0]
            st[2], st[3], st[4] = self._threshold(st, bucket, level_min)
        elif bucket != st[0]:
            if bucket > st[0]:
                old_day, old_hod = st[0] // 24, st[0] % 24
                h = st[7].setdefault(old_hod, {})
                h[old_day] = h.get(old_day, 0) + st[1]
                if st[1]:
                    st[9].append(st[1])
                for d in [d for d in h if d < bucket // 24 - 8]:
                    del h[d]
                st[0], st[1], st[5] = bucket, 0, False
                st[2], st[3], st[4] = self._threshold(st, bucket, level_min)
            else:  # late event for an older bucket: count it into the history only
                h = st[7].setdefault(bucket % 24, {})
                h[bucket // 24] = h.get(bucket // 24, 0) + 1
                return
        st[1] += 1
        st[8] = ts
        thr = st[2]
        if thr is not None and not st[5] and st[1] >= thr:
            st[5] = True
            med, sigma = st[3], st[4]
            who = "|".join(f"{n}={v}" for n, v in zip(("principal", "tool"), key, strict=False))
            ctx = {
                "level": "principal" if len(key) == 1 else "principal_tool",
                "hour_start": bucket * 3600,
                "threshold": round(thr, 2),
                "typical_busy_hour": round(st[10], 2),
                "baseline": "median of the same hour of day over the last 7 days; threshold also >= "
                f"{self.cfg.volume_ratio}x the 95th percentile of active hours",
            }
            if len(key) > 1:
                ctx["tool"] = key[1]
            emit(
                Match(
                    self.meta,
                    ts,
                    f"{self.meta.rule_id}|{who}",
                    [rec],
                    ctx,
                    score=round((st[1] - med) / sigma, 3),
                    actual=float(st[1]),
                    expected=round(med, 3),
                )
            )

    def on_event(self, rec: dict[str, Any], ts: float, tkey: str, caps: frozenset[str], emit: Emit) -> None:
        p = rec.get("principal") or ""
        self._bump((p,), ts, rec, self.cfg.volume_min_principal, emit)
        self._bump((p, tkey), ts, rec, self.cfg.volume_min_tool, emit)

    def on_watermark(self, wm: float, emit: Emit) -> None:
        lo = wm - self.cfg.principal_ttl_s
        for k in [k for k, st in self.keys.items() if st[8] < lo]:
            del self.keys[k]

    def state(self) -> Any:
        return [
            [
                list(k),
                st[:7]
                + [{str(h): {str(d): c for d, c in v.items()} for h, v in st[7].items()}, st[8], list(st[9]), st[10]],
            ]
            for k, st in self.keys.items()
        ]

    def load(self, st: Any) -> None:
        self.keys = {}
        for k, v in st or []:
            v[7] = {int(h): {int(d): c for d, c in dd.items()} for h, dd in v[7].items()}
            v[9] = deque(v[9], maxlen=168)
            self.keys[tuple(k)] = v


# ---------------------------------------------------------------------------------------------
class DenyRatio(StatDetector):
    name = "deny_ratio"
    BUCKET = 300.0

    def __init__(self, cfg: StatsSettings) -> None:
        self.cfg = cfg
        self.nb = max(1, int(cfg.deny_window_s // self.BUCKET))
        self.decay = 0.5 ** (self.BUCKET / (7 * DAY))
        self.meta = _meta(
            "STAT-DENY-RATIO-001",
            "Deny-ratio spike: authorization denials far above the principal's own rate",
            "high",
            "deny_ratio",
            ("authz_abuse", "anomaly"),
            "One-sided binomial test of the denied calls of a principal in a 30 minute sliding window against the "
            "principal's own long-run deny rate (Beta-smoothed, 7-day half-life). Fires when P(X >= k) < alpha.",
            "1. List the principal's denied calls in the window: which scopes and tools?\n2. A misconfigured scope "
            "after a deploy denies every call of one tool; scope probing or a hijacked agent tries many.\n3. If not "
            "explained: suspend the token, review the session transcripts for injected instructions.",
            1800.0,
        )
        # principal -> [buckets deque[[b, n, k, recs]], win_n, win_k, base_n, base_k, fired_until_bucket, last_ts]
        self.p: dict[str, list[Any]] = {}

    def on_event(self, rec: dict[str, Any], ts: float, tkey: str, caps: frozenset[str], emit: Emit) -> None:
        key = rec.get("principal") or ""
        b = int(ts // self.BUCKET)
        st = self.p.get(key)
        if st is None:
            st = self.p[key] = [deque(), 0, 0, 0.0, 0.0, -1, ts]
        dq = st[0]
        st[6] = ts
        while dq and dq[0][0] <= b - self.nb:
            ob, n, k, _ = dq.popleft()
            st[1] -= n
            st[2] -= k
            st[3] = st[3] * self.decay + n
            st[4] = st[4] * self.decay + k
        if not dq or dq[-1][0] < b:
            dq.append([b, 0, 0, []])
            cur = dq[-1]
        else:
            cur = dq[-1]
            if cur[0] != b:  # late event: count it in the newest bucket
                pass
        denied = rec.get("decision") == "deny" or rec.get("result") == "denied"
        cur[1] += 1
        st[1] += 1
        if not denied:
            return
        cur[2] += 1
        st[2] += 1
        if len(cur[3]) < 10:
            cur[3].append(rec)
        n, k = st[1], st[2]
        if k < self.cfg.deny_min_k or st[3] < self.cfg.deny_min_baseline or b <= st[5]:
            return
        p0 = (st[4] + 0.5) / (st[3] + 50.5)
        pv = float(bdtrc(k - 1, n, p0))
        if pv < self.cfg.deny_alpha:
            st[5] = b + self.nb
            recs = [r for x in dq for r in x[3]]
            score = -math.log10(max(pv, 1e-300))
            emit(
                Match(
                    self.meta,
                    ts,
                    f"{self.meta.rule_id}|principal={key}",
                    recs[-20:],
                    {
                        "denied": k,
                        "calls": n,
                        "window_s": self.cfg.deny_window_s,
                        "p_value": pv,
                        "baseline_calls": round(st[3], 1),
                        "test": "binomial, one-sided",
                    },
                    score=round(score, 3),
                    actual=round(k / n, 4),
                    expected=round(p0, 5),
                )
            )

    def on_watermark(self, wm: float, emit: Emit) -> None:
        lo = wm - self.cfg.principal_ttl_s
        for k in [k for k, st in self.p.items() if st[6] < lo]:
            del self.p[k]

    def state(self) -> Any:
        return [
            [k, [[b, n, kk, [slim(r) for r in recs]] for b, n, kk, recs in st[0]]] + st[1:] for k, st in self.p.items()
        ]

    def load(self, st: Any) -> None:
        self.p = {}
        for row in st or []:
            self.p[row[0]] = [deque(row[1])] + row[2:]


# ---------------------------------------------------------------------------------------------
class RareSequence(StatDetector):
    name = "rare_sequence"

    def __init__(self, cfg: StatsSettings) -> None:
        self.cfg = cfg
        self.meta = _meta(
            "STAT-RARE-SEQ-001",
            "Rare tool sequence: a session hops between tools in improbable ways",
            "medium",
            "rare_sequence",
            ("anomaly", "prompt_injection", "excessive_agency"),
            "A first-order Markov model of tool transitions learned from all sessions (Laplace-smoothed). A session "
            "whose recent transitions include several with probability below p_rare scores high (sum of surprisal).",
            "1. Read the session's timeline in order: does the chain of tools make sense for the user's task?\n"
            "2. Hijacked agents hop across unrelated servers (reconnaissance). Check for untrusted content read just "
            "before the first odd hop.\n3. If malicious: end the session, rotate credentials it could reach.",
        )
        self.trans: dict[tuple[str, str], int] = {}
        self.out: dict[str, int] = {}
        self.total = 0
        # session -> [last_state, deque[(surprisal|None, rec)], last_ts]
        self.sess: dict[str, list[Any]] = {}
        self.alpha = 0.1

    def on_event(self, rec: dict[str, Any], ts: float, tkey: str, caps: frozenset[str], emit: Emit) -> None:
        sid = rec.get("session") or ""
        st = self.sess.get(sid)
        if st is None:
            self.sess[sid] = [tkey, deque(maxlen=self.cfg.seq_window), ts]
            return
        prev = st[0]
        st[0] = tkey
        st[2] = ts
        ring = st[1]
        out = self.out.get(prev, 0)
        c = self.trans.get((prev, tkey), 0)
        rare = None
        if self.total >= self.cfg.seq_min_total and out >= self.cfg.seq_min_from:
            p = (c + self.alpha) / (out + self.alpha * max(len(self.out), 1))
            if p < self.cfg.seq_p_rare:
                rare = -math.log(p)
        ring.append((rare, rec, prev))
        self.trans[(prev, tkey)] = c + 1
        self.out[prev] = out + 1
        self.total += 1
        if rare is not None:
            hits = [x for x in ring if x[0] is not None]
            if len(hits) >= self.cfg.seq_k_rare:
                score = sum(x[0] for x in hits)
                emit(
                    Match(
                        self.meta,
                        ts,
                        f"{self.meta.rule_id}|session={sid}",
                        [x[1] for x in ring],
                        {
                            "rare_transitions": [
                                [x[2], x[1].get("server", "") + "/" + x[1].get("tool", ""), round(x[0], 2)]
                                for x in hits
                            ],
                            "window": self.cfg.seq_window,
                            "model_transitions": self.total,
                        },
                        score=round(score, 3),
                        actual=float(len(hits)),
                        expected=float(self.cfg.seq_k_rare),
                    )
                )
                ring.clear()

    def on_watermark(self, wm: float, emit: Emit) -> None:
        lo = wm - self.cfg.session_ttl_s
        for k in [k for k, st in self.sess.items() if st[2] < lo]:
            del self.sess[k]

    def state(self) -> Any:
        return {
            "trans": [[a, b, c] for (a, b), c in self.trans.items()],
            "total": self.total,
            "sess": [[k, st[0], [[r, slim(rec), pv] for r, rec, pv in st[1]], st[2]] for k, st in self.sess.items()],
        }

    def load(self, st: Any) -> None:
        st = st or {}
        self.trans = {}
        self.out = {}
        for a, b, c in st.get("trans", []):
            self.trans[(a, b)] = c
            self.out[a] = self.out.get(a, 0) + c
        self.total = st.get("total", 0)
        self.sess = {
            k: [s, deque([tuple(x) for x in ring], maxlen=self.cfg.seq_window), t]
            for k, s, ring, t in st.get("sess", [])
        }


# ---------------------------------------------------------------------------------------------
FEATURES = (
    "log_calls",
    "distinct_tools",
    "distinct_servers",
    "deny_ratio",
    "error_ratio",
    "log_result_bytes",
    "new_tools",
    "hour_rarity",
    "log_external_writes",
    "log_risky_calls",
    "sessions",
)


class IsolationForestDetector(StatDetector):
    name = "isolation_forest"

    def __init__(self, cfg: StatsSettings) -> None:
        self.cfg = cfg
        self.meta = _meta(
            "STAT-IFOREST-001",
            "Multivariate outlier: a principal's hour of activity unlike anything seen",
            "medium",
            "isolation_forest",
            ("anomaly",),
            "IsolationForest over per-(principal, hour) features (calls, distinct tools and servers, deny and error "
            "ratios, result bytes, first-time tools, how unusual the hour of day is for the principal, external writes, "
            "risky calls, sessions), retrained "
            "daily on recent history. Alerts name the features that contribute most (perturbation to the median).",
            "1. Read the top features in the alert context: they say what is unusual.\n2. Open the principal's "
            "timeline for that hour.\n3. Off-hours activity with many new tools, denials or errors suggests a stolen "
            "token or a hijacked agent: confirm with the owner, revoke if unexplained.",
            3 * 3600.0,
        )
        self.win: dict[
            str, list[Any]
        ] = {}  # principal -> [wstart, n, tools, servers, deny, err, bytes, new, ext, risky, sessions, first recs, last recs]
        self.known: dict[str, dict[str, float]] = {}  # principal -> tool -> first seen
        self.hours: dict[str, list[int]] = {}
        self.first_seen: dict[str, float] = {}
        self.reservoir: deque[list[float]] = deque(maxlen=cfg.iforest_train_size)
        self.pending: list[tuple[str, float, list[float], list[dict[str, Any]]]] = []
        self.train: list[list[float]] = []
        self.model: Any = None
        self.threshold = 0.0
        self.medians: np.ndarray | None = None
        self.model_day = -1
        self.last_wm_hour = -1

    def _close(self, principal: str, w: list[Any]) -> None:
        n = w[1]
        hour = int(w[0] // 3600) % 24
        hist = self.hours.get(principal)
        if hist is None:
            hist = self.hours[principal] = [0] * 24
        total = sum(hist)
        # how unusual this hour of day is for this principal (0 = its busiest kind of hour)
        rarity = math.log((total + 24) / (hist[hour] + 1)) if total >= 100 else 0.0
        hist[hour] += n
        first = self.first_seen.setdefault(principal, w[0])
        if w[0] - first < DAY:  # the principal's first day: every tool is new, nothing to learn or score
            return
        # tools the principal used for the first time in this window or the one before it
        kn = self.known.get(principal, {})
        lo = w[0] - self.cfg.iforest_window_s
        w[7] = sum(1 for t in w[2] if kn.get(t, lo) > lo)
        f = [
            math.log1p(n),
            float(len(w[2])),
            float(len(w[3])),
            w[4] / n,
            w[5] / n,
            math.log1p(w[6]),
            float(w[7]),
            rarity,
            math.log1p(w[8]),
            math.log1p(w[9]),
            float(len(w[10])),
        ]
        self.reservoir.append(f)
        if self.model is not None and n >= self.cfg.iforest_min_events:
            self.pending.append((principal, w[0], f, list(w[11]) + list(w[12])))

    def on_event(self, rec: dict[str, Any], ts: float, tkey: str, caps: frozenset[str], emit: Emit) -> None:
        p = rec.get("principal") or ""
        ws = ts - ts % self.cfg.iforest_window_s
        w = self.win.get(p)
        if w is None or ws > w[0]:
            if w is not None:
                self._close(p, w)
            w = self.win[p] = [ws, 0, set(), set(), 0, 0, 0, 0, 0, 0, set(), [], deque(maxlen=5)]
        w[1] += 1
        w[2].add(tkey)
        w[3].add(rec.get("server") or "")
        if rec.get("decision") == "deny":
            w[4] += 1
        if rec.get("result") in ("error", "timeout"):
            w[5] += 1
        rb = rec.get("result_bytes")
        if rb:
            w[6] += rb
        kn = self.known.get(p)
        if kn is None:
            kn = self.known[p] = {}
        if tkey not in kn and len(kn) < 1000:
            kn[tkey] = ts
        if "writes_external" in caps or "network_egress" in caps:
            w[8] += 1
        if "destructive" in caps or "executes_code" in caps or "credential_access" in caps:
            w[9] += 1
        w[10].add(rec.get("session") or "")
        if len(w[11]) < 5:
            w[11].append(rec)
        else:
            w[12].append(rec)

    def on_watermark(self, wm: float, emit: Emit) -> None:
        hour = int(wm // 3600)
        if hour != self.last_wm_hour:
            self.last_wm_hour = hour
            lo = wm - 2 * self.cfg.iforest_window_s
            for p in [p for p, w in self.win.items() if w[0] < lo]:
                self._close(p, self.win.pop(p))
        day = int(wm // DAY)
        if day > self.model_day and len(self.reservoir) >= self.cfg.iforest_min_train:
            self.flush(emit)
            self.model_day = day
            self.train = [list(x) for x in self.reservoir]
            self._fit()
        if len(self.known) > self.cfg.max_keys:
            for k in list(self.known)[: len(self.known) - self.cfg.max_keys]:
                del self.known[k]
                self.hours.pop(k, None)
                self.first_seen.pop(k, None)

    def _fit(self) -> None:
        from sklearn.ensemble import IsolationForest

        x = np.asarray(self.train, dtype=float)
        self.model = IsolationForest(
            n_estimators=self.cfg.iforest_trees, max_samples=min(self.cfg.iforest_max_samples, len(x)), random_state=0
        )
        self.model.fit(x)
        scores = self.model.score_samples(x)
        self.threshold = float(np.quantile(scores, self.cfg.iforest_quantile)) - self.cfg.iforest_margin
        self.medians = np.median(x, axis=0)

    def flush(self, emit: Emit) -> None:
        if not self.pending or self.model is None:
            self.pending.clear()
            return
        pend, self.pending = self.pending, []
        x = np.asarray([f for _, _, f, _ in pend], dtype=float)
        scores = self.model.score_samples(x)
        for (p, ws, f, recs), s in zip(pend, scores, strict=True):
            if s >= self.threshold:
                continue
            xs = np.repeat(np.asarray([f], dtype=float), len(FEATURES), axis=0)
            for j in range(len(FEATURES)):
                xs[j, j] = self.medians[j]  # type: ignore[index]
            contrib = self.model.score_samples(xs) - s
            order = np.argsort(-contrib)[:3]
            top = [
                {
                    "feature": FEATURES[j],
                    "value": round(f[j], 4),
                    "median": round(float(self.medians[j]), 4),  # type: ignore[index]
                    "contribution": round(float(contrib[j]), 4),
                }
                for j in order
            ]
            t_alert = ws + self.cfg.iforest_window_s  # the window's end: the earliest it can be scored
            emit(
                Match(
                    self.meta,
                    t_alert,
                    f"{self.meta.rule_id}|principal={p}",
                    recs,
                    {
                        "window_start": ws,
                        "window_s": self.cfg.iforest_window_s,
                        "top_features": top,
                        "features": dict(zip(FEATURES, [round(v, 4) for v in f], strict=True)),
                    },
                    score=round(float(-s), 4),
                    actual=round(float(-s), 4),
                    expected=round(float(-self.threshold), 4),
                )
            )

    def state(self) -> Any:
        return {
            "win": [
                [p, w[0], w[1], sorted(w[2]), sorted(w[3])]
                + w[4:10]
                + [sorted(w[10]), [slim(r) for r in w[11]], [slim(r) for r in w[12]]]
                for p, w in self.win.items()
            ],
            "known": self.known,
            "hours": self.hours,
            "first_seen": self.first_seen,
            "reservoir": list(self.reservoir),
            "train": self.train,
            "model_day": self.model_day,
            "last_wm_hour": self.last_wm_hour,
            "pending": [[p, ws, f, [slim(r) for r in recs]] for p, ws, f, recs in self.pending],
        }

    def load(self, st: Any) -> None:
        st = st or {}
        self.win = {}
        for row in st.get("win", []):
            p = row[0]
            self.win[p] = (
                [row[1], row[2], set(row[3]), set(row[4])]
                + row[5:11]
                + [set(row[11]), row[12], deque(row[13], maxlen=5)]
            )
        self.known = {p: dict(k) for p, k in st.get("known", {}).items()}
        self.hours = {p: list(h) for p, h in st.get("hours", {}).items()}
        self.first_seen = dict(st.get("first_seen", {}))
        self.reservoir = deque(st.get("reservoir", []), maxlen=self.cfg.iforest_train_size)
        self.train = st.get("train", [])
        self.model_day = st.get("model_day", -1)
        self.last_wm_hour = st.get("last_wm_hour", -1)
        self.pending = [(p, ws, f, recs) for p, ws, f, recs in st.get("pending", [])]
        self.model = None
        if self.train:
            self._fit()


def default_detectors(cfg: StatsSettings, enabled: list[str] | None = None) -> list[StatDetector]:
    all_ = [VolumeShift(cfg), DenyRatio(cfg), RareSequence(cfg), IsolationForestDetector(cfg)]
    return [d for d in all_ if enabled is None or d.name in enabled]
