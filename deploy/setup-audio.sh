#!/usr/bin/env bash
# System packages for the audio branch's tests (Debian), installed only when missing:
#   espeak-ng              synthesized speech for the spoken-PII tests
#   pocketsphinx-testdata  real recorded human speech (LibriVox, AN4, TIDIGITS excerpts)
# The pipeline itself needs none of them: soundfile, PyAV and pocketsphinx come from
# PyPI wheels that bundle libsndfile, FFmpeg and the English speech model.
# The recordings the tests read are checked against their sha256 after installing.
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }

TESTDATA_VERSION="0.8+5prealpha+1-15"
DATA=/usr/share/pocketsphinx/test/data

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
[ -d "$DATA/librivox" ] || need+=("pocketsphinx-testdata=$TESTDATA_VERSION")

if [ "${#need[@]}" -gt 0 ]; then
    bash "$(dirname "$0")/apt-ensure.sh" "the audio tests" "${need[@]}"
fi

(cd "$DATA" && sha256sum --check --quiet) <<'EOF' || fail "pocketsphinx-testdata recordings differ from the pinned ones"
b0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c  librivox/sense_and_sensibility_01_austen_64kb-0870.wav
fbec491ef00ee734a67f0ee318e98c51c157b479e1629ff4f4426861ecac0414  librivox/sense_and_sensibility_01_austen_64kb-0880.wav
5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10  librivox/sense_and_sensibility_01_austen_64kb-0890.wav
40882414ef4cc51f3ff7a63bad0c8c87e7f595ffeb8209fbf756c8ebc5c28a59  librivox/sense_and_sensibility_01_austen_64kb-0920.wav
954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7  librivox/sense_and_sensibility_01_austen_64kb-0930.wav
f15c60ec54059d8b66e410d0064945a0b0a04ea56e1ddca1958e493c0cf70e71  goforward.raw
45b5f6d3f88e36dd55b025cc9e8f1cae567583ea93f554ecdff6d09e6dd4577d  numbers.raw
eb95b74ce3f3037487e49dcfd935bbcf8c158b5f4083dd19451729c3ee694f5f  something.raw
EOF
exit 0
