#!/usr/bin/env bash
# make demo: a fresh local broker, Veil's demo job against it, then the broker stopped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${VEIL_CACHE:-$repo/.cache}
dir="$cache/demo-broker"
veil=${VEIL_BIN:-$repo/.venv/bin/veil}

bash "$here/kafka/kafka.sh" stop "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
trap 'bash "$here/kafka/kafka.sh" stop "$dir" >/dev/null 2>&1 || true' EXIT
echo "Starting a local Kafka broker (KRaft, loopback) ..."
bootstrap=$(bash "$here/kafka/kafka.sh" start "$dir")
echo "Broker ready at $bootstrap"
"$veil" demo --bootstrap "$bootstrap" "$@"
