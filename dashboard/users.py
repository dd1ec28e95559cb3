"""Local dashboard users: names with argon2id password hashes, kept in one JSON file under the
data dir's keys/ folder (mode 0600). Passwords are never stored or logged."""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

USERNAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD_LEN = 10
_FILE_NAME = "dashboard-users.json"

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)
# Verified against when the user does not exist, so that both paths cost the same.
_DUMMY_HASH = _hasher.hash("tooltrail-dummy-password")


def default_users_file(keys_dir: Path) -> Path:
    return keys_dir / _FILE_NAME


def check_username(name: str) -> str:
    if not USERNAME_RE.match(name or ""):
        raise ValueError("user name: use 1-64 of letters, digits and . _ @ -")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LEN:
        raise ValueError(f"password: at least {MIN_PASSWORD_LEN} characters")
    if len(password) > 1024:
        raise ValueError("password: at most 1024 characters")
    return password


class UserStore:
    """The users file. Reads re-load the file when it changed, so `tooltrail users add` takes
    effect on a running dashboard."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, dict]] | None = None

    def _load(self) -> dict[str, dict]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            if self._cache and self._cache[0] == mtime:
                return self._cache[1]
            data = json.loads(self.path.read_text(encoding="utf-8"))
            users = data.get("users", {}) if isinstance(data, dict) else {}
            self._cache = (mtime, users)
            return users

    def _save(self, users: dict[str, dict]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps({"version": 1, "users": users}, indent=2, sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._cache = None

    def names(self) -> list[str]:
        return sorted(self._load())

    def exists(self, name: str) -> bool:
        return name in self._load()

    def add(self, name: str, password: str, *, replace: bool = False) -> None:
        check_username(name)
        check_password(password)
        users = dict(self._load())
        if name in users and not replace:
            raise ValueError(f"user {name!r} exists (use --replace to set a new password)")
        users[name] = {"hash": _hasher.hash(password), "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        self._save(users)

    def remove(self, name: str) -> bool:
        users = dict(self._load())
        if users.pop(name, None) is None:
            return False
        self._save(users)
        return True

    def verify(self, name: str, password: str) -> bool:
        """Constant-work check: an unknown user costs one argon2 verification too."""
        entry = self._load().get(name) if USERNAME_RE.match(name or "") else None
        stored = entry.get("hash") if isinstance(entry, dict) else None
        try:
            _hasher.verify(stored or _DUMMY_HASH, password[:1024])
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored is not None
