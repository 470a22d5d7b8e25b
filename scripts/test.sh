#!/usr/bin/env bash
# The whole check: lint, types, then the test suite (real DCMTK, Orthanc, validators on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m ruff check scp_node tests bench tools
python3 -m ruff format --check scp_node tests bench tools
python3 -m mypy
# pytest exits 5 when it collected no test: that is a failure here, like any other non-zero code.
python3 -m pytest -q "$@"
