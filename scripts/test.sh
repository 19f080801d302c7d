#!/usr/bin/env bash
# README's second command: lint, types, the whole test suite, then the native kernel tests
# under AddressSanitizer/UBSan. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# Exit code 5 (no test collected) is a failure here like any other non-zero code.
rc=0
"$PY" -m pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no test: the suite is broken" >&2
fi
[ "$rc" -eq 0 ] || exit "$rc"
echo "== native kernels under ASan/UBSan"
bash scripts/test_native_sanitized.sh
