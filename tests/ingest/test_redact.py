"""Redactor unit tests: API contract, markers, key file, configuration, robustness."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import random
import re
import stat
import threading

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.redact import KEY_FILE_NAME, RedactionKeyError, Redactor, load_or_create_key
from ingest.redact_patterns import BUILTIN_TYPES, classify_key, is_placeholder, luhn_ok
from ingest.settings import RedactionRule, RedactionSettings
from tests.ingest.redaction_corpus import SECRET_TYPES, gen_secret

MARKER = re.compile(r"\[REDACTED:([a-z0-9_]+):([0-9a-f]{8,64})\]")
KEY = b"k" * 32
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"


@pytest.fixture(scope="module")
def r() -> Redactor:
    return Redactor(KEY)


def _event(args, **kw):
    ev = {"ts": "2026-05-29T11:04:22.000000Z", "principal": "alice", "session": "s1", "tool": "t",
          "decision": "allow", "args": args}
    ev.update(kw)
    return ev


# --------------------------------------------------------------------------- contract


def test_clean_event_returns_equal_new_dict_and_no_counts(r):
    ev = _event({"path": "/home/alice/notes.md", "max_tokens": 512, "query": "select 1"})
    before = copy.deepcopy(ev)
    out, counts = r.redact_fields(ev)
    assert out == ev and out is not ev and counts == {}
    assert ev == before


def test_input_is_never_mutated(r):
    ev = _event({"headers": {"Authorization": f"Bearer {GHP}"}, "list": [GHP, {"password": "hunter22"}]},
                error=f"failed with {GHP}")
    before = copy.deepcopy(ev)
    out, counts = r.redact_fields(ev)
    assert ev == before
    assert GHP not in orjson.dumps(out).decode()
    assert counts == {"github_token": 3, "password": 1}


def test_marker_format_and_only_the_secret_is_replaced(r):
    text = f"deploy with token {GHP} to prod, thanks"
    out, counts = r.redact_text(text)
    assert counts == {"github_token": 1}
    m = MARKER.search(out)
    assert m and m.group(1) == "github_token" and len(m.group(2)) == 12
    assert out == f"deploy with token {m.group(0)} to prod, thanks"


def test_fingerprint_is_truncated_hmac_sha256_of_type_and_secret(r):
    expect = hmac.new(KEY, f"github_token:{GHP}".encode(), hashlib.sha256).hexdigest()[:12]
    assert r.redact_text(GHP)[0] == f"[REDACTED:github_token:{expect}]"
    assert r.marker("github_token", GHP) == f"[REDACTED:github_token:{expect}]"


def test_same_secret_same_marker_across_events_and_encodings(r):
    a = r.redact_fields(_event({"cmd": f"git push https://x:{GHP}@github.com/o/r"}))[0]
    b = r.redact_fields(_event({"note": GHP}))[0]
    c = r.redact_fields(_event({"blob": base64.b64encode(GHP.encode()).decode()}))[0]
    d = r.redact_fields(_event({"u": "https://e.com/?t=" + GHP.replace("_", "%5F")}))[0]
    markers = {MARKER.search(orjson.dumps(x).decode()).group(0) for x in (a, b, c, d)}
    assert len(markers) == 1


def test_different_key_gives_different_fingerprint():
    a = Redactor(b"a" * 32).redact_text(GHP)[0]
    b = Redactor(b"b" * 32).redact_text(GHP)[0]
    assert a != b and MARKER.fullmatch(a) and MARKER.fullmatch(b)


def test_different_secrets_different_fingerprints(r):
    rng = random.Random(5)
    fps = {r.redact_text(gen_secret("github_token", rng).snippet)[0] for _ in range(300)}
    assert len(fps) == 300


def test_fingerprint_length_is_configurable():
    out = Redactor(KEY, fingerprint_chars=20).redact_text(GHP)[0]
    assert len(MARKER.fullmatch(out).group(2)) == 20
    with pytest.raises(ValueError):
        Redactor(KEY, fingerprint_chars=4)


def test_counts_count_every_occurrence(r):
    out, counts = r.redact_fields(_event({"a": GHP, "b": [GHP, GHP]}, reason=f"{GHP} {GHP}"))
    assert counts == {"github_token": 5}


def test_redaction_is_idempotent(r):
    ev = _event({"password": "hunter22!", "h": {"Authorization": f"Bearer {GHP}"},
                 "dsn": "postgres://app:S3cretPw@db:5432/x", "note": "token: ZqX8v2LmN4pR7tY1wK9s"})
    once, c1 = r.redact_fields(ev)
    twice, c2 = r.redact_fields(once)
    assert twice == once and c2 == {} and c1


def test_redact_value_and_bytes_text(r):
    v, counts = r.redact_value([{"password": "Tr0ub4dor&3"}, GHP])
    assert counts == {"password": 1, "github_token": 1}
    t, counts = r.redact_text(f"x {GHP}".encode())
    assert counts == {"github_token": 1} and isinstance(t, str)


# --------------------------------------------------------------------------- key names


@pytest.mark.parametrize("key", [
    "password", "PASSWORD", "Passwd", "db_password", "userPassword", "pass", "DB_PASS", "pwd_hash", "passphrase",
    "secret", "client_secret", "clientSecret", "token", "access_token", "refresh-token", "X-Auth-Token", "api_key",
    "API-KEY", "apiKey", "X-Api-Key", "apikey", "access_key", "AWS_SECRET_ACCESS_KEY", "private_key", "PrivateKey",
    "authorization", "Proxy-Authorization", "cookie", "Set-Cookie", "session_token", "sessionToken", "dsn",
    "SENTRY_DSN", "connection_string", "ConnectionString", "conn_str", "credentials", "jwt", "basic_auth",
    "webhook_secret", "signing_key", "encryption_key", "sas_token", "GITHUB_PAT", "otp", "creds",
])
def test_secret_key_names(key):
    assert classify_key(key) is not None


@pytest.mark.parametrize("key", [
    "max_tokens", "maxTokens", "token_count", "tokens", "prompt_tokens", "completion_tokens", "next_token",
    "nextToken", "page_token", "token_type", "token_id", "token_url", "tokenizer", "secret_name", "secret_arn",
    "secretary", "password_policy", "password_required", "passwordless", "private_key_path", "credentials_file",
    "api_key_id", "key", "keys", "public_key", "PWD", "auth_method", "author", "cookie_consent", "compass",
    "passport", "bypass", "session_id", "token_expires_in", "path", "monkey", "keyboard",
])
def test_innocuous_key_names(key):
    assert classify_key(key) is None


def test_key_name_rule_redacts_only_strings(r):
    ev = _event({"token": 12345, "password": True, "secret": None, "api_key": 3.5, "tokens": 7,
                 "access_token": "abc"})
    out, counts = r.redact_fields(ev)
    assert out["args"]["token"] == 12345 and out["args"]["password"] is True and out["args"]["secret"] is None
    assert MARKER.fullmatch(out["args"]["access_token"]) and counts == {"secret_field": 1}


def test_secret_key_value_becomes_one_marker_with_kind(r):
    out, counts = r.redact_fields(_event({"Password": "correct horse battery staple", "apiKey": "k-1"}))
    assert MARKER.fullmatch(out["args"]["Password"]).group(1) == "password"
    assert MARKER.fullmatch(out["args"]["apiKey"]).group(1) == "secret_field"
    assert counts == {"password": 1, "secret_field": 1}


def test_secret_key_keeps_structure_of_typed_values(r):
    out, _ = r.redact_fields(_event({
        "Authorization": f"Bearer {GHP}",
        "database_dsn": "postgres://app:S3cretPw@db.internal:5432/app",
        "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4bU2fGJt0kq9\n-----END RSA PRIVATE KEY-----",
    }))
    a = out["args"]
    assert a["Authorization"].startswith("Bearer [REDACTED:github_token:")
    assert a["database_dsn"].startswith("postgres://app:[REDACTED:url_credentials:")
    assert a["database_dsn"].endswith("@db.internal:5432/app")
    assert a["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----[REDACTED:private_key:")
    assert a["private_key"].endswith("-----END RSA PRIVATE KEY-----")


def test_secret_key_with_extra_text_is_redacted_whole(r):
    out, counts = r.redact_fields(_event({"token": f"mine is {GHP} ok"}))
    assert MARKER.fullmatch(out["args"]["token"]).group(1) == "secret_field"


def test_nested_and_header_lists(r):
    ev = _event({"request": {"headers": [{"name": "Authorization", "value": "opaque-9f8e7d"},
                                         {"name": "Accept", "value": "application/json"}],
                             "auth": {"password": ["p4ss-one", "p4ss-two"]},
                             "cookies": {"value": "sid=abc"}}})
    out, counts = r.redact_fields(ev)
    req = out["args"]["request"]
    assert MARKER.fullmatch(req["headers"][0]["value"]) and req["headers"][1]["value"] == "application/json"
    assert all(MARKER.fullmatch(x) for x in req["auth"]["password"])
    assert MARKER.fullmatch(req["cookies"]["value"])
    assert counts == {"secret_field": 2, "password": 2}


def test_placeholders_under_secret_keys_survive(r):
    args = {"password": "${DB_PASSWORD}", "token": "{{ secrets.GH_TOKEN }}", "api_key": "<your-api-key>",
            "secret": "********", "client_secret": "", "auth_token": "$TOKEN", "access_token": "REDACTED",
            "private_key": "os.environ['KEY']"}
    out, counts = r.redact_fields(_event(args))
    assert out["args"] == args and counts == {}


def test_secret_in_dict_key_is_redacted(r):
    out, counts = r.redact_fields(_event({GHP: 1, "x": 2}))
    assert list(out["args"])[0].startswith("[REDACTED:github_token:") and counts == {"github_token": 1}


def test_all_string_fields_are_scanned(r):
    out, counts = r.redact_fields(_event({}, error=f"401 for {GHP}", reason=f"saw {GHP}",
                                         labels={"deploy_token": "t0k3n-value", "team": "infra"},
                                         correlation_id=GHP))
    s = orjson.dumps(out).decode()
    assert GHP not in s and "t0k3n-value" not in s and "infra" in s
    assert counts == {"github_token": 3, "secret_field": 1}


def test_card_number_as_integer(r):
    out, counts = r.redact_fields(_event({"card": 4111111111111111, "order": 1234567890123, "n": 42}))
    assert MARKER.fullmatch(out["args"]["card"]) and out["args"]["order"] == 1234567890123
    assert counts == {"card_number": 1}


# --------------------------------------------------------------------------- free text


@pytest.mark.parametrize("text,expected_type,secret", [
    ("mysql -h db -u root -pS3cr3tPass app", "password", "S3cr3tPass"),
    ("curl -u admin:Adm1n-Pass https://ci.local/api", "basic_auth", "Adm1n-Pass"),
    ("Authorization: Basic YWxpY2U6czNjcjN0LXB3", "basic_auth", "YWxpY2U6czNjcjN0LXB3"),
    ("export PGPASSWORD=Pg-Pass-42 && psql", "password", "Pg-Pass-42"),
    ("Cookie: sid=8f3a9c2e1b; theme=dark", "secret_field", "sid=8f3a9c2e1b"),
    ("amqp://guest:Gu3st-Pw@mq:5672/", "url_credentials", "Gu3st-Pw"),
    ("https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFG/abcdefghijklmnopqrstuvwx", "slack_webhook",
     "T0ABCDEFG/B0ABCDEFG/abcdefghijklmnopqrstuvwx"),
    ("card: 4111-1111-1111-1111 exp 12/29", "card_number", "4111-1111-1111-1111"),
    ("amex 3782 822463 10005 ok", "card_number", "3782 822463 10005"),
    ("{\"client_secret\": \"Zx9-Yw8_Vu7\"}", "secret_field", "Zx9-Yw8_Vu7"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
])
def test_text_types(r, text, expected_type, secret):
    out, counts = r.redact_text(text)
    assert secret not in out and expected_type in counts, (out, counts)


def test_surrounding_text_stays_readable(r):
    out, _ = r.redact_text("psql postgres://app:S3cretPw@db.internal:5432/app -c 'select 1'")
    assert out.startswith("psql postgres://app:[REDACTED:url_credentials:")
    assert out.endswith("@db.internal:5432/app -c 'select 1'")


def test_percent_encoded_secret_replaced_in_place(r):
    out, counts = r.redact_text("https://e.com/cb?next=%2Fhome&u=postgres%3A%2F%2Fa%3AS3cretPw%40db%2Fx&lang=en")
    assert "S3cretPw" not in out and counts == {"url_credentials": 1}
    assert out.startswith("https://e.com/cb?next=%2Fhome&u=postgres%3A%2F%2Fa%3A[REDACTED:url_credentials:")
    assert out.endswith("%40db%2Fx&lang=en")


def test_base64_blob_replaced_by_inner_markers(r):
    blob = base64.b64encode(f"config:\n  token: {GHP}\n  password=Sup3r-Secret\n".encode()).decode()
    out, counts = r.redact_text(f"attachment={blob} size=42")
    assert blob not in out and counts == {"github_token": 1, "password": 1}
    assert out.startswith("attachment=[REDACTED:github_token:") and out.endswith("] size=42")


def test_bytes_and_non_ascii_text(r):
    out, counts = r.redact_text(f"Grüße, ключ: {GHP} — 東京 password=Pässwörd1")
    assert GHP not in out and "Pässwörd1" not in out and counts == {"github_token": 1, "password": 1}
    assert out.startswith("Grüße, ключ: [REDACTED:github_token:")


def test_private_key_truncated_and_escaped(r):
    body = base64.b64encode(os.urandom(96)).decode()
    for text in (f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body[:64]}\n{body[64:]}",  # truncated, no END
                 f"-----BEGIN EC PRIVATE KEY-----\\n{body[:64]}\\n{body[64:]}\\n-----END EC PRIVATE KEY-----"):
        out, counts = r.redact_text(text)
        assert body[:20] not in out and body[-20:] not in out and counts == {"private_key": 1}


# --------------------------------------------------------------------------- configuration


def test_user_rules_keywords_entropy_and_allowlist(tmp_path):
    settings_ = RedactionSettings(
        rules=[RedactionRule(name="acme_key", regex=r"\bacme_(?P<secret>[a-z0-9]{16})\b", keywords=["acme"]),
               RedactionRule(name="ticket_secret", regex=r"TS-[A-Z0-9]{12}", entropy=3.0)],
        allowlist=["AKIAIOSFODNN7EXAMPLE", "hunter2-demo"],
        secret_keys=["x_internal_ref"], safe_keys=["session_token"],
    )
    r = Redactor.from_settings(settings_, tmp_path / "keys")
    out, counts = r.redact_text("use acme_0123456789abcdef now")
    assert out.startswith("use acme_[REDACTED:acme_key:") and counts == {"acme_key": 1}
    assert r.redact_text("use xcme_0123456789abcdef")[1] == {}
    assert r.redact_text("code TS-AB12CD34EF56")[1] == {"ticket_secret": 1}
    assert r.redact_text("code TS-AAAAAAAAAAAA")[1] == {}  # below the entropy threshold
    assert r.redact_text("docs use AKIAIOSFODNN7EXAMPLE")[1] == {}
    out, counts = r.redact_fields(_event({"password": "hunter2-demo", "x_internal_ref": "abc",
                                          "session_token": "plain", "k": "AKIAIOSFODNN7EXAMPLE"}))
    assert out["args"]["password"] == "hunter2-demo" and out["args"]["session_token"] == "plain"
    assert MARKER.fullmatch(out["args"]["x_internal_ref"]) and counts == {"secret_field": 1}


def test_user_rule_without_keywords_inside_json_escapes(tmp_path):
    r = Redactor.from_settings(RedactionSettings(rules=[RedactionRule(name="corp_id", regex=r"CORP\s[0-9]{6}")]),
                               tmp_path)
    out, counts = r.redact_fields(_event({"n": "id:\tCORP\t123456"}))
    assert "123456" not in orjson.dumps(out).decode() and counts == {"corp_id": 1}


def test_disabled_types(tmp_path):
    r = Redactor.from_settings(RedactionSettings(disabled_types=["card_number"]), tmp_path)
    assert r.redact_text("4111 1111 1111 1111")[1] == {}


@pytest.mark.parametrize("bad", [
    {"rules": [{"name": "x", "regex": "(?<=a)b"}]},  # look-behind: not RE2
    {"rules": [{"name": "x", "regex": "a*"}]},  # matches the empty string
    {"rules": [{"name": "Bad Name", "regex": "abc"}]},
    {"disabled_types": ["nope"]},
    {"fingerprint_chars": 4},
])
def test_settings_validation(bad):
    with pytest.raises(ValidationError):
        RedactionSettings.model_validate(bad)


def test_builtin_types_listed():
    assert set(SECRET_TYPES) <= set(BUILTIN_TYPES)


# --------------------------------------------------------------------------- key file


def test_key_file_created_0600_and_reused(tmp_path):
    keys = tmp_path / "keys"
    r1 = Redactor.from_settings(RedactionSettings(), keys)
    path = keys / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    r2 = Redactor.from_settings(RedactionSettings(), keys)
    assert r1.redact_text(GHP) == r2.redact_text(GHP) and r1.key_id == r2.key_id
    assert not [p for p in keys.iterdir() if p.name != KEY_FILE_NAME]  # no temp files left


def test_key_file_concurrent_creation_agrees(tmp_path):
    keys = tmp_path / "keys"
    results: list[str] = []

    def make():
        results.append(Redactor.from_settings(RedactionSettings(), keys).key_id)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1


def test_default_key_file_permissions_are_tightened(tmp_path):
    keys = tmp_path / "keys"
    Redactor.from_settings(RedactionSettings(), keys)
    os.chmod(keys / KEY_FILE_NAME, 0o644)
    Redactor.from_settings(RedactionSettings(), keys)
    assert stat.S_IMODE((keys / KEY_FILE_NAME).stat().st_mode) == 0o600


def test_supplied_key_file(tmp_path):
    kf = tmp_path / "my.key"
    kf.write_text(os.urandom(32).hex() + "\n")
    os.chmod(kf, 0o600)
    r = Redactor.from_settings(RedactionSettings(key_file=str(kf)), tmp_path / "unused")
    expect = hmac.new(bytes.fromhex(kf.read_text()), f"github_token:{GHP}".encode(), hashlib.sha256).hexdigest()[:12]
    assert r.redact_text(GHP)[0].endswith(f":{expect}]")
    assert not (tmp_path / "unused").exists()
    os.chmod(kf, 0o644)
    with pytest.raises(RedactionKeyError, match="chmod 600"):
        Redactor.from_settings(RedactionSettings(key_file=str(kf)), tmp_path)
    new = tmp_path / "sub" / "new.key"
    Redactor.from_settings(RedactionSettings(key_file=str(new)), tmp_path)
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


def test_bad_key_file_message_has_no_key_bytes(tmp_path):
    kf = tmp_path / "short.key"
    kf.write_bytes(b"tooshort-secret-material")
    os.chmod(kf, 0o600)
    with pytest.raises(RedactionKeyError) as ei:
        load_or_create_key(kf, strict_mode=True)
    assert "tooshort" not in str(ei.value)
    with pytest.raises(RedactionKeyError):
        Redactor(b"short")


# --------------------------------------------------------------------------- robustness


def test_exceptions_never_carry_secrets(r):
    deep: dict = {"password": "Deep-S3cret-Value"}
    for _ in range(400):
        deep = {"a": deep}
    cyclic: list = [GHP]
    cyclic.append(cyclic)
    for bad in (_event(deep), _event({"a": cyclic})):
        with pytest.raises(Exception) as ei:  # noqa: B017, PT011
            r.redact_fields(bad)
        msg = f"{ei.value!r} {ei.value}"
        assert "Deep-S3cret-Value" not in msg and GHP not in msg
    with pytest.raises(TypeError) as ei:
        r.redact_text(12345)  # type: ignore[arg-type]
    assert "12345" not in str(ei.value)


def test_non_json_values_are_left_alone(r):
    ev = _event({"when": object(), "s": {1, 2}, "tok": GHP})
    out, counts = r.redact_fields(ev)
    assert counts == {"github_token": 1} and out["args"]["s"] == {1, 2}


def test_large_hostile_input_is_linear_time(r):
    import time

    texts = ["a" * 200_000 + "password", "=" * 100_000, "key" * 60_000, "%41" * 60_000, "eyJ" * 60_000,
             ("A" * 39 + "/") * 4000, "4" * 200_000, "-----BEGIN PRIVATE KEY-----" + "A" * 200_000,
             "token " * 30_000 + GHP]
    for t in texts:
        t0 = time.process_time()
        out, _ = r.redact_text(t)
        assert time.process_time() - t0 < 5.0
    assert GHP not in out


def test_gate_finds_secret_at_end_of_long_text(r):
    filler = "".join(random.Random(1).choice("abcdefghij klmnop QRSTUV 0123456789/+") for _ in range(200_000))
    out, counts = r.redact_text(filler + " " + GHP)
    assert GHP not in out and counts.get("github_token") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.text(max_size=40), suffix=st.text(max_size=40),
       kind=st.sampled_from([t for t in SECRET_TYPES if t not in ("password", "secret_field", "high_entropy")]),
       seed=st.integers(0, 2**32))
def test_property_secret_in_any_text_is_removed(prefix, suffix, kind, seed):
    r = Redactor(KEY)
    sec = gen_secret(kind, random.Random(seed))
    text = f"{prefix} {sec.snippet} {suffix}"
    out, counts = r.redact_text(text)
    for frag in sec.must_not_survive:
        assert frag not in out
    assert counts
    assert r.redact_text(out) == (out, {})  # idempotent


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=30),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                    max_leaves=20))
def test_property_arbitrary_json_never_raises_and_keeps_shape(args):
    r = Redactor(KEY)
    out, counts = r.redact_fields({"args": args, "error": "x"})

    def shape(v):
        if isinstance(v, dict):
            return ("d", len(v))
        if isinstance(v, list):
            return ("l", [shape(x) for x in v])
        return "s"

    assert shape(out["args"]) == shape(args) or counts
    if not counts:
        assert out == {"args": args, "error": "x"}


def test_helpers():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert is_placeholder("${API_KEY}") and is_placeholder("DB_PASSWORD") and not is_placeholder("$m71JxYYQi")


# --------------------------------------------------------------------------- fast path == full walk

_KEY_WORDS = ["password", "pass", "pwd", "secret", "token", "api", "key", "access", "private", "auth", "cookie",
              "session", "client", "dsn", "conn", "str", "string", "credentials", "jwt", "pat", "otp", "header",
              "basic", "max", "count", "name", "id", "next", "user", "db", "x", "aws", "value", "data"]


@st.composite
def _key_names(draw):
    words = draw(st.lists(st.sampled_from(_KEY_WORDS), min_size=1, max_size=4))
    style = draw(st.sampled_from(["snake", "kebab", "camel", "upper", "plain", "dots", "title"]))
    if style == "camel":
        return words[0] + "".join(w.title() for w in words[1:])
    if style == "title":
        return "-".join(w.title() for w in words)
    sep = {"snake": "_", "kebab": "-", "upper": "_", "plain": "", "dots": "."}[style]
    k = sep.join(words)
    return k.upper() if style == "upper" else k


@st.composite
def _values(draw):
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.text(max_size=30))
    if kind == 1:
        return gen_secret(draw(st.sampled_from(SECRET_TYPES)), random.Random(draw(st.integers(0, 2**32)))).snippet
    if kind == 2:
        return draw(st.sampled_from(["${TOKEN}", "hunter2", "Tr0ub4dor&3", "null", "", "x" * 40, "ok"]))
    if kind == 3:
        return draw(st.integers(-10**15, 10**16))
    if kind == 4:
        return f"{draw(_key_names())}={draw(st.sampled_from(['S3cr3t-V4lue', 'abc', '${X}']))}"
    return base64.b64encode(draw(st.text(min_size=12, max_size=40)).encode()).decode()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_key_names(), st.one_of(_values(), st.lists(_values(), max_size=3),
                                               st.dictionaries(_key_names(), _values(), max_size=3)), max_size=5),
       st.one_of(st.none(), _values().filter(lambda v: isinstance(v, str))))
def test_property_fast_path_agrees_with_full_walk(args, error):
    """The gate / mid-path shortcuts never change the result: same output as walking everything."""
    r = Redactor(KEY, secret_keys=["internal_ref"])
    ev = _event(args) if error is None else _event(args, error=error)
    assert r.redact_fields(ev) == r._redact_fields_walk(ev, None)


def test_fast_path_agrees_on_corpus():
    from tests.ingest.redaction_corpus import lookalikes, realistic_events, secret_cases

    r = Redactor(KEY)
    evs = realistic_events(1500, seed=21, secret_ratio=0.2) + [c.fields for c in secret_cases(4, 1)]
    evs += [{"args": v if isinstance(v, dict) else {"note": v}} for _, v in lookalikes(4)]
    for ev in evs:
        assert r.redact_fields(ev) == r._redact_fields_walk(ev, None)
