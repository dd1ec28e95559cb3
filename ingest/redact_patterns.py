"""Built-in secret detectors of the redactor: token formats, key-name rules, validators.

Every pattern here was written for ToolTrail from the published token formats (prefixes,
alphabets, lengths, checksums); none is copied from another scanner's rule file.

A detector is data (`Spec`): a marker type, an RE2 pattern, the capture group that holds
the secret, a priority (which detector wins when two findings overlap) and an optional
validator that looks at the match in context and rejects look-alikes. Each detector's
pattern also goes into one RE2 Set, so a text is scanned once to learn which detectors can
possibly match, and only those run `finditer`.

All patterns are compiled with RE2 (linear time, no backtracking), so a hostile 64 KiB
argument cannot stall the write path. Negated character classes exclude NUL because the
redactor scans the strings of one event joined by NUL.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import re2

RE2_OPTIONS = re2.Options()
RE2_OPTIONS.log_errors = False  # RE2 would print the pattern (not data) to stderr; keep logs JSON-only
RE2_OPTIONS.max_mem = 64 << 20


def compile_re2(pattern: str) -> re2._Regexp:
    return re2.compile(pattern, options=RE2_OPTIONS)


# --------------------------------------------------------------------------- helpers

_CTRL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_HEX = re.compile(r"[0-9a-fA-F]+")
_B64_URLSAFE = str.maketrans("-_", "+/")


def shannon_entropy(s: str) -> float:
    """Bits per character of `s` (0 for the empty string)."""
    n = len(s)
    if n == 0:
        return 0.0
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_ok(d: str) -> bool:
    """Is `d` (digits only) a plausible payment card number by issuer prefix and length?"""
    n = len(d)
    if not 13 <= n <= 19:
        return False
    p2, p3, p4, p6 = int(d[:2]), int(d[:3]), int(d[:4]), int(d[:6])
    if d[0] == "4":  # Visa
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:  # Mastercard
        return n == 16
    if p2 in (34, 37):  # American Express
        return n == 15
    if p4 == 6011 or 644 <= p3 <= 649 or p2 == 65 or 622126 <= p6 <= 622925:  # Discover
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:  # JCB
        return 16 <= n <= 19
    if 300 <= p3 <= 305 or p4 == 3095 or p2 in (36, 38, 39):  # Diners Club
        return 14 <= n <= 19
    if p2 == 62:  # UnionPay
        return 16 <= n <= 19
    if p4 in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):  # Maestro
        return 13 <= n <= 19
    if 2200 <= p4 <= 2204:  # Mir
        return 16 <= n <= 19
    return False


def card_number_ok(text: str) -> bool:
    """Digits (with optional consistent space/dash grouping) that form a valid card number."""
    d = text.replace(" ", "").replace("-", "")
    return d.isdigit() and _card_brand_ok(d) and luhn_ok(d)


def b64_decode_text(s: str) -> str | None:
    """Decode standard or URL-safe base64 (line breaks allowed) to printable text, else None."""
    t = s.replace("\\r", "").replace("\\n", "").replace("\r", "").replace("\n", "").rstrip("=")
    if len(t) % 4 == 1 or len(t) < 12:
        return None
    if "-" in t or "_" in t:
        if "+" in t or "/" in t:
            return None
        t = t.translate(_B64_URLSAFE)
    try:
        raw = binascii.a2b_base64(t + "=" * (-len(t) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 8:
        return None
    try:
        out = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _CTRL.search(out):
        return None
    return out


_PCT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def pct_decode_map(s: str) -> tuple[str, list[int]] | None:
    """Percent-decode `s`; return (decoded, offsets) where offsets[i] is the index in `s` of
    decoded character i (and offsets[len(decoded)] == len(s)). None if nothing decodes."""
    parts: list[str] = []
    offs: list[int] = []
    pos = 0
    for m in _PCT_RUN.finditer(s):
        a = m.start()
        parts.append(s[pos:a])
        offs.extend(range(pos, a))
        raw = bytes.fromhex(m.group().replace("%", ""))
        try:
            txt = raw.decode("utf-8")
            for ch in txt:
                offs.append(a)
                a += 3 * len(ch.encode("utf-8"))
        except UnicodeDecodeError:
            txt = raw.decode("latin-1")
            offs.extend(range(a, m.end(), 3))
        parts.append(txt)
        pos = m.end()
    if pos == 0:
        return None
    parts.append(s[pos:])
    offs.extend(range(pos, len(s) + 1))
    return "".join(parts), offs


# --------------------------------------------------------------------------- key names

_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+")

NOT_SECRET_SUBSTR = ("passwordless", "secretar", "secretsmanager", "secretmanager")  # secretary, AWS ARNs
PASSWORD_SUBSTR = ("password", "passwd", "passphrase", "passcode", "passwort", "contrasena", "senha")
SECRET_SUBSTR = (
    "secret", "apikey", "accesskey", "privatekey", "privkey", "signingkey", "encryptionkey", "decryptionkey",
    "masterkey", "subscriptionkey", "accountkey", "storagekey", "authkey", "appkey", "hmackey", "sharedkey",
    "sessionkey", "webhookkey", "licensekey", "authorization", "authorisation", "cookie", "credential",
    "connectionstring", "connstring", "connstr", "sastoken", "saskey",
)
SECRET_WORDS = frozenset({"token", "dsn", "jwt", "bearer", "pat", "otp", "totp", "creds"})
AUTH_PARTNERS = frozenset({"basic", "http", "proxy", "header", "value", "string", "data", "info"})
# A sensitive word followed by one of these is metadata about the secret, not the secret.
META_SUFFIX = frozenset("""
    count counts limit limits max min len length size type types kind name names id ids path paths file files
    filename dir directory folder url urls uri uris endpoint endpoints host hint hints policy policies expiry
    expires expiration expired exp ttl age at in time timeout timestamp date version versions format mode
    enabled disabled required optional field fields env var variable ref refs reference arn label labels
    provider providers strength rotation rotated status location store manager source used remaining budget
    usage rate index scope scopes algorithm alg method methods set present exists valid validity regex pattern
    rule rules example template placeholder description desc help error errors message msg changed updated
    created reset sent consent domain secure samesite httponly jar banner issuer audience lifetime class
    prefix suffix length last4 hash_algorithm days hours minutes seconds secs ms interval period frequency retries
    attempts threshold
