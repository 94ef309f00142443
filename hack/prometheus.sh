#!/usr/bin/env bash
# Install Debian's Prometheus for the canary-analysis tests (tests/integration/test_rollout_cluster.py),
# unless it is there. The tests start it themselves, with a scrape config of their own; the
# package's service is not used. Needs root and apt (Debian 12).
set -euo pipefail
if command -v prometheus >/dev/null; then
  exit 0
fi
echo "prometheus: installing Debian's prometheus package" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >&2
