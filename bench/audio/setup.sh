#!/usr/bin/env bash
# Set-up for the audio attacker bench (bench/audio/attack.py); never needed at run time.
#   - resemblyzer's wheel, only for the GE2E weights it ships (resemblyzer/pretrained.pt),
#     fetched with pip (no dependencies: no torch), checked against its sha256;
#   - Debian's Asterisk prompt packages: real recorded speech of four voice talents.
# Idempotent. Output: $VEIL_CACHE/bench/resemblyzer/pretrained.pt (default .cache).
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }
cd "$(dirname "$0")/../.."
CACHE="${VEIL_CACHE:-$PWD/.cache}"
PY="${PYTHON:-.venv/bin/python}"

WHEEL=Resemblyzer-0.1.4-py3-none-any.whl
WHEEL_SHA256=8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f
WEIGHTS_SHA256=39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e
OUT="$CACHE/bench/resemblyzer"

if [ ! -f "$OUT/pretrained.pt" ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip download -q --no-deps --only-binary=:all: "resemblyzer==0.1.4" -d "$tmp"
    echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum --check --quiet || fail "resemblyzer wheel differs"
    mkdir -p "$OUT"
    unzip -q -o -j "$tmp/$WHEEL" resemblyzer/pretrained.pt -d "$OUT"
fi
echo "$WEIGHTS_SHA256  $OUT/pretrained.pt" | sha256sum --check --quiet || fail "pretrained.pt differs"

ASTERISK_VERSION=1.6.1-1
need=()
for lang in en es fr it ru; do
    [ -d "/usr/share/asterisk/sounds/$(case $lang in en) echo en_US_f_Allison;; es) echo es_MX_f_Allison;; fr) echo fr_CA_f_June;; it) echo it_IT_m_Carlo;; ru) echo ru_RU_f_IvrvoiceRU;; esac)" ] \
        || need+=("asterisk-core-sounds-$lang-g722=$ASTERISK_VERSION")
done
[ -f /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz ] \
    || need+=("asterisk-core-sounds-en=$ASTERISK_VERSION")
if [ "${#need[@]}" -gt 0 ]; then
    bash deploy/apt-ensure.sh "the audio attacker bench" "${need[@]}"
fi
bash deploy/setup-audio.sh
echo "audio bench ready: $OUT/pretrained.pt"
