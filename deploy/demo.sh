#!/usr/bin/env bash
# make demo: a fresh local broker, Veil's demo job against it, then the broker stopped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
cache=${VEIL_CACHE:-$repo/.cache}
dir="$cache/demo-broker"
veil=${VEIL_BIN:-$repo/.venv/bin/veil}

# Local secret keys for keyed pseudonyms, date shifts and pseudo-voices (0600, made once).
keys="$cache/keys"
mkdir -p "$keys" && chmod 700 "$keys"
[ -f "$keys/pseudonym.key" ] || "$veil" keys init "$keys/pseudonym.key" >/dev/null
[ -f "$keys/voice.key" ] || "$veil" keys init "$keys/voice.key" >/dev/null
[ -f "$keys/audit.key" ] || "$veil" keys init "$keys/audit.key" >/dev/null  # audit chain MACs
[ -f "$keys/record-id.key" ] || "$veil" keys init "$keys/record-id.key" >/dev/null  # opaque ids
export VEIL_PSEUDONYM_KEY_FILE="$keys/pseudonym.key" VEIL_AUDIO_KEY_FILE="$keys/voice.key"
export VEIL_AUDIT_KEY_FILE="$keys/audit.key" VEIL_RECORD_ID_KEY_FILE="$keys/record-id.key"

bash "$here/kafka/kafka.sh" stop "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
trap 'bash "$here/kafka/kafka.sh" stop "$dir" >/dev/null 2>&1 || true' EXIT
echo "Starting a local Kafka broker (KRaft, loopback) ..."
bootstrap=$(bash "$here/kafka/kafka.sh" start "$dir")
echo "Broker ready at $bootstrap"
"$veil" demo --bootstrap "$bootstrap" "$@"
echo
echo "Audit chain (veil audit verify --topic veil.audit, MACs under \$VEIL_AUDIT_KEY_FILE):"
"$veil" audit verify --bootstrap "$bootstrap" --topic veil.audit | tail -n 1
