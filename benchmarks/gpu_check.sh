#!/usr/bin/env bash
# The prepared GPU check (see benchmarks/gpu_check.py): one command, one report.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benchmarks/gpu_check.py "$@"
