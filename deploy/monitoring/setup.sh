#!/usr/bin/env bash
# Debian's Prometheus server (package `prometheus`) for `make monitor` and the
# monitoring test, installed only when missing. Nothing is started here, and the
# package's own service is not used: `make monitor` runs a private instance.
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    bash "$(dirname "$0")/../apt-ensure.sh" "Prometheus for make monitor" prometheus
fi
command -v prometheus >/dev/null || fail "Prometheus installed but not on PATH"
exit 0
