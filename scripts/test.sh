#!/usr/bin/env bash
# Install everything the tests need from this project's own files, then run them.
#   bash scripts/test.sh            # all tests
#   bash scripts/test.sh -k kafka   # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless Chromium for the dashboard's browser tests (Debian packages; never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing Debian chromium for browser tests"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "!! chromium is missing and this is not root: run 'sudo apt-get install chromium' (browser tests will fail)" >&2
  fi
fi

echo "== installing tooltrail with its test extra"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
python3 -m ruff check --quiet .

echo "== pytest"
exec python3 -m pytest -q -p no:cacheprovider "$@"
