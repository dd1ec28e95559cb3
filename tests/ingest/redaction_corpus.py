"""Generated corpora for the redaction tests and benchmark.

- `secret_cases(seed)`: every secret type x placement (secret-named key, innocuous key,
  prose, nested lists/objects, command line / URL) plus encoded variants (base64, URL-safe
  base64, percent-encoding). Each case carries the strings that must not survive.
- `lookalikes(seed)`: >= 1,000 values that resemble secrets but are not.
- `realistic_events(n, seed, secret_ratio)`: MCP tool-call events as gateways send them.

Secrets are random (seeded) and built from the published token formats; none is real.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import string
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _mixed(rng: random.Random, alphabet: str, n: int) -> str:
    """Random string that has at least one upper, one lower and one digit."""
    while True:
        s = _rand(rng, alphabet, n)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def _b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# --------------------------------------------------------------------------- secrets


@dataclass
class Secret:
    type: str  # the marker type we expect when the secret sits in free text
    snippet: str  # how it appears in free text (may include context like "Bearer ")
    must_not_survive: list[str]  # fragments that must be gone after redaction
    value: str = ""  # the value under a secret-named key
    key: str = "token"  # a secret-named key for this kind of secret
    extra_types: frozenset[str] = field(default_factory=frozenset)  # also acceptable types


def gen_secret(type_: str, rng: random.Random) -> Secret:  # noqa: C901 - one branch per type
    t = type_
    if t == "aws_access_key":
        s = rng.choice(["AKIA", "ASIA"]) + _rand(rng, string.ascii_uppercase + "234567", 16)
        return Secret(t, s, [s], s, "aws_access_key_id_value")
    if t == "aws_secret_key":
        s = _mixed(rng, B64, 40)
        return Secret(t, s, [s], s, "aws_secret_access_key", frozenset({"high_entropy"}))
    if t == "github_token":
        if rng.random() < 0.3:
            s = "github_pat_" + _rand(rng, ALNUM, 22) + "_" + _rand(rng, ALNUM, 59)
        else:
            s = rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _mixed(rng, ALNUM, 36)
        return Secret(t, s, [s], s, "github_token")
    if t == "gitlab_token":
        s = rng.choice(["glpat-", "glpat-", "gldt-", "glrt-", "glptt-"]) + _mixed(rng, ALNUM + "_-", 20)
        return Secret(t, s, [s], s, "GITLAB_TOKEN")
    if t == "slack_token":
        kind = rng.choice(["xoxb", "xoxp", "xoxa", "xapp"])
        if kind == "xapp":
            s = f"xapp-1-A{_rand(rng, string.ascii_uppercase + string.digits, 10)}-{rng.randint(10**12, 10**13)}-" \
                + _rand(rng, "0123456789abcdef", 64)
        else:
            s = f"{kind}-{rng.randint(10**10, 10**12)}-{rng.randint(10**10, 10**12)}-{_mixed(rng, ALNUM, 24)}"
        return Secret(t, s, [s], s, "slack_bot_token")
    if t == "slack_webhook":
        path = f"T{_rand(rng, string.ascii_uppercase + string.digits, 10)}/B{_rand(rng, string.ascii_uppercase + string.digits, 10)}/{_mixed(rng, ALNUM, 24)}"  # noqa: E501
        s = "https://hooks.slack.com/services/" + path
        return Secret(t, s, [path], s, "webhook_secret_url")
    if t == "stripe_key":
        s = rng.choice(["sk_live_", "rk_live_", "sk_test_", "whsec_"]) + _mixed(rng, ALNUM, rng.choice([24, 32, 99]))
        return Secret(t, s, [s], s, "stripe_secret_key")
    if t == "openai_key":
        if rng.random() < 0.5:
            s = "sk-proj-" + _mixed(rng, URLSAFE, 74) + "T3BlbkFJ" + _mixed(rng, URLSAFE, 74)
        else:
            s = "sk-" + _mixed(rng, ALNUM, 48)
        return Secret(t, s, [s], s, "OPENAI_API_KEY")
    if t == "anthropic_key":
        s = "sk-ant-api03-" + _mixed(rng, URLSAFE, 93) + "AA"
        return Secret(t, s, [s], s, "ANTHROPIC_API_KEY")
    if t == "google_api_key":
        s = "AIza" + _rand(rng, URLSAFE, 35)
        return Secret(t, s, [s], s, "google_api_key")
    if t == "google_oauth_secret":
        s = "GOCSPX-" + _mixed(rng, URLSAFE, 28)
        return Secret(t, s, [s], s, "client_secret")
    if t == "huggingface_token":
        s = "hf_" + _hf(rng)
        return Secret(t, s, [s], s, "HF_TOKEN")
    if t == "npm_token":
        s = "npm_" + _mixed(rng, ALNUM, 36)
        return Secret(t, s, [s], s, "NPM_TOKEN")
    if t == "sendgrid_key":
        s = "SG." + _rand(rng, URLSAFE, 22) + "." + _rand(rng, URLSAFE, 43)
        return Secret(t, s, [s], s, "sendgrid_api_key")
    if t == "jwt":
        header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}).encode())
        payload = _b64url(json.dumps({"sub": str(rng.randint(1, 10**9)), "iat": rng.randint(1_600_000_000, 1_800_000_000),
                                      "scope": "repo read:org"}).encode())
        sig = _b64url(rng.randbytes(32))
        s = f"{header}.{payload}.{sig}"
        return Secret(t, s, [payload, sig], s, "id_token", frozenset({"bearer_token"}))
    if t == "private_key":
        label = rng.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY",
                            "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY"])
        body = base64.b64encode(rng.randbytes(rng.choice([120, 300, 900]))).decode()
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        s = f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"
        return Secret(t, s, [ln for ln in lines if len(ln) >= 16], s, "private_key")
    if t == "url_credentials":
        user = rng.choice(["admin", "deploy", "app_user", "postgres", "svc-backup"])
        pw = _mixed(rng, ALNUM + "!$*_.~-", rng.randint(10, 24))
        host = rng.choice(["db.internal.example.com:5432/app", "cache.example.net:6379/0", "mq.example.org/vhost",
                           "10.0.3.17:27017/admin", "ftp.example.com/pub"])
        scheme = rng.choice(["postgres", "postgresql", "mysql", "redis", "amqp", "mongodb+srv", "https", "ftp"])
        s = f"{scheme}://{user}:{pw}@{host}"
        return Secret(t, s, [pw], s, "database_url")
    if t == "bearer_token":
        tok = _mixed(rng, ALNUM + "._-", rng.randint(24, 64))
        s = f"Bearer {tok}"
        return Secret(t, s, [tok], s, "Authorization")
    if t == "basic_auth":
        user = rng.choice(["alice", "ci-bot", "svc_report"])
        pw = _mixed(rng, ALNUM + "!@#%^*", rng.randint(10, 20))
        enc = base64.b64encode(f"{user}:{pw}".encode()).decode()
        s = f"Basic {enc}"
        return Secret(t, s, [enc, pw], s, "authorization", frozenset({"secret_field"}))
    if t == "card_number":
        prefix, length = rng.choice([("4", 16), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
                                     ("6011", 16), ("65", 16), ("3530", 16), ("36", 14), ("62", 16)])
        digits = _luhn_complete(prefix, length, rng)
        sep = rng.choice(["", " ", "-"])
        if sep and length == 16:
            s = sep.join(digits[i:i + 4] for i in range(0, 16, 4))
        elif sep and length == 15:
            s = sep.join([digits[:4], digits[4:10], digits[10:]])
        else:
            s = digits
        return Secret(t, s, [s, digits], s, "card_number")
    if t == "password":
        pw = _mixed(rng, ALNUM + "!#%^*_+", rng.randint(8, 20))
        s = rng.choice([f"password={pw}", f"PGPASSWORD={pw}", f"--password {pw}", f"DB_PASS={pw}",
                        f'"password": "{pw}"', f"passwd: {pw}"])
        return Secret(t, s, [pw], pw, rng.choice(["password", "db_password", "userPassword", "PASSWD", "passphrase"]))
    if t == "secret_field":
        val = _mixed(rng, ALNUM + "_-", rng.randint(12, 40))
        key = rng.choice(["api_key", "client_secret", "X-Api-Key", "access_token", "secret", "apiKey", "auth_token",
                          "SESSION_TOKEN", "webhook_secret", "private_key_value"])
        s = f"{key}={val}"
        return Secret(t, s, [val], val, key, frozenset({"password", "high_entropy", "aws_secret_key"}))
    if t == "high_entropy":
        val = _mixed(rng, ALNUM, rng.randint(20, 48))
        word = rng.choice(["token", "secret", "api key", "access key", "password", "credential"])
        s = f"my {word} is {val}"
        return Secret(t, s, [val], val, "token", frozenset({"secret_field", "password", "aws_secret_key"}))
    raise ValueError(t)


def _hf(rng: random.Random) -> str:
    while True:
        s = _rand(rng, string.ascii_letters, 34)
        if any(c.isupper() for c in s) and any(c.islower() for c in s):
            return s


SECRET_TYPES = (
    "aws_access_key", "aws_secret_key", "github_token", "gitlab_token", "slack_token", "slack_webhook", "stripe_key",
    "openai_key", "anthropic_key", "google_api_key", "google_oauth_secret", "huggingface_token", "npm_token",
    "sendgrid_key", "jwt", "private_key", "url_credentials", "bearer_token", "basic_auth", "card_number", "password",
    "secret_field", "high_entropy",
)
PLACEMENTS = ("secret_key", "innocuous_key", "prose", "nested", "command", "error_text",
              "base64", "base64url", "percent")

_PROSE = [
    "Hey team, {s} - can someone check why the deploy failed?",
    "Please use {s} for the staging run, thanks!",
    "Note to self:\n{s}\nrotate after the demo.",
    "FYI the config now contains {s}. Ping me if it breaks.",
]
_COMMANDS = [
    "export CREDS='{s}' && ./deploy.sh --env prod",
    "echo \"{s}\" | kubectl create secret generic app --from-file=/dev/stdin",
    "docker run -e SETTING=\"{s}\" ghcr.io/acme/app:1.4",
    "python scripts/sync.py --verbose --note \"{s}\"",
]


def _command_for(sec: Secret, rng: random.Random) -> str:
    t = sec.type
    if t == "url_credentials":
        return f"psql '{sec.snippet}' -c 'select 1'"
    if t == "slack_webhook":
        return f"curl -X POST -H 'Content-type: application/json' --data '{{\"text\":\"hi\"}}' {sec.snippet}"
    if t == "bearer_token":
        return f"curl -sS -H 'Authorization: {sec.snippet}' https://api.example.com/v1/me"
    if t == "basic_auth":
        user_pw = base64.b64decode(sec.snippet.split()[1]).decode()
        return rng.choice([f"curl -u '{user_pw}' https://ci.example.com/api/json",
                           f"curl -H 'Authorization: {sec.snippet}' https://ci.example.com/api/json"])
    if t == "password":
        pw = sec.value
        return rng.choice([f"mysql -h db -u root -p{pw} app", f"PGPASSWORD={pw} psql -h db -U app",
                           f"sshpass -p {pw} ssh deploy@host", f"./migrate --password={pw} --dry-run",
                           f"redis-cli -h cache -a {pw} ping"])
    if t == "private_key":
        return f"printf '%s' '{sec.snippet}' > ~/.ssh/id_deploy && chmod 600 ~/.ssh/id_deploy"
    if t in ("jwt", "github_token", "gitlab_token", "openai_key", "anthropic_key", "stripe_key", "npm_token",
             "huggingface_token", "slack_token", "sendgrid_key"):
        return rng.choice([f"curl -H 'Authorization: Bearer {sec.snippet}' https://api.example.com/x",
                           f"git clone https://oauth2:{sec.snippet}@gitlab.example.com/grp/repo.git",
                           f"https://api.example.com/v1/data?format=json&access_token={sec.snippet}&page=2",
                           f"export API_TOKEN={sec.snippet}; make release"])
    if t in ("google_api_key",):
        return f"https://maps.googleapis.com/maps/api/geocode/json?address=Berlin&key={sec.snippet}"
    return rng.choice(_COMMANDS).format(s=sec.snippet)


@dataclass
class Case:
    type: str
    placement: str
    fields: dict[str, Any]
    must_not_survive: list[str]
    expect_types: frozenset[str]  # at least one of these must be counted (empty: any)

    @property
    def id(self) -> str:
        return f"{self.type}-{self.placement}"


_IDS = itertools.count()


def _event(args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    ev = {"event_id": f"evt-{next(_IDS):08d}", "ts": "2026-05-29T11:04:22.000000Z", "principal": "alice@example.com",
          "agent": "claude-desktop", "session": "sess-42", "server": "tools", "tool": "do_thing", "args": args,
          "decision": "allow", "result": "ok"}
    ev.update(extra)
    return ev


def make_case(t: str, placement: str, rng: random.Random, sec: Secret | None = None) -> Case:
    """One event carrying one fresh secret of type `t` at `placement`."""
    sec = sec or gen_secret(t, rng)
    typed = frozenset({t}) | sec.extra_types
    if placement == "secret_key":
        # under a secret-named key any marker type is fine (typed or secret_field)
        return Case(t, placement, _event({sec.key: sec.value, "region": "eu-west-1"}), sec.must_not_survive,
                    frozenset())
    if placement == "innocuous_key":
        fields = _event({rng.choice(["note", "value", "data", "text", "input"]): sec.snippet, "count": 3})
    elif placement == "prose":
        fields = _event({"message": rng.choice(_PROSE).format(s=sec.snippet), "channel": "#ops"})
    elif placement == "nested":
        fields = _event({"config": {"steps": [{"name": "build", "env": ["CI=1", sec.snippet]},
                                              {"name": "deploy", "with": {"notes": [sec.snippet]}}]}})
    elif placement == "command":
        fields = _event({"command": _command_for(sec, rng), "cwd": "/srv/app"})
    elif placement == "error_text":
        fields = _event({"id": 7}, result="error", error=f"request failed: upstream said 401 for {sec.snippet}",
                        reason=f"policy matched input {sec.snippet}", decision="deny")
    elif placement == "base64":
        enc = base64.b64encode(f"config: {sec.snippet}\n".encode()).decode()
        return Case(t, placement, _event({"attachment": enc, "mime": "text/plain"}), [*sec.must_not_survive, enc], typed)
    elif placement == "base64url":
        enc = base64.urlsafe_b64encode(sec.snippet.encode()).decode().rstrip("=")
        return Case(t, placement, _event({"state": enc, "kind": "cursor"}), [*sec.must_not_survive, enc], typed)
    elif placement == "percent":
        enc = quote(sec.snippet, safe="")
        fields = _event({"url": f"https://example.com/callback?next=%2Fhome&data={enc}&lang=en"})
        return Case(t, placement, fields, [*sec.must_not_survive, enc], typed)
    else:
        raise ValueError(placement)
    return Case(t, placement, fields, sec.must_not_survive, typed)


def secret_cases(seed: int = 1, per_type: int = 3) -> list[Case]:
    """`per_type` fresh secrets per (type, placement)."""
    rng = random.Random(seed)
    return [make_case(t, p, rng) for t in SECRET_TYPES for p in PLACEMENTS for _ in range(per_type)]


# --------------------------------------------------------------------------- look-alikes


def lookalikes(seed: int = 2) -> list[tuple[str, Any]]:
    """(category, value) pairs: >= 1,000 strings (and a few key/value dicts) that are not secrets."""
    rng = random.Random(seed)
    out: list[tuple[str, Any]] = []
    for _ in range(120):
        out.append(("uuid", str(uuid.UUID(int=rng.getrandbits(128), version=4))))
    for _ in range(80):
        out.append(("git_sha", rng.randbytes(20).hex()))
        out.append(("git_sha_short", rng.randbytes(20).hex()[: rng.randint(7, 12)]))
    for _ in range(80):
        d = rng.randbytes(32).hex()
        out.append(("sha256", rng.choice([d, f"sha256:{d}", f"nginx@sha256:{d}", f"{d}  dist/app.tar.gz"])))
    prose = [
        "Please reset your password before Friday.", "The token expired, please request a new one.",
        "Rotate the API key every 90 days as per policy.", "Token usage: 1532 prompt tokens, 211 completion tokens.",
        "Forgot password? Click the link below to choose a new one.", "Your password must be at least 12 characters.",
        "token: expired", "secret: see the team vault", "The api_key parameter is required for this endpoint.",
        "Use a bearer token in the Authorization header.", "Basic authentication is disabled on this server.",
        "password: please ask the admin", "The secret to good coffee is fresh beans.",
        "Passwords are hashed with argon2id before storage.", "We store only a SHA-256 of each token.",
        "Did you commit the .env file? It should be in .gitignore.", "Authorization failed: missing credentials.",
        "Set the password via the UI, never in chat.", "Cookie consent banner shown to EU visitors.",
        "The JWT library was upgraded to 2.8.0.", "private key handling moved to the KMS module",
        "Key rotation is scheduled for 2026-06-01.", "Bearer of this letter is authorized to collect the parcel.",
        "session token refresh interval is 15 minutes", "password reset emails are rate limited to 3 per hour",
        "Access keys older than 90 days will be deactivated.", "The token bucket allows 200 requests per second.",
        "tokens per minute limit reached (TPM: 90000)", "ERROR: password authentication failed for user \"app\"",
        "AccessDenied: The security token included in the request is expired",
        "InvalidClientTokenId: The security token included in the request is invalid.",
        "Please don't paste secrets into Slack.", "See docs/auth/tokens.md for the token lifecycle.",
        "The passphrase prompt appears when the key is encrypted.", "Auth header missing; retrying with refresh flow.",
        "credentials: use the default provider chain", "Bearer tokens expire after 3600 seconds.",
    ]
    for i in range(160):
        out.append(("prose", prose[i % len(prose)] if i < len(prose) else
                    f"{prose[i % len(prose)]} (ticket OPS-{rng.randint(100, 9999)})"))
    dirs = ["home/alice", "srv/app", "var/lib/postgresql/data", "Users/bob/Projects", "opt/tooltrail", "etc/nginx"]
    files = ["secrets.yaml", "token_store.py", "id_rsa.pub", "passwd", "credentials.json.example", "README.md",
             "auth/token.go", "src/components/PasswordField.tsx", "keys/public.pem", "api_key_loader.rs",
             "config/settings.toml", "pg_hba.conf", "app-1.4.2.tar.gz", "migrations/0042_add_tokens.sql"]
    for _ in range(110):
        p = f"/{rng.choice(dirs)}/{rng.choice(files)}"
        out.append(("path", rng.choice([p, p.replace("/", "\\").lstrip("\\").replace("home", "C:\\Users", 1), "." + p,
                                        f"~/{rng.choice(files)}"])))
    urls = [
        "https://github.com/acme/tooltrail/pull/{n}", "https://api.example.com/v1/users?page={n}&limit=50",
        "postgres://db.internal:5432/app", "https://example.com/reset-password?lang=en", "https://user@example.com/",
        "https://example.com/auth/callback?state=ok&code_challenge_method=S256", "http://localhost:8080/healthz",
        "https://docs.example.com/tokens#rotation", "s3://acme-logs/2026/05/29/part-{n}.parquet",
        "https://hooks.example.com/services/status", "redis://cache.internal:6379/0", "https://[::1]:8443/metrics",
        "https://example.com/search?q=how+to+rotate+api+key", "ftp://ftp.example.org/pub/file-{n}.txt",
        "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz", "mailto:security@example.com",
        "https://console.aws.amazon.com/iam/home#/security_credentials", "git@github.com:acme/infra.git",
    ]
    for i in range(110):
        out.append(("url", urls[i % len(urls)].format(n=rng.randint(1, 99999))))
    for _ in range(110):
        out.append(("order", rng.choice([
            f"ORD-{rng.randint(2019, 2026)}-{rng.randint(0, 999999):06d}", f"#{rng.randint(100000, 999999)}",
            f"PO-{rng.randint(10000, 99999)}", f"INV-{rng.randint(2019, 2026)}-{rng.randint(1, 9999):04d}",
            f"order {rng.randint(10**6, 10**10)}", f"tracking 1Z{rng.randint(10**15, 10**16 - 1)}",
            f"{rng.randint(10**11, 10**12 - 1)}", f"invoice {rng.randint(1, 9)}{rng.randint(10**8, 10**9)}",
            f"+1 415 555 {rng.randint(1000, 9999)}", f"ticket {rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
            f"{rng.randint(1700000000000, 1800000000000)}",
        ])))
    sql = [
        "SELECT id, email FROM users WHERE password_hash IS NOT NULL",
        "UPDATE sessions SET token = ? WHERE id = ?",
        "INSERT INTO api_keys (name, created_at) VALUES ('ci', now())",
        "GRANT SELECT ON secrets TO analyst",
        "SELECT count(*) FROM tokens WHERE expires_at < now() - interval '30 days'",
        "DELETE FROM password_resets WHERE created_at < :cutoff",
        "SELECT * FROM orders WHERE customer_id = $1 AND status = 'paid' LIMIT 100",
        "ALTER TABLE users ADD COLUMN mfa_secret_enc bytea",
        "UPDATE users SET password = crypt($1, gen_salt('bf')) WHERE id = $2",
        "CREATE INDEX idx_tokens_user ON tokens(user_id)",
        "SELECT token_id, last_used FROM api_tokens ORDER BY last_used DESC",
    ]
    for i in range(110):
        out.append(("sql", sql[i % len(sql)] + ("" if i < len(sql) else f" -- q{rng.randint(1, 999)}")))
    placeholders = [
        "${API_KEY}", "{{ secrets.GITHUB_TOKEN }}", "$DB_PASSWORD", "<your-api-key>", "%(password)s",
        "process.env.OPENAI_API_KEY", "os.environ['AWS_SECRET_ACCESS_KEY']", "password=${DB_PASS}",
        "Authorization: Bearer ${TOKEN}", "export GITHUB_TOKEN=$(cat ~/.config/gh/token)", "api_key: <redacted>",
        "token=********", "password: xxxxxxxx", "SECRET_KEY={{ vault_secret_key }}", "Bearer <token>",
        "postgres://${DB_USER}:${DB_PASS}@db:5432/app", "--password=$MYSQL_PWD", "client_secret: YOUR_CLIENT_SECRET",
        "token: null", "api_key=REDACTED", "sk_live_...", "ghp_************************************",
        "password=DB_PASSWORD", "token = get_token()", "password=self.password", "apiKey: process.env.API_KEY",
    ]
    for i in range(130):
        out.append(("placeholder", placeholders[i % len(placeholders)]))
    misc = [
        lambda: _b64url(json.dumps({"offset": rng.randint(0, 5000), "sort": "ts"}).encode()),  # pagination cursor
        lambda: base64.b64encode(rng.choice([b"hello world, this is a note", b"just some plain text here"])).decode(),
        lambda: f"{rng.randint(1, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
        lambda: f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}",
        lambda: f"user{rng.randint(1, 999)}@example.com",
        lambda: f"req_{_rand(rng, string.ascii_lowercase + string.digits, 12)}",
        lambda: "01" + _rand(rng, "0123456789ABCDEFGHJKMNPQRSTVWXYZ", 24),  # ULID
        lambda: f"pk_live_{_mixed(rng, ALNUM, 24)}",  # Stripe publishable keys are public
        lambda: "def get_token(self) -> str:\n    return self._token",
        lambda: f"arn:aws:iam::{rng.randint(10**11, 10**12 - 1)}:role/deploy",
        lambda: f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{_rand(rng, B64, 43)} alice@laptop",
        lambda: f"i-{rng.randbytes(8).hex()[:17]}",
        lambda: f"sha512-{base64.b64encode(rng.randbytes(64)).decode()}",  # npm integrity
        lambda: f"2026-05-{rng.randint(10, 28)}T{rng.randint(10, 23)}:04:22.123456Z",
        lambda: f"tokenizer: cl100k_base, max_tokens={rng.randint(100, 8000)}",
        lambda: f"key={rng.choice(['photos/cat.jpg', 'reports/2026-05.csv'])}",
    ]
    for i in range(160):
        out.append(("misc", misc[i % len(misc)]()))
    for v in _MORE_LOOKALIKES:
        out.append(("misc", v))
    kv = [
        {"max_tokens": 4096}, {"token_count": "1532"}, {"secret_name": "prod/db/readonly"}, {"password_policy": "min 12 chars"},
        {"next_token": "eyJwYWdlIjogMn0"}, {"tokens": 12}, {"token_type": "Bearer"}, {"password_required": True},
        {"credentials_file": "~/.aws/credentials"}, {"private_key_path": "/etc/ssl/private/site.key"},
        {"tokenizer": "cl100k_base"}, {"secretary": "Jane Doe"}, {"api_key_id": "key-2026-01"}, {"PWD": "/home/alice"},
        {"auth_method": "oauth2"}, {"cookie_consent": "accepted"}, {"token_url": "https://auth.example.com/oauth/token"},
        {"page_token": "CAUQAA"}, {"prompt_tokens": 211}, {"secret_arn": "arn:aws:secretsmanager:eu-west-1:123:secret:x"},
        {"key": "photos/2026/cat.jpg"}, {"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample alice"},
        {"password": "${DB_PASSWORD}"}, {"api_key": "<your-api-key>"}, {"token": ""}, {"token_expires_in": 3600},
    ]
    for i in range(60):
        out.append(("keyvalue", kv[i % len(kv)]))
    return out


_MORE_LOOKALIKES = [
    "Bearer instrument", "Basic usage of the API", "token: see above", "Password: ********",
    "password reset for user 1234", "kubectl get secret db-creds -o yaml",
    "aws secretsmanager get-secret-value --secret-id prod/db", "gh auth token", "npm token list", "AWS_ACCESS_KEY_ID",
    "Authorization header missing", "api_key=None", "password=None", "token=null",
    "ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519", "openssl genrsa -out key.pem 2048", 'WWW-Authenticate: Basic realm="api"',
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Fix token refresh race (#1234)",
    "self.api_key = api_key", "if password != confirm_password:", "token = request.headers.get('Authorization')",
    "def authenticate(username, password):", '{"type": "string", "description": "API key for the service"}',
    "v1.2.3-rc.1+build.5", "cus_NffrFeUfNV2Hib", "pi_3MtwBwLkdIwHu7ix28a3tqPa", "xoxo, Anna", "pip install scikit-learn",
    "password_hash = bcrypt.hashpw(pw, bcrypt.gensalt())", "export GITHUB_TOKEN", "token expired at 2026-05-29T11:04:22Z",
    "Your verification code is 482913", "session_id=3f2a9c1e-8b7d-4c6e-9f0a-1b2c3d4e5f60", "csrf_token mismatch",
    "access_token expires_in 3600", "Set-Cookie header rejected", "cookie: none", "AKIA prefix means long-term key",
    "https://user@github.com/org/repo.git", "mongodb://localhost:27017/test",
    "https://example.com/login?redirect=%2Fdashboard%3Ftab%3D2", "SELECT * FROM secrets WHERE name = 'db' LIMIT 1",
    "the key is in the drawer", "passphrase protected key file", "credentials: default", "auth: oauth2",
    "X-Request-Id: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", 'ETag: W/"5e15153d-120f"', "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    "jwt_secret_rotation_days=30", "tokens_used=1532", "tracking 9400111899223344556677", "IBAN DE89370400440532013000",
    "card ending in 1111", "min_password_length=12", "docker login --password-stdin",
    "echo $PASSWORD | docker login -u me --password-stdin", "password: ${{ secrets.DOCKER_PASSWORD }}",
    "token: '{{ .Values.token }}'", "api_key = os.getenv('API_KEY')", "const apiKey = process.env.API_KEY;",
    "md5 d41d8cd98f00b204e9800998ecf8427e", "ULID 01HZX3K9Q2W8E7R6T5Y4U3I2O1", "nanoid V1StGXR8_Z5jdHi6B-myT",
    "base64 of hello: aGVsbG8gd29ybGQ=", "cursor eyJwYWdlIjoyLCJzaXplIjo1MH0",
]


# --------------------------------------------------------------------------- realistic events

_WORDS = ("deploy build cache index query user report invoice metrics latency session export import backup "  # noqa: SIM905
          "restore customer order payment refund widget dashboard alert incident pager review branch release").split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def _clean_args(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    k = rng.randrange(12)
    if k == 0:
        return "filesystem", "read_file", {"path": f"/home/alice/projects/{rng.choice(_WORDS)}/src/{rng.choice(_WORDS)}.py"}
    if k == 1:
        return "filesystem", "write_file", {"path": f"/srv/app/{rng.choice(_WORDS)}.md",
                                            "content": "\n".join(_sentence(rng, 9) for _ in range(rng.randint(2, 8)))}
    if k == 2:
        return "shell", "run_command", {"command": rng.choice([
            "git log --oneline -n 20", "ls -la /srv/app", f"pytest tests/{rng.choice(_WORDS)} -q",
            f"git checkout -b fix/{rng.choice(_WORDS)}-{rng.randint(1, 999)}", "docker ps --format '{{.Names}}'",
            f"kubectl -n prod get pods -l app={rng.choice(_WORDS)}", "npm run build"]), "timeout_s": 60}
    if k == 3:
        return "http", "fetch", {"url": f"https://api.example.com/v2/{rng.choice(_WORDS)}s?page={rng.randint(1, 40)}&per_page=50",
                                 "method": rng.choice(["GET", "POST"]),
                                 "headers": {"Accept": "application/json", "User-Agent": "agent/1.2"}}
    if k == 4:
        return "postgres", "query", {"sql": f"SELECT id, {rng.choice(_WORDS)}_at FROM {rng.choice(_WORDS)}s "
                                            f"WHERE customer_id = $1 ORDER BY id DESC LIMIT {rng.randint(10, 500)}",
                                     "params": [rng.randint(1, 10**6)], "database": "analytics"}
    if k == 5:
        return "search", "web_search", {"query": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6))),
                                        "max_results": 10}
    if k == 6:
        return "slack", "post_message", {"channel": f"#{rng.choice(_WORDS)}", "text": _sentence(rng, rng.randint(6, 30))}
    if k == 7:
        return "github", "create_issue", {"repo": f"acme/{rng.choice(_WORDS)}", "title": _sentence(rng, 6),
                                          "body": "\n\n".join(_sentence(rng, 12) for _ in range(3)),
                                          "labels": ["bug", rng.choice(_WORDS)]}
    if k == 8:
        return "github", "get_commit", {"repo": f"acme/{rng.choice(_WORDS)}", "sha": rng.randbytes(20).hex()}
    if k == 9:
        return "jira", "get_issue", {"key": f"OPS-{rng.randint(100, 9999)}", "fields": ["summary", "status", "assignee"]}
    if k == 10:
        return "email", "send_email", {"to": [f"{rng.choice(_WORDS)}@example.com"], "subject": _sentence(rng, 5),
                                       "body": _sentence(rng, 40)}
    return "k8s", "get_logs", {"namespace": "prod", "pod": f"{rng.choice(_WORDS)}-{uuid.UUID(int=rng.getrandbits(128)).hex[:10]}",
                               "since": "10m", "tail": 200}


def realistic_events(n: int, seed: int = 3, secret_ratio: float = 0.05) -> list[dict[str, Any]]:
    """Tool-call events as a gateway would send them (wire fields as JSON values)."""
    rng = random.Random(seed)
    cases = secret_cases(seed=seed + 1, per_type=1)
    out = []
    for i in range(n):
        server, tool, args = _clean_args(rng)
        ev: dict[str, Any] = {
            "event_id": f"evt-{seed}-{i:08d}", "ts": f"2026-05-29T11:{i // 60 % 60:02d}:{i % 60:02d}.{i % 10**6:06d}Z",
            "principal": rng.choice(["alice@example.com", "bob@example.com", "svc-ci"]),
            "agent": rng.choice(["claude-desktop", "cursor", "ci-agent"]), "token_id": f"tok-{rng.randint(1, 40):03d}",
            "session": f"sess-{rng.randint(1, 500)}", "correlation_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "server": server, "server_version": "1.4.2", "tool": tool,
            "tool_description_hash": "sha256:" + rng.randbytes(32).hex(), "args": args,
            "decision": "allow", "scope_checked": f"{server}:{tool}", "scopes_granted": [f"{server}:*"],
            "result": "ok", "latency_ms": round(rng.uniform(1, 900), 1), "result_bytes": rng.randint(0, 100_000),
        }
        if rng.random() < 0.06:
            ev["decision"], ev["result"], ev["reason"] = "deny", "denied", "scope not granted for this principal"
        elif rng.random() < 0.05:
            ev["result"], ev["error"] = "error", f"upstream returned 503 after {rng.randint(1, 30)}s"
        if rng.random() < secret_ratio:
            c = rng.choice(cases)
            ev["args"] = dict(ev["args"]) | c.fields["args"]
            for k in ("error", "reason"):
                if k in c.fields:
                    ev[k] = c.fields[k]
        out.append(ev)
    return out
