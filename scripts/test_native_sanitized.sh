#!/usr/bin/env bash
# Run the native kernel tests against a build with AddressSanitizer and UndefinedBehaviorSanitizer.
#
# The sanitized extension is built into a scratch copy of the package (setup.py's
# MLP_NATIVE_SANITIZE switch, `build_ext --build-lib`), which the tests import first through
# PYTHONPATH; the normal in-place build in the checkout is never touched, so other test runs in
# the same checkout keep working while this one runs and afterwards.
#
# Usage: scripts/test_native_sanitized.sh [extra pytest arguments]
# Environment: PYTHON (default .venv/bin/python), CC (default gcc; its libasan is preloaded).
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
CC="${CC:-gcc}"

work="$(mktemp -d "${TMPDIR:-/tmp}/mlp-sanitized.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A copy of the package without its normal build, then the sanitized build on top of it.
cp -R airflow_provider_mlp "$work/"
find "$work/airflow_provider_mlp" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
echo "building the native kernels with -fsanitize=address,undefined into $work"
MLP_NATIVE_SANITIZE=address,undefined "$PYTHON" setup.py -q build_ext \
    --build-lib "$work" --build-temp "$work/build" >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }

libasan="$("$CC" -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
    echo "libasan.so not found for $CC (got '$libasan')" >&2
    exit 1
fi

# -P keeps the checkout's root off sys.path[0]; --import-mode=append puts test directories
# after PYTHONPATH, so the sanitized copy is the one imported.
run() {
    PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}" \
    LD_PRELOAD="$libasan" \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$PYTHON" -P "$@"
}

run - "$work" <<'PY'
import sys
from pathlib import Path

from airflow_provider_mlp.kernels import _native

where = Path(_native.__file__).resolve()
if not where.is_relative_to(Path(sys.argv[1]).resolve()):
    sys.exit(f"expected the sanitized build under {sys.argv[1]}, imported {where}")
print(f"sanitized kernels: {where}")
PY

run -m pytest -p no:cacheprovider --import-mode=append -q tests/unit/kernels "$@"
