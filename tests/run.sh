#!/usr/bin/env bash
# Run Photomarker's test suite on a fresh machine: installs what the tests need, then pytest.
# Usage: bash tests/run.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# --- system programs the tests drive for real -------------------------------------------------
# PostgreSQL binaries (the audit store is tested against a real server; the fixture starts a
# throwaway cluster when none is listening). Installed with apt when we may.
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser).
[ -x /usr/bin/chromium ] || missing+=(chromium)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "tests/run.sh: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "tests/run.sh: please install: ${missing[*]} (e.g. sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

# --- Python environment -----------------------------------------------------------------------
PY=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' >.venv/pip.log 2>&1; then
  grep -v "^WARNING: Location" .venv/pip.log >&2
  echo "tests/run.sh: pip install failed" >&2
  exit 1
fi

# --- the suite --------------------------------------------------------------------------------
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "tests/run.sh: pytest collected no tests — that is a failure, not a pass" >&2
  exit 1
fi
exit "$status"
