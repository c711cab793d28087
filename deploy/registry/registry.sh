#!/usr/bin/env bash
# Local Apicurio Registry (in-memory storage, Confluent-compatible API) for Veil's tests
# and demos. Run `registry.sh help` for usage.
#
# Apicurio Registry 2.6.13.Final: the newest release whose server runs on Java 17 (3.x is
# built for Java 21). Maven Central publishes it as a Quarkus "legacy jar" layout in an
# -all.tar.gz (runner jar + lib/), pinned here by sha256. Default storage: H2 in memory.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
VERSION="2.6.13.Final"
ARTIFACT="io.apicurio:apicurio-registry-app:${VERSION}:tar.gz:all"
SHA256="3cda1b34aa020fb4ac4dd6a66018d757e81e437f97e20a1f92d366b70091c6ba"
CACHE_DIR="${VEIL_CACHE:-$REPO_ROOT/.cache}/registry"
APP_DIR="$CACHE_DIR/apicurio-registry-app-$VERSION"
RUNNER="$APP_DIR/apicurio-registry-app-$VERSION-runner.jar"
CONNECT_POM="$SCRIPT_DIR/connect-pom.xml"
CONNECT_LIBS="$CACHE_DIR/connect-libs"
JAVA_BIN="${JAVA_HOME:+$JAVA_HOME/bin/}java"
API="/apis/ccompat/v7"

usage() {
  cat <<USAGE
Usage: $(basename -- "$0") COMMAND [ARGS]

  fetch                 Copy Apicurio Registry $VERSION from Maven Central into
                        \$VEIL_CACHE/registry, check its sha256 and unpack it (once);
                        and the Kafka Connect worker + Apicurio's Avro converter
                        (connect-pom.xml) into \$VEIL_CACHE/registry/connect-libs.
  start DIR [TIMEOUT]   Fetch if needed, start the registry on a free loopback port
                        (or \$REGISTRY_PORT), wait until its API answers (default 90 s)
                        and print its Confluent-compatible URL (http://127.0.0.1:PORT$API).
  stop DIR              Stop the registry started in DIR (SIGTERM, then SIGKILL).
  connect-libs          Fetch if needed; print the Kafka Connect classpath directory.
  help                  Show this message.

Files in DIR: pid, url, registry.log.
USAGE
}

die() { printf 'registry.sh: %s\n' "$*" >&2; exit 1; }
note() { printf 'registry.sh: %s\n' "$*" >&2; }

connect_fetch() {
  local sha tmp
  sha="$(sha256sum "$CONNECT_POM" | cut -d' ' -f1)"
  [[ -f "$CONNECT_LIBS/.pom-sha256" && "$(cat "$CONNECT_LIBS/.pom-sha256")" == "$sha" ]] && return 0
  tmp="$CONNECT_LIBS.tmp.$$"
  rm -rf "$tmp"
  note "fetching the Kafka Connect worker and Apicurio's converter (Maven Central)"
  mvn -q -B -f "$CONNECT_POM" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$tmp" >"$CACHE_DIR/connect-fetch.log" 2>&1 \
    || { tail -n 30 "$CACHE_DIR/connect-fetch.log" >&2; rm -rf "$tmp"; die "connect fetch failed"; }
  echo "$sha" >"$tmp/.pom-sha256"
  rm -rf "$CONNECT_LIBS"
  mv "$tmp" "$CONNECT_LIBS"
}

cmd_fetch() {
  mkdir -p "$CACHE_DIR"
  connect_fetch
  [[ -f "$APP_DIR/.verified" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found (Maven fetches the registry from Maven Central)"
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.fetch.lock"
  flock 9
  [[ -f "$APP_DIR/.verified" ]] && return 0
  local dl="$CACHE_DIR/download" archive
  rm -rf "$dl"
  note "fetching $ARTIFACT (Maven Central)"
  mvn -q -B dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$dl" \
    >"$CACHE_DIR/fetch.log" 2>&1 \
    || { tail -n 30 "$CACHE_DIR/fetch.log" >&2; die "maven dependency:copy failed (log: $CACHE_DIR/fetch.log)"; }
  archive="$(ls "$dl"/apicurio-registry-app-*-all.tar.gz)"
  echo "$SHA256  $archive" | sha256sum -c --quiet - \
    || die "sha256 mismatch for $(basename "$archive"): refusing to use it"
  rm -rf "$APP_DIR.tmp"
  mkdir -p "$APP_DIR.tmp"
  tar xzf "$archive" -C "$APP_DIR.tmp"
  [[ -f "$APP_DIR.tmp/$(basename "$RUNNER")" ]] || die "no runner jar in the archive"
  rm -rf "$APP_DIR" "$dl"
  mv "$APP_DIR.tmp" "$APP_DIR"
  touch "$APP_DIR/.verified"
  exec 9>&-
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

running_pid() {
  local dir="$1" pid
  [[ -f "$dir/pid" ]] || return 1
  pid="$(cat "$dir/pid")"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF -- "-Dveil.registry.dir=$dir" || return 1
  echo "$pid"
}

cmd_start() {
  local dir timeout port url pid deadline
  [[ $# -ge 1 ]] || die "start needs DIR"
  mkdir -p "$1"; dir="$(cd -- "$1" && pwd -P)"; timeout="${2:-90}"
  command -v "$JAVA_BIN" >/dev/null 2>&1 || die "java not found (the registry needs Java 17+)"
  if pid="$(running_pid "$dir")"; then cat "$dir/url"; return 0; fi
  cmd_fetch
  port="${REGISTRY_PORT:-$(free_port)}"
  url="http://127.0.0.1:$port$API"
  # In-memory storage; loopback only; no UI, no auth (a local test registry).
  (cd "$dir" && exec setsid "$JAVA_BIN" ${REGISTRY_HEAP_OPTS:--Xmx384m -Xms64m} \
      -XX:TieredStopAtLevel=1 -Dveil.registry.dir="$dir" \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
      -Dquarkus.log.console.color=false -Dregistry.ui.features.readOnly=true \
      -jar "$RUNNER" >"$dir/registry.log" 2>&1 </dev/null) &
  echo $! >"$dir/pid"
  echo "$url" >"$dir/url"
  deadline=$((SECONDS + timeout))
  until python3 - "$url/subjects" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
  do
    running_pid "$dir" >/dev/null || { tail -n 30 "$dir/registry.log" >&2; die "the registry exited"; }
    (( SECONDS < deadline )) || { tail -n 30 "$dir/registry.log" >&2; cmd_stop "$dir"; die "not ready after ${timeout}s"; }
    sleep 1
  done
  echo "$url"
}

cmd_stop() {
  local dir pid
  [[ $# -ge 1 ]] || die "stop needs DIR"
  [[ -d "$1" ]] || return 0
  dir="$(cd -- "$1" && pwd -P)"
  pid="$(running_pid "$dir")" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do [[ -d "/proc/$pid" ]] || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
}

case "${1:-help}" in
  fetch) cmd_fetch ;;
  connect-libs) cmd_fetch; echo "$CONNECT_LIBS" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  help|-h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
