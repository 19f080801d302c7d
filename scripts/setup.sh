#!/usr/bin/env bash
# Set up a development checkout: virtual environment, the package (editable, C extension
# built), and the local services (memcached on 127.0.0.1). Safe to run again: it skips what is
# already done. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=".venv"
MEMCACHED_ADDR="${MLP_TEST_MEMCACHED:-127.0.0.1:11211}"

say() { printf '[setup] %s\n' "$*" >&2; }

"$PYTHON" - <<'PY' || { echo "[setup] Python >= 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

# Debian packages the build needs: a C compiler, Python's headers, venv. Installed when we are
# root; otherwise the exact command is printed.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $* (Debian packages)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || \
      { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    say "installing $* (Debian packages, via sudo)"
    sudo -n apt-get install -y -qq "$@" >/dev/null
  else
    say "missing system packages; run: sudo apt-get install -y $*   (then run this command again)"
    exit 1
  fi
}
missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
"$PYTHON" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
  || missing+=(python3-dev)
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -x "$VENV/bin/uv" ]; then
  say "installing uv into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check uv
fi

# Reinstall only when the declared dependencies, the pins, the C sources or this script changed.
stamp="$VENV/.mlp-install-stamp"
want=$(cat pyproject.toml constraints.txt setup.py native/* scripts/setup.sh 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing airflow-provider-mlp[dev] (editable) with pinned dependencies"
  # --compile-bytecode, as pip does by default: uv leaves it out, and then a process that may not
  # write bytecode (PYTHONDONTWRITEBYTECODE, a read-only site-packages) compiles every module it
  # imports, each time it starts (194 modules for polars alone, in each mapped task's process).
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$VENV/bin/uv" pip install --python "$VENV/bin/python" --quiet \
    --compile-bytecode -c constraints.txt -e '.[dev]' --config-settings editable_mode=compat
  # The editable install builds the C extension once; rebuild it in place so that native/
  # edits are picked up by the same command.
  "$VENV/bin/python" setup.py --quiet build_ext --inplace
  echo "$want" > "$stamp"
fi

# memcached, for the precompute layer and its tests.
command -v memcached >/dev/null 2>&1 || apt_install memcached
host="${MEMCACHED_ADDR%:*}"; port="${MEMCACHED_ADDR##*:}"
if ! (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  say "starting memcached on $host:$port"
  memcached -d -l "$host" -p "$port" -U 0 -m 256 -u "$(id -un)"
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null && break; sleep 0.1; done
fi
