#!/usr/bin/env bash
# The main job: Stages I, II and III (and the evaluation) on the bundled real sample data.
# Usage: scripts/run_sample.sh [extra `iac run` arguments, e.g. --set stage1.epochs=50]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec iac run experiments/sample.yaml "$@"
