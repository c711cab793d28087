#!/usr/bin/env bash
# Debian's Chromium (and a font for its text) for the report tests: they open the HTML
# report headless, take a screenshot and read the console. Installed only when missing.
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }

missing=()
command -v chromium >/dev/null || missing+=(chromium)
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
    bash "$(dirname "$0")/apt-ensure.sh" "the report's browser tests" "${missing[@]}"
fi
command -v chromium >/dev/null || fail "Chromium installed but not on PATH"
exit 0