""".split())  # noqa: SIM905
# "next_token", "page_token", "max_tokens": cursors and counters, not credentials.
TOKEN_QUALIFIERS = frozenset("""
    max min num n total prompt completion input output cached cache reasoning used remaining next page
    continuation pagination cursor sync resume start end stop eos bos pad unk special sep cls mask
""".split())  # noqa: SIM905
PLAIN_KIND = PASSWORD_KIND = "password"  # noqa: S105 - a marker type name
SECRET_KIND = "secret_field"  # noqa: S105 - a marker type name


@lru_cache(maxsize=8192)
def classify_key(name: str) -> str | None:
    """Whether a key / variable / header name holds a secret: 'password', 'secret_field' or None.

    Case- and separator-insensitive: `api_key`, `API-KEY`, `apiKey`, `X-Api-Key` agree."""
    words = [w.lower() for w in _WORDS.findall(name)]
    if not words or len(name) > 128:
        return None
    joined = "".join(words)
    last = words[-1]
    if last in META_SUFFIX and len(words) > 1:
        return None
    if any(s in joined for s in NOT_SECRET_SUBSTR):
        return None
    if any(s in joined for s in PASSWORD_SUBSTR):
        return PLAIN_KIND
    if "pass" in words or ("pwd" in words and len(words) > 1):  # bare PWD is the shell's cwd
        return PLAIN_KIND
    if "token" in words or (joined.endswith("token") and "tokens" not in joined):
        i = words.index("token") if "token" in words else len(words) - 1
        if any(w in TOKEN_QUALIFIERS for w in words[:i]):
            return None
        return SECRET_KIND
    if any(s in joined for s in SECRET_SUBSTR):
        return SECRET_KIND
    if SECRET_WORDS.intersection(words):
        return SECRET_KIND
    if "auth" in words and len(words) > 1 and AUTH_PARTNERS.intersection(words):
        return SECRET_KIND
    return None


# Values that only stand in for a secret (templates, env references, masks).
PLACEHOLDER = re.compile(
    r"""^\s*(?:
      \$\{[^}]*\}|\$\(\s*[^)]*\)|\$\d+|%[A-Za-z_][A-Za-z0-9_]*%|
      \{\{[^}]*\}\}|\{[A-Za-z_][A-Za-z0-9_.]*\}|<[^<>]*>|%\([A-Za-z_][A-Za-z0-9_]*\)s|%s|\?|:[A-Za-z_]\w*|@[A-Za-z_]\w*|
      \*+|x{3,}|X{3,}|\.{3}|\u2026|-+|
      null|none|nil|undefined|true|false|n/?a|tbd|todo|empty|
      \[?redacted\]?|\[?hidden\]?|\[?masked\]?|\[?filtered\]?|
      your[_ -]?[a-z_ -]*(?:here)?|<?insert[_ -][a-z_ -]+>?|
      (?:process\.)?env\.[A-Za-z_][A-Za-z0-9_]*|os\.environ(?:\.get)?[\[(].*|os\.getenv\(.*|
      secrets\.[A-Za-z_][A-Za-z0-9_]*|vault:[^\s]*
    )\s*$""",
    re.VERBOSE | re.IGNORECASE,
)
_SHELLVAR = re.compile(r"^\$(?:[A-Z_][A-Z0-9_]*|[a-z_][a-z0-9_]*)$")  # $DB_PASS, $password (not $m71JxY)
_ENVNAME = re.compile(r"^[A-Z]+[0-9]*(?:_[A-Z]+[0-9]*)+$")  # an env var NAME, e.g. DB_PASSWORD


def is_placeholder(value: str) -> bool:
    v = value.strip()
    if not v:
        return True
    if len(v) > 200:
        return False
    return bool(PLACEHOLDER.match(v) or _ENVNAME.match(v) or _SHELLVAR.match(v))


def secret_like(v: str) -> bool:
    """An unquoted value after `key:` in prose looks like a secret, not an English word."""
    v = v.rstrip(".,!?)")
    if len(v) < 4:
        return False
    has_digit = any(c.isdigit() for c in v)
    has_sym = any(not c.isalnum() for c in v)
    inner_upper = any(c.isupper() for c in v[1:])
    return has_digit or has_sym or (inner_upper and any(c.islower() for c in v))


def looks_random(s: str, *, min_len: int = 16, threshold: float = 3.0) -> bool:
    """High-entropy token test used by the fallback detector near credential words."""
    n = len(s)
    if n < min_len or s[0] in "/." or "//" in s or "://" in s:
        return False
    core = s.rstrip("=")
    if n >= 32 and _HEX.fullmatch(core):
        return True
    has_digit = any(c.isdigit() for c in core)
    has_upper = any(c.isupper() for c in core)
    has_lower = any(c.islower() for c in core)
    ent = shannon_entropy(core)
    parts = [p for p in re.split(r"[._/+-]+", core) if p]
    if len(parts) > 1:
        wordy = sum(1 for p in parts if p.isalpha() and (p.islower() or p.istitle() or p.isupper()))
        if wordy * 2 >= len(parts):
            return False  # snake/kebab/dotted identifiers and paths
    if has_digit and (has_upper or has_lower) and ent >= threshold:
        return True
    return n >= 24 and has_upper and has_lower and ent >= threshold + 0.8


# --------------------------------------------------------------------------- detectors

Validator = Callable[[str, "re2._Match"], tuple[int, int] | None]


@dataclass(frozen=True)
class Spec:
    type: str
    pattern: str
    group: int = 1
    prio: int = 50
    validate: Validator | None = None
    # True when a hit of the raw pattern on the event's JSON text is conclusive enough to
    # decide "clean" without walking the event (token formats with a validator).
    self_confirming: bool = False


def _span(m: re2._Match, g: int) -> tuple[int, int]:
    return m.start(g), m.end(g)


def _v_min_classes(m_group: int, *, digit: bool = True, upper: bool = False, lower: bool = False) -> Validator:
    def v(text: str, m: re2._Match) -> tuple[int, int] | None:
        s = m.group(m_group)
        if digit and not any(c.isdigit() for c in s):
            return None
        if upper and not any(c.isupper() for c in s):
            return None
        if lower and not any(c.islower() for c in s):
            return None
        return _span(m, m_group)
    return v


def _v_aws_secret(text: str, m: re2._Match) -> tuple[int, int] | None:
    s = m.group(1)
    nxt = text[m.end(1):m.end(1) + 1]
    if nxt and (nxt.isascii() and nxt.isalnum() or nxt in "+/="):
        return None  # part of a longer run (the boundary is checked here so it is not consumed)
    if _HEX.fullmatch(s) or not (any(c.isdigit() for c in s) and any(c.isupper() for c in s)
                                 and any(c.islower() for c in s)):
        return None
    if shannon_entropy(s) < 4.0 or b64_decode_text(s) is not None:
        return None  # base64 of readable text (pagination cursors, JSON) is not a random key
    parts = [p for p in s.split("/") if p]
    if len(parts) > 2 and all(p.isalpha() for p in parts):
        return None  # a path
    return _span(m, 1)


def _v_jwt(text: str, m: re2._Match) -> tuple[int, int] | None:
    head = b64_decode_text(m.group(1))
    if head is None or not head.lstrip().startswith("{"):
        return None
    if not any(k in head for k in ('"alg"', '"typ"', '"kid"', '"enc"')):
        return None
    return _span(m, 0)


def _v_url_password(text: str, m: re2._Match) -> tuple[int, int] | None:
    pw = m.group(2)
    if is_placeholder(pw) or (pw.isdigit() and len(pw) <= 5 and "." in m.group(1)):
        return None  # https://example.com:8443@host is a port, not a password
    return _span(m, 2)


def _v_url_token_user(text: str, m: re2._Match) -> tuple[int, int] | None:
    u = m.group(1)
    if is_placeholder(u) or not looks_random(u.replace("%", ""), min_len=16):
        return None
    return _span(m, 1)


def _v_bearer(text: str, m: re2._Match) -> tuple[int, int] | None:
    tok = m.group(1)
    if not (secret_like(tok) and (any(c.isdigit() for c in tok) or any(c in "._~+/=-" for c in tok)
                                  or sum(c.isupper() for c in tok) >= 2)):
        return None
    return _span(m, 1)


def _v_basic(text: str, m: re2._Match) -> tuple[int, int] | None:
    tok = m.group(1)
    dec = b64_decode_text(tok) if len(tok) >= 12 else _short_b64(tok)
    if dec is not None and ":" in dec:
        return _span(m, 1)
    before = text[max(0, m.start() - 40):m.start()].lower()
    if "authoriz" in before and len(tok) >= 8:
        return _span(m, 1)
    return None


def _short_b64(tok: str) -> str | None:
    t = tok.rstrip("=")
    try:
        raw = binascii.a2b_base64(t + "=" * (-len(t) % 4))
        out = raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return None if _CTRL.search(out) else out


def _v_value_not_placeholder(group: int) -> Validator:
    def v(text: str, m: re2._Match) -> tuple[int, int] | None:
        s = m.group(group)
        if is_placeholder(s):
            return None
        return _span(m, group)
    return v


def _v_card(text: str, m: re2._Match) -> tuple[int, int] | None:
    a, b = m.start(1), m.end(1)
    s = text[a:b]
    if a > 1 and text[a - 1] in ".," and text[a - 2].isdigit():
        return None  # the tail of a decimal number
    run_continues = text[b:b + 1].isdigit()
    seps = [c for c in s if c in " -"]
    sep = seps[0] if seps else " "
    other = "-" if sep == " " else " "
    if other in s:  # "6248-7501-5947-7222 10m": the grouping ends where the separator changes
        s = s[:s.index(other)]
        run_continues = False
    groups = s.split(sep)
    if any(not g for g in groups):
        return None
    # The longest prefix of whole groups that is a card: 4111 1111 1111 1111, 378282246310005,
    # and a card followed by its CVV ("4111111111111111 123").
    for k in range(len(groups), 0, -1):
        if k == len(groups) and run_continues:
            continue
        if k == 1 and not 13 <= len(groups[0]) <= 19:
            continue
        if k > 1 and len(groups[0]) != 4:
            continue
        cand = sep.join(groups[:k])
        if card_number_ok(cand):
            return a, a + len(cand)
    return None


def _v_cookie(text: str, m: re2._Match) -> tuple[int, int] | None:
    v = m.group(1).rstrip()
    if "=" not in v or is_placeholder(v):
        return None
    return m.start(1), m.start(1) + len(v)


def _v_private_block(text: str, m: re2._Match) -> tuple[int, int] | None:
    a, b = m.start(1), m.end(1)
    body = text[a:b]
    if sum(c.isalnum() for c in body[:64]) < 16:
        return None
    return a, b


# Key-value assignments in free text: `password=…`, `"api_key": "…"`, `token: …`, `--password …`
_KW = r"(?:pass|pwd|secret|token|key|auth|cookie|cred|dsn|conn|jwt|bearer|otp|pat)"
_KEYCH = r"[A-Za-z0-9_.-]"
ASSIGN_PATTERN = (
    r"(?i)(?:^|[^A-Za-z0-9_.-])(" + _KEYCH + r"*" + _KW + _KEYCH + r"*)(\\?[\"'])?[ \t]*(:=|=>|=|:)[ \t]*"
    r"((?:bearer|basic|token|digest|negotiate|ntlm|apikey)[ \t]+)?"
    r"(?:\\\"((?:[^\"\\\x00\n]|\\[^\"\x00\n])*)\\\"|\"((?:[^\"\\\x00\n]|\\[^\x00\n])*)\""
    r"|'([^'\x00\n]*)'|`([^`\x00\n]*)`"
    r"|([^\s\"'`,;&<>(){}\[\]=\x00\\][^\s\"'`,;&<>(){}\[\]\x00\\]*))"
)
FLAG_PATTERN = (
    r"(?i)(?:^|[^A-Za-z0-9_.-])--?(" + _KEYCH + r"*" + _KW + _KEYCH + r"*)(?:=|[ \t]+)"
    r"(?:\"([^\"\x00\n]*)\"|'([^'\x00\n]*)'|([^\s\"'`;&|<>\x00-][^\s\"'`;&|<>\x00]*))"
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODEISH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")


def assignment_findings(text: str, m: re2._Match, *, flag: bool) -> tuple[str, int, int] | None:
    """(kind, start, end) of the value of a secret-named assignment, or None."""
    key = m.group(1)
    kind = classify_key(key)
    if kind is None:
        return None
    groups = (2, 3, 4) if flag else (5, 6, 7, 8, 9)
    val = None
    for g in groups:
        if m.start(g) >= 0:
            val = (m.start(g), m.end(g), g)
            break
    if val is None:
        return None
    a, b, g = val
    v = text[a:b]
    quoted = g != groups[-1]
    if not v or is_placeholder(v) or (v[0] == "$" and text[b:b + 1] in ("{", "(")):
        return None  # ${DB_PASS}, $(cat ~/.token)
    if not quoted and not (not flag and m.start(4) >= 0):
        if _CODEISH.match(v) or text[b:b + 1] in ("(", "[") or (_IDENT.match(v) and classify_key(v)):
            return None  # a code reference: password=self.password, token=get_token(), api_key = api_key
        sep = "" if flag else m.group(3)
        if (sep == ":" or flag) and not secret_like(v):
            return None  # prose: "password: please reset it", "--token expired"
        if v.startswith("[REDACTED:"):
            return None
    return kind, a, b


COOKIE_PATTERN = r"(?i)(?:^|[^A-Za-z0-9_-])(?:set-)?cookie[ \t]*:[ \t]*([^\r\n\x00\"]+)"

# Database / shell tools that take a password as a short flag.
MYSQL_PATTERN = r"\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n\x00|;&]*?[ \t]-p([^\s\"'\x00-][^\s\"'\x00]*)"
SSHPASS_PATTERN = r"\bsshpass\b[^\n\x00|;&]*?[ \t]-p[ \t]*([^\s\x00-][^\s\x00]*)"
REDISCLI_PATTERN = r"\bredis-cli\b[^\n\x00|;&]*?[ \t]-a[ \t]+([^\s\x00-][^\s\x00]*)"
CURL_USER_PATTERN = r"(?:^|[\s\"'\x00])(?:-u|--user|--proxy-user)(?:[ \t]+|=)[\"']?[^\s:\"'\x00]*:([^\s\"'\x00]+)"

# High-entropy fallback: a random-looking token right after a credential word.
HE_KW = (
    r"(?:token|secret|passw(?:or)?d|pwd|passphrase|api[ _.-]?key|access[ _.-]?key|secret[ _.-]?key|"
    r"private[ _.-]?key|signing[ _.-]?key|credentials?|auth[ _.-]?(?:token|key)|bearer)"
)
HE_PATTERN = (
    r"(?i)(?:^|[^A-Za-z0-9_.-])([A-Za-z0-9_.-]*" + HE_KW + r"[A-Za-z0-9_.-]*)"
    r"(?:[ \t]+(?:is|was|=|:|of|for|value|here|->|=>|now)){0,3}[ \t]*[:=]?[ \t]*[\"'`]?"
    r"([A-Za-z0-9+/_~.=-]{16,})"
)

MARKER_PATTERN = r"\[REDACTED:[a-z0-9_]{1,48}:[0-9a-f]{8,64}\]"

BUILTIN: tuple[Spec, ...] = (
    # --- cloud / SaaS token formats (prefix + alphabet + length). No capture groups and no
    # bounded counters where avoidable: RE2 then finds spans with its DFA alone.
    Spec("aws_access_key", r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
         group=0, prio=90, self_confirming=True),
    Spec("aws_secret_key", r"(?:^|[^A-Za-z0-9+/])([A-Za-z0-9+/]{40})", prio=55,
         validate=_v_aws_secret, self_confirming=True),
    Spec("github_token", r"\bgh[pousr]_[A-Za-z0-9]{30}[A-Za-z0-9]*", group=0, prio=90, self_confirming=True),
    Spec("github_token", r"\bgithub_pat_[A-Za-z0-9_]{40}[A-Za-z0-9_]*", group=0, prio=90, self_confirming=True),
    Spec("gitlab_token", r"\b(?:glpat|gldt|glrt|glcbt|glptt|glft|glimt|glagent|gloas|glsoat|glffct|glwt)-"
         r"[A-Za-z0-9_.-]{20}[A-Za-z0-9_.-]*", group=0, prio=90, validate=_v_min_classes(0, digit=False, lower=True),
         self_confirming=True),
    Spec("gitlab_token", r"\bGR1348941[A-Za-z0-9_-]{20}[A-Za-z0-9_-]*", group=0, prio=90, self_confirming=True),
    Spec("slack_token", r"\b(?:xox[abposre]|xoxe\.xox[bp]|xoxe)-[A-Za-z0-9-]{10}[A-Za-z0-9-]*", group=0, prio=90,
         validate=_v_min_classes(0, digit=True), self_confirming=True),
    Spec("slack_token", r"\bxapp-[0-9]+-[A-Za-z0-9-]{10}[A-Za-z0-9-]*", group=0, prio=90, self_confirming=True),
    Spec("slack_webhook", r"(?i)\bhttps?://hooks\.slack(?:-gov)?\.com/(?:services|workflows|triggers)/"
         r"([A-Za-z0-9_/-]{10,})", prio=95, self_confirming=True),
    Spec("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10}[A-Za-z0-9]*", group=0, prio=90, self_confirming=True),
    Spec("stripe_key", r"\bwhsec_[A-Za-z0-9+/=]{20}[A-Za-z0-9+/=]*", group=0, prio=90, self_confirming=True),
    Spec("anthropic_key", r"\bsk-ant-[a-z]{2,10}[0-9]{2}-[A-Za-z0-9_-]{20}[A-Za-z0-9_-]*", group=0, prio=92,
         self_confirming=True),
    Spec("openai_key", r"\bsk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20}[A-Za-z0-9_-]*", group=0, prio=91,
         validate=_v_min_classes(0, digit=True, upper=True), self_confirming=True),
    Spec("openai_key", r"\bsk-[A-Za-z0-9]{32}[A-Za-z0-9]*\b", group=0, prio=88,
         validate=_v_min_classes(0, digit=True, upper=True, lower=True), self_confirming=True),
    Spec("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}", group=0, prio=90, self_confirming=True),
    Spec("google_oauth_secret", r"\bGOCSPX-[A-Za-z0-9_-]{20}[A-Za-z0-9_-]*", group=0, prio=90, self_confirming=True),
    Spec("huggingface_token", r"\b(?:hf|api_org)_[A-Za-z0-9]{30}[A-Za-z0-9]*", group=0, prio=90,
         validate=_v_min_classes(0, digit=False, upper=True), self_confirming=True),
    Spec("npm_token", r"\bnpm_[A-Za-z0-9]{36}[A-Za-z0-9]*", group=0, prio=90, self_confirming=True),
    Spec("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{16}[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{16}[A-Za-z0-9_-]*", group=0, prio=90,
         self_confirming=True),
    Spec("jwt", r"\b(eyJ[A-Za-z0-9_-]{4,})\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", group=0, prio=85, validate=_v_jwt,
         self_confirming=True),
# --- private keys: keep the BEGIN/END lines, replace the body
    # the body stops at "-----END" (kept) or wherever a truncated block ends
    Spec("private_key", r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----((?:[A-Za-z0-9+/=:,.\s]|-[A-Za-z0-9]|\\[nrt])+)",
         prio=99, validate=_v_private_block),
    Spec("private_key", r"Private-Lines: *[0-9]+(?:\r?\n|\\r?\\n)((?:[A-Za-z0-9+/=]|\r?\n|\\r?\\n)+)", prio=98,
         validate=_v_private_block),
    # --- credentials inside URLs: only the password (or the token used as user) goes
    Spec("url_credentials", r"\b[A-Za-z][A-Za-z0-9+.-]{1,30}://([^\s/?#@:\x00\"'<>]*):([^\s/?#\x00\"'<>]+)@"
         r"[A-Za-z0-9\[]", prio=80, validate=_v_url_password),
    Spec("url_credentials", r"\b[A-Za-z][A-Za-z0-9+.-]{1,30}://([A-Za-z0-9._~%!$&'()*+,;=-]{16,})@[A-Za-z0-9\[]",
         prio=70, validate=_v_url_token_user),
    # --- HTTP authorization values
    Spec("bearer_token", r"(?i)\bbearer[ \t]+([A-Za-z0-9._~+/-]{8,}=*)", prio=60, validate=_v_bearer),
    Spec("basic_auth", r"(?i)\bbasic[ \t]+([A-Za-z0-9+/]{6,}={0,2})", prio=60, validate=_v_basic),
    Spec("basic_auth", CURL_USER_PATTERN, prio=60, validate=_v_value_not_placeholder(1)),
    # --- payment cards (issuer prefix + length + Luhn)
    Spec("card_number", r"(?:^|[^0-9A-Za-z_])([2-6][0-9]{3}(?:[ -]?[0-9]){9,18})", prio=65, validate=_v_card,
         self_confirming=True),
    # --- passwords given to well-known CLIs
    Spec("password", MYSQL_PATTERN, prio=58, validate=_v_value_not_placeholder(1)),
    Spec("password", SSHPASS_PATTERN, prio=58, validate=_v_value_not_placeholder(1)),
    Spec("password", REDISCLI_PATTERN, prio=58, validate=_v_value_not_placeholder(1)),
    Spec("secret_field", COOKIE_PATTERN, prio=57, validate=_v_cookie),
)

# Types a user can disable or an analyst can ask for (README table).
BUILTIN_TYPES: tuple[str, ...] = tuple(dict.fromkeys(
    [s.type for s in BUILTIN] + ["password", "secret_field", "high_entropy"]))

# Gates are anchored at the start of a run (after a non-run character, or after a JSON
# escape such as \n in the event's JSON text): one DFA thread per run keeps the Set's DFA
# small even on long random tokens, where an unanchored counting pattern would explode.
_RUN0 = r"(?:^|[^A-Za-z0-9+/]|\\[nrtbf])"
# Base64 that hides ASCII text: 4 quads + 2 (13 bytes) whose quad-first characters encode ASCII
# bytes ([I-Za-f] for 0x20-0x7f). Lowercase hex (sha256, git SHAs) passes with ~2% per run.
B64_GATE = _RUN0 + r"(?:[I-Za-f][A-Za-z0-9+/_-]{3}){4}[A-Za-z0-9+/_-]{2}"
_B = r"[A-Za-z0-9+/]*"
# 40-char AWS secret keys: a run mixing upper, lower and digit (what the validator requires).
MIXED_RUN_GATE = _RUN0 + "(?:" + "|".join(f"{_B}{a}{_B}{b}{_B}{c}" for a, b, c in [
    ("[A-Z]", "[a-z]", "[0-9]"), ("[A-Z]", "[0-9]", "[a-z]"), ("[a-z]", "[A-Z]", "[0-9]"),
    ("[a-z]", "[0-9]", "[A-Z]"), ("[0-9]", "[A-Z]", "[a-z]"), ("[0-9]", "[a-z]", "[A-Z]")]) + ")"
CARD_GATE = r"(?:^|[^0-9A-Za-z_]|\\[nrtbf])[2-6][0-9]{3}(?:[ -]?[0-9]){9}"
B64_CANDIDATE = r"[A-Za-z0-9+/_-]{16,}(?:(?:\r?\n|\\r?\\n)[A-Za-z0-9+/_-]{4,})*={0,2}"
PCT_GATE = r"%[0-9A-Fa-f]{2}"
# A whitespace/quote-delimited token with percent-escapes: decoded and scanned on its own.
PCT_TOKEN = r"[^\s\"'<>\x00]*%[0-9A-Fa-f]{2}[^\s\"'<>\x00]*"  # noqa: S105

# Keyword gate for the key-name rule, assignments and the entropy fallback: a superset of
# the names `classify_key` accepts, written against raw text (any separators, any case).
_S = r"(?:[^A-Za-z0-9]|\\[nrtbf]|\\u00[0-9a-fA-F]{2})*"
_PRE = r"(?:^|[^A-Za-z]|\\[nrtbf])"  # a word start, also right after a JSON escape such as \n
KEYWORD_GATE = "|".join([
    r"(?i)pass" + _S + r"(?:word|wd|phrase|code)|passwort|contrase.a|senha|secret|token|pwd|dsn|jwt|bearer|creds|credential",
    r"(?i)cookie|authori[sz]ation|conn(?:ection)?" + _S + r"str",
    r"(?i)(?:api|access|private|priv|signing|encryption|decryption|master|subscription|account|storage|auth|app|hmac|"
    r"shared|session|webhook|license|sas)" + _S + r"key",
    r"(?i)(?:basic|http|proxy|header|value|string|data|info)" + _S + r"auth|auth" + _S
    + r"(?:basic|http|proxy|header|value|string|data|info)",
    _PRE + r"(?:pass|PASS|Pass)(?:[^a-z]|$)|[a-z0-9]Pass(?:[^a-z]|$)",
    r"(?i)" + _PRE + r"(?:pat|t?otp)(?:[^a-z]|$)",
    r"[a-z0-9](?:Pat|PAT|Otp|OTP|Totp|TOTP)(?:[^a-z]|$)",
])
