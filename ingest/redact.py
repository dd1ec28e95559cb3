"""Secret redaction for tool-call events, before anything is hashed or written.

    r = Redactor.from_settings(settings.redaction, layout.keys)
    fields2, counts = r.redact_fields(fields)   # new dict, {type: count}
    text2, counts = r.redact_text(raw)          # any free text (quarantine, log messages)

A secret becomes `[REDACTED:<type>:<fingerprint>]`; the fingerprint is the first
`fingerprint_chars` (default 12) hex characters of HMAC-SHA256(key, "<type>:<secret>"), so
the same secret gives the same marker in every event (also when it arrived base64- or
percent-encoded) and nothing can be learnt from a marker without the key.

How it stays fast: an event with no secret costs one `orjson.dumps` of its values plus one
RE2 Set scan (a DFA over the bytes) of gate patterns. Only when a gate fires do we look
closer: token formats, base64 and percent-encoding are confirmed on the event's JSON text
(still no walk), and only keyword hits or confirmed findings walk the event, join its
strings with NUL and run the few detectors whose gate fired, once, over the joined text.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import re2

from ingest import redact_patterns as P

if TYPE_CHECKING:
    from ingest.settings import RedactionSettings

KEY_FILE_NAME = "redaction.key"
KEY_BYTES = 32
MAX_ENCODING_DEPTH = 2  # base64 inside percent-encoding, and so on
MAX_NESTING = 256
_SEP = "\x00"
_MIN_KEY_SCAN = 10  # dict keys shorter than this cannot hold a detectable secret

PRIO_PROTECTED = 1000
PRIO_USER = 75
PRIO_ENCODED = 62
PRIO_ASSIGN = 50
PRIO_HE = 20

# Types whose finding inside a secret-named value is trusted to cover the secret part
# (the rest of the value - host, BEGIN/END lines - is structure, not secret).
_STRUCTURAL = frozenset({"url_credentials", "slack_webhook", "private_key"})
_STRONG_TYPES = frozenset({"aws_access_key", "github_token", "gitlab_token", "slack_token", "slack_webhook",
                           "stripe_key", "anthropic_key", "google_api_key", "google_oauth_secret"})
_LEFTOVER_OK = re.compile(
    r"(?i)^[\s\"'`:=,;]*(?:(?:bearer|basic|token|digest|negotiate|ntlm|apikey|key|sso-key)[\s:=]*)?[\s\"'`,;]*$")
MARKER_RE = re.compile(P.MARKER_PATTERN)
_MARKER_FULL = re.compile(r"^" + P.MARKER_PATTERN + r"$")
# Keys whose value inherits the secret-ness of the enclosing key: {"password": {"value": "…"}}
_INHERIT_KEYS = frozenset({"value", "data", "plain", "plaintext", "raw", "text", "string", "current", "new", "old",
                           "previous", "secret"})
_SURROGATES = re.compile("[\ud800-\udfff]")
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_JSON_ESC = re.compile(r'\\(?:u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_JSON_ESC_MAP = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

Finding = tuple[int, int, int, tuple[tuple[str, str], ...]]  # start, end, priority, ((type, secret), …)


class RedactionKeyError(Exception):
    """The HMAC key file is missing, malformed or too widely readable. Never carries key bytes."""


# --------------------------------------------------------------------------- key file


def load_or_create_key(path: Path, *, strict_mode: bool) -> bytes:
    """Read the HMAC key at `path`, creating 32 random bytes (mode 0600, atomically) if absent.

    `strict_mode`: a group/world-accessible file is an error (a user-supplied key);
    otherwise (our own default file) the mode is tightened to 0600."""
    path = Path(path)
    if not path.exists():
        _create_key_file(path)
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            if strict_mode:
                raise RedactionKeyError(f"redaction key file {path} is accessible by group/others; run: chmod 600 {path}")
            os.chmod(path, 0o600)
        with open(path, "rb") as fh:
            data = fh.read(4096)
    except OSError as e:
        raise RedactionKeyError(f"cannot read redaction key file {path}: {e.strerror}") from None
    if len(data) == KEY_BYTES:
        return data
    text = data.strip()
    if len(text) >= 32 and re.fullmatch(rb"[0-9a-fA-F]+", text) and len(text) % 2 == 0:
        return bytes.fromhex(text.decode())
    raise RedactionKeyError(f"redaction key file {path} must hold {KEY_BYTES} random bytes (or >= 32 hex characters)")


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic "create if absent": a concurrent creator's key wins, never a torn file
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class _Det:
    kind: str  # simple | assign | flag | he | b64 | pct | marker | user
    type: str
    rx: Any
    group: int | str = 1
    prio: int = 50
    validate: Any = None
    self_confirming: bool = False
    keywords: tuple[str, ...] = ()
    entropy: float | None = None


try:  # the bytes-level entry point of google-re2; the public wrapper re-encodes str on every call
    _UNANCHORED = re2._Anchor.UNANCHORED
    _NULL = re2._NULL_SPAN
    re2.compile("a")._regexp.Match(_UNANCHORED, b"a", 0, 1)
    _FAST = True
except Exception:  # pragma: no cover - other google-re2 versions
    _FAST = False


class _SM:
    """A match on ASCII text (byte offsets == str offsets)."""

    __slots__ = ("spans", "text", "accepted")

    def __init__(self, spans: list[tuple[int, int]], text: str) -> None:
        self.spans = spans
        self.text = text
        self.accepted = False

    def group(self, g: int = 0) -> str | None:
        a, b = self.spans[g]
        return None if a < 0 else self.text[a:b]

    def start(self, g: int = 0) -> int:
        return self.spans[g][0]

    def end(self, g: int = 0) -> int:
        return self.spans[g][1]


def _search(rx: Any, text: str, raw: bytes | None, pos: int = 0) -> Any:
    """rx.search(text, pos); `raw` is text.encode() when text is ASCII, else None."""
    if raw is not None and _FAST:
        if pos > len(raw):
            return None
        spans = rx._regexp.Match(_UNANCHORED, raw, pos, len(raw))
        return None if spans[0] == _NULL else _SM(spans, text)
    m = rx.search(text, pos)
    return None if m is None else _M(m)


def _finditer(rx: Any, text: str, raw: bytes | None) -> Iterable[Any]:
    if raw is None or not _FAST:
        yield from rx.finditer(text)
        return
    n = len(raw)
    pos = 0
    match = rx._regexp.Match
    while pos <= n:
        spans = match(_UNANCHORED, raw, pos, n)
        if spans[0] == _NULL:
            return
        yield _SM(spans, text)
        e = spans[0][1]
        pos = e if e > pos else pos + 1


def _user_rule_group(rx: Any) -> int | str:
    if "secret" in rx.groupindex:
        return rx.groupindex["secret"]
    return 1 if rx.groups >= 1 else 0


class Redactor:
    """Finds secrets in events and free text and replaces them with keyed-HMAC markers.

    Stateless after construction and safe to share between threads."""

    def __init__(
        self,
        key: bytes,
        *,
        rules: Iterable[Any] = (),
        allowlist: Iterable[str] = (),
        disabled_types: Iterable[str] = (),
        secret_keys: Iterable[str] = (),
        safe_keys: Iterable[str] = (),
        fingerprint_chars: int = 12,
        entropy_threshold: float = 3.0,
    ) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) < 16:
            raise RedactionKeyError("redaction key must be at least 16 bytes")
        if not 8 <= fingerprint_chars <= 64:
            raise ValueError("fingerprint_chars must be between 8 and 64")
        self._key = bytes(key)
        k = self._key if len(self._key) <= 64 else hashlib.sha256(self._key).digest()
        k = k.ljust(64, b"\0")
        self._hmac_inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
        self._hmac_outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))
        self.key_id = hashlib.sha256(b"tooltrail redaction key id\x00" + self._key).hexdigest()[:12]
        self.fingerprint_chars = fingerprint_chars
        self._entropy = entropy_threshold
        self._allow = frozenset(allowlist)
        disabled = frozenset(disabled_types)
        self._disabled_kinds = disabled & {P.PASSWORD_KIND, P.SECRET_KIND}
        self._secret_keys = frozenset(_norm_key(k) for k in secret_keys)
        self._safe_keys = frozenset(_norm_key(k) for k in safe_keys)
        self._key_cache: dict[str, str | None] = {}

        dets: list[_Det] = []
        gates: list[tuple[str, int]] = []  # (gate pattern, det index)

        def add(det: _Det, gate: str | None) -> None:
            dets.append(det)
            if gate is not None:
                gates.append((gate, len(dets) - 1))

        add(_Det("marker", "", P.compile_re2(P.MARKER_PATTERN), 0, PRIO_PROTECTED), re2.escape("[REDACTED:"))
        for spec in P.BUILTIN:
            if spec.type in disabled:
                continue
            add(_Det("simple", spec.type, P.compile_re2(spec.pattern), spec.group, spec.prio, spec.validate,
                     spec.self_confirming), _gate_for(spec))
        kw_dets = []
        if "password" not in disabled or "secret_field" not in disabled:
            kw_dets.append(_Det("assign", "", P.compile_re2(P.ASSIGN_PATTERN), 0, PRIO_ASSIGN))
            kw_dets.append(_Det("flag", "", P.compile_re2(P.FLAG_PATTERN), 0, PRIO_ASSIGN))
        if "high_entropy" not in disabled:
            kw_dets.append(_Det("he", "high_entropy", P.compile_re2(P.HE_PATTERN), 2, PRIO_HE))
        for d in kw_dets:
            add(d, P.KEYWORD_GATE)
        add(_Det("b64", "", P.compile_re2(P.B64_CANDIDATE), 0, PRIO_ENCODED), P.B64_GATE)
        add(_Det("pct", "", None, 0, PRIO_ENCODED), P.PCT_GATE)
        if secret_keys:  # configured key names must also get the event walked
            add(_Det("keyname", "", None, 0, 0), "|".join(
                "(?i)" + P._S.join(re2.escape(w) for w in P._WORDS.findall(k)) for k in secret_keys if P._WORDS.findall(k)))
        self._user_unkeyed: list[int] = []
        for rule in rules:
            rx = P.compile_re2(rule.regex)
            kws = tuple(k.lower() for k in rule.keywords)
            det = _Det("user", rule.name, rx, _user_rule_group(rx), PRIO_USER, None, False, kws, rule.entropy)
            if kws:
                add(det, "(?i)" + "|".join(re2.escape(k) for k in kws))
            else:
                add(det, rule.regex)
                self._user_unkeyed.append(len(dets) - 1)
        self._dets = tuple(dets)
        self._b64_gate = P.compile_re2(P.B64_GATE)
        self._b64_cand = P.compile_re2(P.B64_CANDIDATE)
        self._pct_token = P.compile_re2(P.PCT_TOKEN)
        # Gate hits on these token formats are conclusive enough: walk the event directly.
        self._strong = frozenset(i for i, d in enumerate(self._dets) if d.type in _STRONG_TYPES)

        # One RE2 Set over all gates. Identical gate patterns share one slot.
        self._set = re2.Set.SearchSet(P.RE2_OPTIONS)
        slots: dict[str, int] = {}
        slot_dets: list[list[int]] = []
        for pat, di in gates:
            if pat not in slots:
                slots[pat] = self._set.Add(pat)
                slot_dets.append([])
            slot_dets[slots[pat]].append(di)
        self._set.Compile()
        self._slot_dets = tuple(tuple(x) for x in slot_dets)
        self._midpath_ok = frozenset(
            i for i, d in enumerate(self._dets) if d.self_confirming or d.kind in ("b64", "pct"))

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_settings(cls, settings: RedactionSettings, keys_dir: Path | str) -> Redactor:
        """Build from config. The key is `settings.key_file` or `<keys_dir>/redaction.key`,
        created (32 random bytes, 0600, atomically) on first use."""
        if settings.key_file:
            key = load_or_create_key(Path(settings.key_file).expanduser(), strict_mode=True)
        else:
            keys_dir = Path(keys_dir)
            keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = load_or_create_key(keys_dir / KEY_FILE_NAME, strict_mode=False)
        return cls(
            key,
            rules=settings.rules,
            allowlist=settings.allowlist,
            disabled_types=getattr(settings, "disabled_types", ()),
            secret_keys=getattr(settings, "secret_keys", ()),
            safe_keys=getattr(settings, "safe_keys", ()),
            fingerprint_chars=getattr(settings, "fingerprint_chars", 12),
            entropy_threshold=getattr(settings, "entropy_threshold", 3.0),
        )

    # ----------------------------------------------------------------- markers

    def fingerprint(self, type_: str, secret: str) -> str:
        """First `fingerprint_chars` hex chars of HMAC-SHA256(key, "<type>:<secret>")."""
        msg = f"{type_}:{secret}".encode("utf-8", "surrogatepass")
        inner = self._hmac_inner.copy()  # RFC 2104 with the padded-key states precomputed:
        inner.update(msg)  # hmac.new() pays an OpenSSL algorithm fetch on every call
        outer = self._hmac_outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()[: self.fingerprint_chars]

    def marker(self, type_: str, secret: str) -> str:
        return f"[REDACTED:{type_}:{self.fingerprint(type_, _norm_secret(type_, secret))}]"

    # ----------------------------------------------------------------- public API

    def redact_text(self, text: str | bytes) -> tuple[str, dict[str, int]]:
        """Redact free text. Bytes are decoded as UTF-8 (invalid bytes become U+FFFD)."""
        if isinstance(text, bytes | bytearray | memoryview):
            text = bytes(text).decode("utf-8", "replace")
        elif not isinstance(text, str):
            raise TypeError("redact_text expects str or bytes")
        found = self._scan(text, 0)
        if not found:
            return text, {}
        counts: dict[str, int] = {}
        return self._apply(text, _resolve(found), counts), counts

    def redact_fields(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """Redact one event's wire fields. Returns a new dict (the input is never mutated;
        unchanged nested containers may be shared) and {type: count}.

        `args` and `labels` are walked (keys and values, any nesting) with the key-name rule
        and all value patterns; every other string field (`error`, `reason`, identifiers)
        gets the value patterns. Numbers and booleans are never secrets by key name, but an
        integer that is a valid card number is redacted."""
        try:
            dump = orjson.dumps(list(fields.values()))
        except (TypeError, orjson.JSONEncodeError):
            dump = None
        if dump is None:
            return self._redact_fields_walk(fields, None)
        slots = self._set.Match(dump)
        # User regexes are not written to survive JSON escaping: with escapes in the event,
        # judge them on the real strings instead of the JSON text.
        if self._user_unkeyed and b"\\" in dump:
            return self._redact_fields_walk(fields, None)
        if not slots or self._midpath_clean(dump, slots):
            return dict(fields), {}
        return self._redact_fields_walk(fields, slots)

    def redact_many(self, batch: Sequence[dict[str, Any]], chunk: int = 16) -> list[tuple[dict[str, Any], dict[str, int]]]:
        """redact_fields for each event of a batch. One gate match over a whole chunk of
        events clears them all at once (most events hold no secret); such events come back
        as the same dict objects, not copies. Sound because no built-in gate is anchored in a
        way the neighbouring events could defeat: every `^`/`$` sits in an "or a separator
        character" group, and each event's dump is still bracketed by `[`/`,`/`]`. User
        regexes may be anchored anyhow, so with those every event is gated on its own."""
        if self._user_unkeyed:
            return [self.redact_fields(f) for f in batch]
        out: list[tuple[dict[str, Any], dict[str, int]]] = []
        for i in range(0, len(batch), chunk):
            part = batch[i:i + chunk]
            try:
                clean = not self._set.Match(orjson.dumps([list(f.values()) for f in part]))
            except (TypeError, orjson.JSONEncodeError):
                clean = False
            if clean:
                out.extend((f, {}) for f in part)
            else:
                out.extend(self.redact_fields(f) for f in part)
        return out

    def redact_value(self, value: Any) -> tuple[Any, dict[str, int]]:
        """Redact any JSON value (e.g. a parsed but invalid event) like `args`."""
        out, counts = self._redact_fields_walk({"args": value}, None)
        return out["args"], counts

    # ----------------------------------------------------------------- fast path

    def _midpath_clean(self, dump: bytes, slots: list[int]) -> bool:
        """Gate fired only for self-confirming formats / encodings: confirm on the event's
        (unescaped) JSON text. True means provably nothing to redact."""
        dets = {d for s in slots for d in self._slot_dets[s]}
        if not dets <= self._midpath_ok or not dets.isdisjoint(self._strong):
            return False
        text = dump.decode("utf-8", "replace")
        if "\\" in text:
            text = _JSON_ESC.sub(_json_unescape, text)
            if "\\" in text:  # strings that hold escapes themselves: look at both views
                text = text + _SEP + _JSON_ESC.sub(_json_unescape, text)
        raw = text.encode("ascii") if text.isascii() else None
        for di in dets:
            det = self._dets[di]
            if det.kind == "simple":
                for m in _finditer(det.rx, text, raw):
                    span = det.validate(text, m) if det.validate else (m.start(det.group), m.end(det.group))
                    if span and text[span[0]:span[1]] not in self._allow:
                        return False
            elif det.kind == "b64":
                for _a, _b, blob in self._b64_candidates(text, raw):
                    dec = _b64_any(blob)
                    if dec is not None and self._set.Match(dec):
                        return False
            elif det.kind == "pct":
                for tok in _finditer(self._pct_token, text, raw):
                    r = P.pct_decode_map(tok.group())
                    if r is not None and self._set.Match(r[0]):
                        return False
        return True

    # ----------------------------------------------------------------- walk

    def _classify(self, key: str) -> str | None:
        try:
            return self._key_cache[key]
        except KeyError:
            pass
        if self._safe_keys or self._secret_keys:
            n = _norm_key(key)
            kind = None if n in self._safe_keys else (P.SECRET_KIND if n in self._secret_keys else P.classify_key(key))
        else:
            kind = P.classify_key(key)
        if kind in self._disabled_kinds:
            kind = None
        if len(self._key_cache) > 4096:
            self._key_cache.clear()
        self._key_cache[key] = kind
        return kind

    def _redact_fields_walk(self, fields: Mapping[str, Any],
                            slots: list[int] | None) -> tuple[dict[str, Any], dict[str, int]]:
        """`slots`: the gate hits of the event's JSON (a superset of the joined strings' hits)."""
        out: dict[str, Any] = dict(fields)
        w = _Walk(self)
        for name, v in fields.items():
            t = type(v)
            if t is str:
                w.pieces.append(v)
                w.refs.append((out, name, False))
            elif t is dict or t is list:
                out[name] = w.collect(v, None, 0)
        counts: dict[str, int] = {}
        for container, key, kind, value in w.jobs:
            if kind == "card":
                counts["card_number"] = counts.get("card_number", 0) + 1
                container[key] = self.marker("card_number", str(value))
            else:
                container[key] = self._redact_secret_value(value, kind, counts)
        renames: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
        if w.pieces:
            joined = _SEP.join(w.pieces)
            found = self._scan(joined, 0, slots)
            if found:
                starts = []
                pos = 0
                for p in w.pieces:
                    starts.append(pos)
                    pos += len(p) + 1
                per_piece: dict[int, list[Finding]] = {}
                for a, b, prio, mk in _resolve(found):
                    i = bisect.bisect_right(starts, a) - 1
                    base = starts[i]
                    end = min(b, base + len(w.pieces[i]))
                    per_piece.setdefault(i, []).append((a - base, end - base, prio, mk))
                    # A finding cannot cross NUL (every class excludes it); clip defensively.
                    j = i + 1
                    while j < len(starts) and starts[j] < b:
                        per_piece.setdefault(j, []).append((0, min(len(w.pieces[j]), b - starts[j]), prio, mk))
                        j += 1
                for i, fs in per_piece.items():
                    new = self._apply(w.pieces[i], fs, counts)
                    if new == w.pieces[i]:
                        continue
                    container, key, is_key = w.refs[i]
                    if is_key:
                        renames.setdefault(id(container), (container, {}))[1][key] = new
                    else:
                        container[key] = new
        for container, mapping in renames.values():
            items = list(container.items())
            container.clear()
            for k, v in items:
                nk = mapping.get(k, k)
                while nk in container:
                    nk += "~"
                container[nk] = v
        return out, counts

    def _redact_secret_value(self, v: str, kind: str, counts: dict[str, int]) -> str:
        """A string under a secret-named key: typed findings if they cover the secret
        (`Bearer <jwt>`, a DSN's password), else the whole value becomes one marker."""
        found = self._scan(v, 0)
        if found:
            res = _resolve(found)
            types = {t for f in res for t, _ in f[3]}
            already = any(not f[3] for f in res)  # holds markers: redacted before (idempotence)
            if already or types & _STRUCTURAL or _LEFTOVER_OK.match(_leftover(v, res)):
                return self._apply(v, res, counts)
        if v in self._allow:
            return v
        counts[kind] = counts.get(kind, 0) + 1
        return self.marker(kind, v)

    # ----------------------------------------------------------------- scan

    def _scan(self, text: str, depth: int, slots: list[int] | None = None) -> list[Finding]:
        raw = text.encode("ascii") if text.isascii() else None
        if raw is None:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: same length, RE2 needs valid UTF-8
                text = _SURROGATES.sub("\ufffd", text)
        if slots is None:
            slots = self._set.Match(raw if raw is not None else text.encode("utf-8", "surrogatepass"))
        if not slots:
            return []
        dis: set[int] = {d for s in slots for d in self._slot_dets[s]}
        out: list[Finding] = []
        lower: str | None = None
        for di in sorted(dis):
            det = self._dets[di]
            k = det.kind
            if k == "simple":
                for m in _finditer(det.rx, text, raw):
                    span = det.validate(text, m) if det.validate else (m.start(det.group), m.end(det.group))
                    if span and span[1] > span[0]:
                        s = text[span[0]:span[1]]
                        if s not in self._allow:
                            out.append((span[0], span[1], det.prio, ((det.type, s),)))
            elif k == "marker":
                out.extend((m.start(), m.end(), PRIO_PROTECTED, ()) for m in _finditer(det.rx, text, raw))
            elif k == "assign" or k == "flag":
                for m in _overlapping(det.rx, text, raw):
                    r = self._assignment(text, m, k == "flag")
                    if r is not None:
                        out.append(r)
                        m.accepted = True
            elif k == "he":
                for m in _overlapping(det.rx, text, raw):
                    if self._classify(m.group(1)) is None:
                        continue
                    a, b = m.start(2), m.end(2)
                    cand = text[a:b]
                    stripped = cand.rstrip(".,;:!?-")
                    b -= len(cand) - len(stripped)
                    cand = stripped
                    if cand in self._allow or P.is_placeholder(cand) or not P.looks_random(cand, threshold=self._entropy):
                        continue
                    out.append((a, b, PRIO_HE, (("high_entropy", cand),)))
                    m.accepted = True
            elif k == "b64":
                if depth >= MAX_ENCODING_DEPTH:
                    continue
                strong = [(f[0], f[1]) for f in out if f[2] > PRIO_ENCODED]
                for a, b, blob in self._b64_candidates(text, raw):
                    if any(x < b and a < y for x, y in strong):
                        continue  # inside a token already found (a JWT segment): it would lose anyway
                    dec = _b64_any(blob)
                    if dec is None:
                        continue
                    inner = [f for f in _resolve(self._scan(dec, depth + 1)) if f[3]]
                    if inner:
                        markers = tuple(x for f in inner for x in f[3])
                        out.append((a, b, PRIO_ENCODED, markers))
            elif k == "pct":
                if depth >= MAX_ENCODING_DEPTH:
                    continue
                for tok in _finditer(self._pct_token, text, raw):
                    base = tok.start()
                    r = P.pct_decode_map(text[base:tok.end()])
                    if r is None:
                        continue
                    dec, offs = r
                    for a, b, prio, mk in _resolve(self._scan(dec, depth + 1)):
                        if mk:
                            out.append((base + offs[a], base + offs[b], prio, mk))
            elif k == "user":
                if det.keywords:
                    lower = text.lower() if lower is None else lower
                    if not any(kw in lower for kw in det.keywords):
                        continue
                for m in _finditer(det.rx, text, raw):
                    a, b = m.start(det.group), m.end(det.group)
                    if a < 0 or b <= a:
                        continue
                    s = text[a:b]
                    if s in self._allow or (det.entropy is not None and P.shannon_entropy(s) < det.entropy):
                        continue
                    out.append((a, b, PRIO_USER, ((det.type, s),)))
        if depth < MAX_ENCODING_DEPTH and "\\" in text:
            # Text that is itself JSON (quarantined input) or holds escaped strings: scan the
            # unescaped view too, so "\nAKIA…" is seen as a token at a line start.
            r = _json_unescape_map(text)
            if r is not None:
                dec, offs = r
                for a, b, prio, mk in _resolve(self._scan(dec, depth + 1)):
                    if mk:
                        out.append((offs[a], offs[b], prio, mk))
        return out

    def _b64_candidates(self, text: str, raw: bytes | None) -> Iterable[tuple[int, int, str]]:
        """Base64 runs that contain a gate hit (ASCII-text quads), as (start, end, run)."""
        end = -1
        for g in _finditer(self._b64_gate, text, raw):
            if g.start() < end:
                continue
            a = g.start()
            while a > 0 and text[a - 1] in _B64_CHARS:
                a -= 1
            m = _search(self._b64_cand, text, raw, a)
            if m is None:
                continue
            end = m.end()
            yield m.start(), m.end(), m.group()

    def _assignment(self, text: str, m: Any, flag: bool) -> Finding | None:
        key = m.group(1)
        if self._classify(key) is None and not (self._secret_keys and _norm_key(key) in self._secret_keys):
            return None
        r = P.assignment_findings(text, m, flag=flag)
        if r is None:
            return None
        kind, a, b = r
        kind = self._classify(key) or kind
        s = text[a:b]
        if s in self._allow:
            return None
        return (a, b, PRIO_ASSIGN, ((kind, s),))

    def _apply(self, text: str, found: list[Finding], counts: dict[str, int]) -> str:
        parts: list[str] = []
        pos = 0
        for a, b, _prio, mk in found:
            if not mk or a < pos:
                continue
            parts.append(text[pos:a])
            for t, s in mk:
                parts.append(self.marker(t, s))
                counts[t] = counts.get(t, 0) + 1
            pos = b
        if not parts:
            return text
        parts.append(text[pos:])
        return "".join(parts)


class _Walk:
    """Copies `args`-like values and collects their strings for one joined scan."""

    __slots__ = ("r", "pieces", "refs", "jobs")

    def __init__(self, r: Redactor) -> None:
        self.r = r
        self.pieces: list[str] = []
        self.refs: list[tuple[Any, Any, bool]] = []
        self.jobs: list[tuple[Any, Any, str, Any]] = []

    def collect(self, v: Any, ctx: str | None, depth: int) -> Any:
        if depth > MAX_NESTING:
            raise ValueError("value nested too deeply to redact")
        t = type(v)
        if t is dict:
            nd: dict[Any, Any] = {}
            har = None
            if "value" in v:  # [{"name": "Authorization", "value": "…"}] (HAR / header lists)
                nm = v.get("name", v.get("key", v.get("header")))
                if type(nm) is str:
                    har = self.r._classify(nm)
            for k, item in v.items():
                kctx = self.r._classify(k) if type(k) is str else None
                if kctx is None:
                    if k == "value" and har:
                        kctx = har
                    elif ctx is not None and k in _INHERIT_KEYS:
                        kctx = ctx
                nd[k] = item
                self._item(nd, k, item, kctx, depth)
                if type(k) is str and len(k) >= _MIN_KEY_SCAN:
                    self.pieces.append(k)
                    self.refs.append((nd, k, True))
            return nd
        if t is list:
            nl = list(v)
            for i, item in enumerate(v):
                self._item(nl, i, item, ctx, depth)
            return nl
        return v

    def _item(self, container: Any, key: Any, item: Any, ctx: str | None, depth: int) -> None:
        t = type(item)
        if t is str:
            if ctx is not None and not _skip_secret_value(item, self.r._allow):
                self.jobs.append((container, key, ctx, item))
            else:
                self.pieces.append(item)
                self.refs.append((container, key, False))
        elif t is dict or t is list:
            container[key] = self.collect(item, ctx, depth + 1)
        elif t is int and 10**12 <= abs(item) < 10**19 and P.card_number_ok(str(abs(item))):
            self.jobs.append((container, key, "card", abs(item)))


# --------------------------------------------------------------------------- helpers


def _gate_for(spec: P.Spec) -> str:
    """A small literal-ish gate per detector (keeps the Set's DFA small)."""
    g = _GATES.get(spec.pattern)
    if g is not None:
        return g
    return spec.pattern


def _build_gates() -> dict[str, str]:
    by_type = {
        "aws_access_key": r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA|A3T)[A-Z0-9]{16}",
        "aws_secret_key": P.MIXED_RUN_GATE,
        "github_token": r"gh[pousr]_|github_pat_",
        "gitlab_token": r"gl(?:pat|dt|rt|cbt|ptt|ft|imt|agent|oas|soat|ffct|wt)-|GR1348941",
        "slack_token": r"xox[abposre]-|xoxe[.-]|xapp-",
        "slack_webhook": r"(?i)hooks\.slack",
        "stripe_key": r"[sr]k_(?:live|test)_|whsec_",
        "anthropic_key": r"sk-ant-",
        "openai_key": r"sk-",
        "google_api_key": r"AIza",
        "google_oauth_secret": r"GOCSPX-",
        "huggingface_token": r"hf_|api_org_",
        "npm_token": r"npm_",
        "sendgrid_key": r"SG\.",
        "jwt": r"eyJ",
        "private_key": r"PRIVATE KEY|Private-Lines:",
        "url_credentials": r"://[^\s/?#\x00\"'<>]*@",
        "card_number": P.CARD_GATE,
    }
    out: dict[str, str] = {}
    for spec in P.BUILTIN:
        if spec.pattern == P.CURL_USER_PATTERN:
            out[spec.pattern] = r"-u\b|--user\b|--proxy-user\b"
        elif spec.type == "bearer_token":
            out[spec.pattern] = r"(?i)bearer"
        elif spec.type == "basic_auth":
            out[spec.pattern] = r"(?i)basic"
        elif spec.pattern == P.MYSQL_PATTERN:
            out[spec.pattern] = r"mysql|mariadb"
        elif spec.pattern == P.SSHPASS_PATTERN:
            out[spec.pattern] = r"sshpass"
        elif spec.pattern == P.REDISCLI_PATTERN:
            out[spec.pattern] = r"redis-cli"
        elif spec.pattern == P.COOKIE_PATTERN:
            out[spec.pattern] = r"(?i)cookie"
        elif spec.type in by_type:
            out[spec.pattern] = by_type[spec.type]
    return out


