#!/usr/bin/env bash
# The whole test suite (CPU; GPU-only cases skip themselves). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec python -m pytest -q -p no:cacheprovider --durations=15 "$@"
