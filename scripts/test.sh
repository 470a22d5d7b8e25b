#!/usr/bin/env bash
# The whole check: lint, types, dependencies, then the test suite (real DCMTK, Orthanc, validators
# on 127.0.0.1). Uses the project venv .venv (made by scripts/install-deps.sh) when there is one,
# else python3 on PATH. The venv's bin/ goes first on PATH for tools the tests look up (hadolint);
# its pynetdicom console scripts (storescu, ...) shadow DCMTK's there, so tests call DCMTK by path.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3
if [ -x .venv/bin/python ]; then
  PY="$PWD/.venv/bin/python"
  export PATH="$PWD/.venv/bin:$PATH"
fi
"$PY" -m ruff check scp_node tests bench tools
"$PY" -m ruff format --check scp_node tests bench tools
"$PY" -m mypy
# every third-party import of scp_node/ declared, every declared dependency used ([tool.deptry])
"$PY" -m deptry scp_node
# pytest exits 5 when it collected no test: that is a failure here, like any other non-zero code.
"$PY" -m pytest -q "$@"