_GATES = _build_gates()


class _M:
    """A match wrapper that tells `_overlapping` whether the caller used it."""

    __slots__ = ("m", "accepted")

    def __init__(self, m: Any) -> None:
        self.m = m
        self.accepted = False

    def group(self, g: int = 0) -> Any:
        return self.m.group(g)

    def start(self, g: int = 0) -> int:
        return self.m.start(g)

    def end(self, g: int = 0) -> int:
        return self.m.end(g)


_MAX_RESTARTS = 2000


def _overlapping(rx: Any, text: str, raw: bytes | None) -> Iterable[Any]:
    """finditer for key/value detectors: when the caller rejects a match (the key was not
    secret, `CREDS='client_secret=…'`), search again right after the rejected key,
    so a candidate nested in the rejected value is still found."""
    pos = 0
    n = len(text)
    restarts = 0
    while pos <= n:
        m = _search(rx, text, raw, pos)
        if m is None:
            return
        yield m
        if m.accepted or restarts >= _MAX_RESTARTS:
            pos = max(m.end(), pos + 1)
        else:
            restarts += 1
            pos = max(m.end(1), pos + 1)


def _resolve(found: list[Finding]) -> list[Finding]:
    """Non-overlapping findings: higher priority first, then longer, then earlier."""
    if len(found) <= 1:
        return found
    order = sorted(found, key=lambda f: (-f[2], f[0] - f[1], f[0]))
    starts: list[int] = []
    ends: list[int] = []
    keep: list[Finding] = []
    for f in order:
        a, b = f[0], f[1]
        i = bisect.bisect_right(starts, a)
        if i > 0 and ends[i - 1] > a:
            continue
        if i < len(starts) and starts[i] < b:
            continue
        starts.insert(i, a)
        ends.insert(i, b)
        keep.insert(i, f)
    return keep


