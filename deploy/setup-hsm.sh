#!/usr/bin/env bash
# SoftHSM2 (Debian package `softhsm2`) for the PKCS#11 key-service tests, installed only
# when missing. The tests create their own token in a temp dir (SOFTHSM2_CONF); nothing
# here touches the system token directory.
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }

MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ ! -f "$MODULE" ] || ! command -v softhsm2-util >/dev/null; then
    bash "$(dirname "$0")/apt-ensure.sh" "the PKCS#11 test token" softhsm2
fi
[ -f "$MODULE" ] || fail "SoftHSM2 installed but $MODULE is missing"
exit 0
