#!/usr/bin/env bash
# Install Debian's Chromium for the console's browser tests (tests/console), unless it is there.
# Playwright drives it through executable_path; no browser is downloaded. Needs root and apt
# (Debian 12).
set -euo pipefail
if command -v chromium >/dev/null; then
  exit 0
fi
echo "chromium: installing Debian's chromium package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >&2
