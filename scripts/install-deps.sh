#!/usr/bin/env bash
# Install scp-node (and, with --test, everything its test suite needs) on a fresh Debian machine.
#   bash scripts/install-deps.sh          # the node only: Python packages from pyproject.toml
#   bash scripts/install-deps.sh --test   # plus the real peers: DCMTK, Orthanc, dicom3tools, ...
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

if [ "${1:-}" = "--test" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends \
    dcmtk orthanc orthanc-dicomweb orthanc-gdcm dicom3tools libgdcm-tools openjph-tools \
    openssl >/dev/null
  # OHIF viewer test: Debian chromium, the prebuilt @ohif/app dist (cached), puppeteer-core
  bash scripts/install-ohif.sh
fi

# torch is pinned in pyproject.toml (2.13.0): on these machines pip takes the CPU build from disk.
python3 -m pip install --quiet --disable-pip-version-check torch==2.13.0
if [ "${1:-}" = "--test" ]; then
  python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
else
  python3 -m pip install --quiet --disable-pip-version-check -e .
fi
# pyenv installs console scripts behind shims that exist only after a rehash
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
