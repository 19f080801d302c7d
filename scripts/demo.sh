#!/usr/bin/env bash
# README's first command: set everything up and run the main job on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mlp demo "$@"
