#!/usr/bin/env bash
# Installs the given Debian packages (apt-get, as root or through sudo); the set-up
# scripts call it only with the packages they found missing.
#   deploy/apt-ensure.sh "what they are for" PKG [PKG...]
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }
[ $# -ge 2 ] || fail "usage: apt-ensure.sh PURPOSE PKG..."
purpose=$1
shift
command -v apt-get >/dev/null || fail "$purpose needs $* (Debian packages); install them"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "installing $* needs root (or sudo)"
    sudo="sudo"
fi
echo "Installing $* ($purpose) ..."
$sudo apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "$@" >/dev/null
