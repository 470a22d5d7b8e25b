#!/usr/bin/env bash
# Install scp-node (and, with --test, everything its test suite needs) on a fresh Debian machine.
#   bash scripts/install-deps.sh          # the node only: Python packages from pyproject.toml
#   bash scripts/install-deps.sh --test   # plus the real peers: DCMTK, Orthanc, dicom3tools, ...
# Python packages go into the project's own virtual environment .venv (a stock Debian/Ubuntu
# python3 refuses pip installs outside one, PEP 668): run .venv/bin/scp-node, or scripts/test.sh,
# which uses .venv/bin/python by itself. Nothing needs activating. PYTHON picks the interpreter
# that makes the venv (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ "${1:-}" = "--test" ]; then
  # rsyslog + rsyslog-gnutls: the audit trail tests' syslog receiver (RFC 5425 TLS, UDP, TCP)
  apt_install dcmtk orthanc orthanc-dicomweb orthanc-gdcm dicom3tools libgdcm-tools \
    openjph-tools openssl rsyslog rsyslog-gnutls rabbitmq-server
  # The cluster tests start their own RabbitMQ (own node name, ports, data under tmp_path) and
  # never use the Debian service: stop and disable it where the package started one.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/rabbitmq-server ]; then
    $SUDO /etc/init.d/rabbitmq-server stop >/dev/null 2>&1 || true
  fi
  # OHIF viewer test: Debian chromium, the prebuilt @ohif/app dist (cached), puppeteer-core
  bash scripts/install-ohif.sh
fi

# The venv: reused when it works; Debian ships `venv` without ensurepip until python3-venv is in.
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"
    apt_install python3-venv
    "$PYTHON" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

# torch is pinned in pyproject.toml (2.13.0); first on its own, so that a wheel on a local
# find-links path (these machines: the CPU build) is what satisfies the pin.
"${PIP[@]}" torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  "${PIP[@]}" -e ".[test]"
else
  "${PIP[@]}" -e .
fi
"$VENV/bin/python" -c 'import torch, scp_node; print("scp-node", scp_node.__version__, "with torch", torch.__version__, "in", __import__("sys").prefix)'
