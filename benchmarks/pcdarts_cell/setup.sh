#!/usr/bin/env bash
# Creates .venv-pcdarts at the repository root (a virtual environment of its own, apart from the
# package's .venv) and installs PyTorch (CPU) into it, for benchmarks/search_cell_vs_pcdarts.py.
#
#   bash benchmarks/pcdarts_cell/setup.sh            # python3 from PATH
#   PYTHON=python3.11 bash benchmarks/pcdarts_cell/setup.sh
#
# The CPU wheel is pinned in requirements.txt beside this file. Where the configured package index
# has no such wheel for this Python, pip stops with its error and nothing else is changed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/.venv-pcdarts"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$venv/bin/python" -c 'import torch; print("torch", torch.__version__, "in", __import__("sys").prefix)'