def _leftover(text: str, found: list[Finding]) -> str:
    parts, pos = [], 0
    for a, b, _p, _mk in found:
        parts.append(text[pos:a])
        pos = max(pos, b)
    parts.append(text[pos:])
    return "".join(parts)


def _skip_secret_value(v: str, allow: frozenset[str]) -> bool:
    return v in allow or P.is_placeholder(v) or bool(_MARKER_FULL.match(v))


def _norm_key(k: str) -> str:
    return "".join(w.lower() for w in P._WORDS.findall(k))


def _norm_secret(type_: str, secret: str) -> str:
    if type_ == "private_key":
        return re.sub(r"\s+|\\[nrt]", "", secret)
    return secret


def _json_unescape(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        cp = int(m.group(1), 16)
        return "\ufffd" if 0xD800 <= cp <= 0xDFFF else chr(cp)
    return _JSON_ESC_MAP[m.group(2)]


def _json_unescape_map(s: str) -> tuple[str, list[int]] | None:
    """Undo JSON string escapes; (decoded, offsets) like `pct_decode_map`, None if none."""
    parts: list[str] = []
    offs: list[int] = []
    pos = 0
    for m in _JSON_ESC.finditer(s):
        a = m.start()
        parts.append(s[pos:a])
        offs.extend(range(pos, a))
        parts.append(_json_unescape(m))
        offs.append(a)
        pos = m.end()
    if pos == 0:
        return None
    parts.append(s[pos:])
    offs.extend(range(pos, len(s) + 1))
    return "".join(parts), offs


def _b64_any(s: str) -> str | None:
    dec = P.b64_decode_text(s)
    if dec is None and ("-" in s or "_" in s):
        # "my-label-<base64>": try the longest tail after a separator
        for part in sorted(re.split(r"[-_]", s), key=len, reverse=True)[:2]:
            if len(part) >= 16:
                dec = P.b64_decode_text(part)
                if dec is not None:
                    break
    return dec


__all__ = ["KEY_FILE_NAME", "MARKER_RE", "RedactionKeyError", "Redactor", "load_or_create_key"]

if __name__ == "__main__":
    from ingest.redact_cli import main

    raise SystemExit(main())
