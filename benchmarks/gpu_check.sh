#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py): one command, one report.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # no install needed
exec python3 benchmarks/gpu_check.py "$@"
