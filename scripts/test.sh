#!/usr/bin/env bash
# Set up (a .venv with requirements-dev.txt) and run the whole test suite. The README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -r requirements-dev.txt
python -m pytest -q "$@"
