#!/usr/bin/env bash
# SoftHSM2 (Debian package `softhsm2`) for the PKCS#11 key-service tests, installed only
# when missing. The tests create their own token in a temp dir (SOFTHSM2_CONF); nothing
# here touches the system token directory.
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }

MODULE=/usr/lib/softhsm/libsofthsm2.so
if [ ! -f "$MODULE" ] || ! command -v softhsm2-util >/dev/null; then
    command -v apt-get >/dev/null || fail "the PKCS#11 tests need SoftHSM2 (Debian package softhsm2); install it"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || fail "installing softhsm2 needs root (or sudo)"
        sudo="sudo"
    fi
    echo "Installing softhsm2 (PKCS#11 test token) ..."
    $sudo apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends softhsm2 >/dev/null
fi
[ -f "$MODULE" ] || fail "SoftHSM2 installed but $MODULE is missing"
exit 0
