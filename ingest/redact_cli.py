"""Leak investigation helpers: `tooltrail redact {marker,scan}` (also `python -m ingest.redact_cli`).

    marker  read a suspected secret on stdin (never argv: it would land in shell history and
            `ps`), print the markers it produces under this data dir's key, to search for in
            events (`record LIKE '%<fingerprint>%'`).
    scan    search files (raw bytes, plus decoded Parquet rows) for anything the redactor
            would still redact; prints path, type and count, never the secret. Exit 1 on hits.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import orjson

from ingest.redact import KEY_FILE_NAME, MARKER_RE, Redactor
from ingest.redact_patterns import PASSWORD_KIND, SECRET_KIND


def _redactor(args: argparse.Namespace) -> Redactor:
    from tooltrail.config import load_config

    cfg = load_config(args.config, data_dir=args.data_dir)
    keys = cfg.layout.keys
    if not cfg.redaction.key_file and not (keys / KEY_FILE_NAME).exists():
        raise SystemExit(f"no redaction key at {keys / KEY_FILE_NAME}: markers would not match stored events")
    return Redactor.from_settings(cfg.redaction, keys)


def markers_for(r: Redactor, secret: str) -> list[str]:
    """Every marker `secret` can appear as: the detected type(s), and the key-name kinds."""
    text, counts = r.redact_text(secret)
    out = [m.group(0) for m in MARKER_RE.finditer(text)]
    out += [r.marker(kind, secret) for kind in (PASSWORD_KIND, SECRET_KIND)]
    return list(dict.fromkeys(out))


def scan_texts(r: Redactor, paths: Iterable[Path]) -> Iterable[tuple[Path, dict[str, int]]]:
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            if p.name == KEY_FILE_NAME or p.suffix in (".key", ".pem") and "keys" in p.parts:
                continue  # key material is random bytes by design
            counts: Counter[str] = Counter()
            data = p.read_bytes()
            if p.suffix == ".parquet":
                import pyarrow.parquet as pq

                data = orjson.dumps(pq.read_table(p).to_pylist(), default=str)
            for line in data.decode("utf-8", "replace").splitlines():
                counts.update(r.redact_text(line)[1])
            if counts:
                yield p, dict(counts)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ingest.redact", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None)
    ap.add_argument("--data-dir", default=None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("marker", help="read a secret on stdin, print its markers")
    sc = sub.add_parser("scan", help="search files for unredacted secrets")
    sc.add_argument("paths", nargs="*", type=Path)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Shared by `python -m ingest.redact` and `tooltrail redact` (args: cmd, config, data_dir, paths)."""
    r = _redactor(args)
    if args.cmd == "marker":
        secret = sys.stdin.read().rstrip("\r\n")
        if not secret:
            print("no secret on stdin", file=sys.stderr)
            return 2
        for m in markers_for(r, secret):
            print(m)
        return 0
    from tooltrail.config import load_config

    paths = args.paths or [load_config(args.config, data_dir=args.data_dir).layout.root]
    found = 0
    for p, counts in scan_texts(r, paths):
        found += 1
        print(f"{p}\t" + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
