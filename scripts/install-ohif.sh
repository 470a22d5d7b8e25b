#!/usr/bin/env bash
# Set up the OHIF browser test (tests/test_ohif.py); idempotent, safe to re-run.
#   - Debian chromium (if /usr/bin/chromium is absent)
#   - the prebuilt OHIF viewer: `npm pack @ohif/app@$OHIF_VERSION`, unpacked to $OHIF_CACHE/dist
#     (default $HOME/.cache/scp-node/ohif; reused when already there; never inside the repo)
#   - puppeteer-core@24 in tests/ohif/node_modules (no browser download)
# Usage: bash scripts/install-ohif.sh        Env: OHIF_CACHE, OHIF_VERSION (default 3.13.2)
set -euo pipefail
cd "$(dirname "$0")/.."

OHIF_VERSION="${OHIF_VERSION:-3.13.2}"
OHIF_CACHE="${OHIF_CACHE:-$HOME/.cache/scp-node/ohif}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

if [ ! -x /usr/bin/chromium ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null
fi

mkdir -p "$OHIF_CACHE"
TARBALL="$OHIF_CACHE/ohif-app-$OHIF_VERSION.tgz"
if [ ! -f "$OHIF_CACHE/dist/index.html" ] || [ "$(cat "$OHIF_CACHE/VERSION" 2>/dev/null)" != "$OHIF_VERSION" ]; then
  if [ ! -f "$TARBALL" ]; then
    (cd "$OHIF_CACHE" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
  fi
  rm -rf "$OHIF_CACHE/dist" "$OHIF_CACHE/package"
  tar -xzf "$TARBALL" -C "$OHIF_CACHE" package/dist
  mv "$OHIF_CACHE/package/dist" "$OHIF_CACHE/dist"
  rmdir "$OHIF_CACHE/package"
  echo "$OHIF_VERSION" > "$OHIF_CACHE/VERSION"
fi

if [ ! -f tests/ohif/node_modules/puppeteer-core/package.json ]; then
  (cd tests/ohif && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-save --no-audit --no-fund \
    --silent puppeteer-core@24)
fi
echo "OHIF $OHIF_VERSION in $OHIF_CACHE/dist; chromium $(/usr/bin/chromium --version 2>/dev/null | awk '{print $2}')"
