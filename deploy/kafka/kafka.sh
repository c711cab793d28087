#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft) broker for Veil development and tests.
# See deploy/kafka/README.md. Run `kafka.sh help` for usage.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONF="$SCRIPT_DIR/log4j2.xml"
CACHE_DIR="${VEIL_CACHE:-$REPO_ROOT/.cache}/kafka"
LIBS_DIR="$CACHE_DIR/libs"
STAMP="$LIBS_DIR/.fetched-pom-sha256"
JAVA_BIN="${JAVA_HOME:+$JAVA_HOME/bin/}java"
READY_PATTERN='Kafka Server started'
DEFAULT_WAIT_TIMEOUT=60
STOP_TIMEOUT=20
SECURE_PY="$SCRIPT_DIR/secure.py"
SECURE=0   # 1 for start-secure (SASL_SSL + ACLs, see secure.py)

usage() {
  cat <<EOF
Usage: $(basename -- "$0") COMMAND [ARGS]

Local single-node Apache Kafka 4.x broker (KRaft, broker+controller in one JVM).

Commands:
  fetch                 Copy the broker's jars into \$VEIL_CACHE/kafka/libs
                        (default cache: <repo>/.cache). No-op if already done
                        for the current pom.xml.
  start DIR [TIMEOUT]   Fetch if needed, write DIR/server.properties, format
                        DIR/data on first use, launch the broker detached and
                        wait until ready (TIMEOUT s, default $DEFAULT_WAIT_TIMEOUT).
                        Prints the bootstrap address (127.0.0.1:PORT) on stdout.
  start-secure DIR [TIMEOUT]
                        The same, secured: SASL_SSL (TLS 1.3 + SCRAM-SHA-512) and
                        the ACL authorizer (deny by default). Writes a CA, users
                        and DIR/client.json; see deploy/kafka/README.md. A DIR is
                        either secured or not for its whole life.
  wait DIR [TIMEOUT]    Wait until the broker in DIR accepts connections and has
                        logged "$READY_PATTERN" (default ${DEFAULT_WAIT_TIMEOUT} s).
  stop DIR              SIGTERM the broker, SIGKILL after ${STOP_TIMEOUT} s. No-op if stopped.
  status DIR            Print "running BOOTSTRAP" (exit 0) or "stopped BOOTSTRAP" (exit 3).
  help                  Show this message.

Files in DIR: server.properties, data/ (log.dirs), server.log, console.log
(JVM stdout/stderr), pid, bootstrap, cluster.id.

Environment:
  VEIL_CACHE              cache root (default <repo>/.cache)
  KAFKA_PORT              broker (PLAINTEXT) port; default: previous port in DIR
                          if still free, else a free loopback port
  KAFKA_CONTROLLER_PORT   controller port; same defaulting
  KAFKA_HEAP_OPTS         default "-Xmx512m -Xms256m"
  KAFKA_JVM_OPTS          extra JVM flags for the broker (word-split)
  KAFKA_EXTRA_PROPERTIES  extra server.properties lines appended last (override)
EOF
}

die() { printf 'kafka.sh: %s\n' "$*" >&2; exit 1; }
note() { printf 'kafka.sh: %s\n' "$*" >&2; }

# ---------------------------------------------------------------- prerequisites

check_java() {
  command -v "$JAVA_BIN" >/dev/null 2>&1 \
    || die "java not found (need Java >= 17 on PATH or JAVA_HOME)"
  local ver major
  ver="$("$JAVA_BIN" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n 1)"
  [[ -n "$ver" ]] || die "could not determine the java version (need Java >= 17)"
  major="${ver%%.*}"
  if [[ "$major" == 1 ]]; then
    major="$(cut -d. -f2 <<<"$ver")"
  fi
  if ! [[ "$major" =~ ^[0-9]+$ ]] || (( major < 17 )); then
    die "java $ver found, Kafka 4 needs Java >= 17"
  fi
}

check_mvn() {
  command -v mvn >/dev/null 2>&1 || die "mvn not found (Maven is needed to fetch the Kafka jars)"
}

check_python() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found (used to pick free ports)"
}

# secure.py needs `cryptography`: the repo's venv has it (VEIL_PYTHON overrides).
secure_py() {
  local py="${VEIL_PYTHON:-}"
  if [[ -z "$py" ]]; then
    py="$REPO_ROOT/.venv/bin/python"
    [[ -x "$py" ]] || py=python3
  fi
  "$py" -c 'import cryptography.x509' 2>/dev/null \
    || die "$py cannot import cryptography (needed by start-secure; run make venv)"
  "$py" "$SECURE_PY" "$@"
}

# ------------------------------------------------------------------------ fetch

pom_sha() { sha256sum "$POM" | cut -d' ' -f1; }

is_fetched() {
  [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(pom_sha)" ]]
}

cmd_fetch() {
  check_java
  if is_fetched; then
    return 0
  fi
  check_mvn
  mkdir -p "$CACHE_DIR"
  # Serialize concurrent fetches (e.g. two `start`s at once).
  exec 9>"$CACHE_DIR/.fetch.lock"
  flock 9
  if is_fetched; then
    exec 9>&-
    return 0
  fi
  local sha tmp
  sha="$(pom_sha)"
  tmp="$CACHE_DIR/libs.tmp.$$"
  rm -rf "$tmp"
  note "fetching Kafka jars into $LIBS_DIR (Maven)"
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies \
         -DincludeScope=runtime -DoutputDirectory="$tmp" >"$CACHE_DIR/fetch.log" 2>&1; then
    tail -n 40 "$CACHE_DIR/fetch.log" >&2 || true
    rm -rf "$tmp"
    die "maven dependency:copy-dependencies failed (full log: $CACHE_DIR/fetch.log)"
  fi
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "fetch produced no kafka_2.13 jar in $tmp"; }
  printf '%s\n' "$sha" >"$tmp/.fetched-pom-sha256"
  rm -rf "$LIBS_DIR"
  mv "$tmp" "$LIBS_DIR"
  exec 9>&-
  note "fetched $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars"
}

# ---------------------------------------------------------------------- helpers

# Absolute path of DIR (created if missing).
abs_dir() {
  mkdir -p -- "$1"
  (cd -- "$1" && pwd -P)
}

# Absolute path of an existing DIR, without creating it.
existing_dir() {
  [[ -d "$1" ]] || return 1
  (cd -- "$1" && pwd -P)
}

# PID in DIR/pid if that process is alive and is the broker for DIR.
running_pid() {
  local dir="$1" pid
  [[ -f "$dir/pid" ]] || return 1
  pid="$(cat "$dir/pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  # Guard against PID reuse: it must be our kafka.Kafka on this DIR's config.
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$dir/server.properties" || return 1
  printf '%s\n' "$pid"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_free() {
  # SO_REUSEADDR, as the JVM's server sockets: a port left in TIME_WAIT by the
  # previous broker's connections is free for a restart; a listening one is not.
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

# Two distinct free loopback ports (both held while choosing, so they differ).
two_free_ports() {
  python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
}

# Kafka-style Uuid (16 random bytes, base64url, no padding, not starting with '-').
new_cluster_id() {
  python3 - <<'PY'
import base64, os
while True:
    u = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not u.startswith("-"):
        print(u)
        break
PY
}

prop_from() {  # prop_from FILE KEY -> value of the last KEY=... line, or nothing
  [[ -f "$1" ]] || return 0
  sed -n "s/^$2=//p" "$1" | tail -n 1
}

# ---------------------------------------------------------------- start / wait

write_config() {
  local dir="$1" port="$2" cport="$3"
  cat >"$dir/server.properties.tmp" <<EOF
# Generated by deploy/kafka/kafka.sh start; rewritten on every start.
# Single-node KRaft: this JVM is both broker and (sole) controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$dir/data

# One node: every internal topic has RF 1 and min ISR 1.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Tests want consumer groups to form at once and topics to be created explicitly.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.partitions=1

# Allow records up to 16 MiB.
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
replica.fetch.response.max.bytes=33554432
socket.request.max.bytes=104857600

# Small, dev-sized storage.
log.segment.bytes=67108864
log.retention.hours=24
log.retention.check.interval.ms=300000

# Sized for a 2-core machine.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
EOF
  if (( SECURE )); then  # holds the broker's SCRAM password: owner-only
    chmod 600 "$dir/server.properties.tmp"
    printf '\n' >>"$dir/server.properties.tmp"
    secure_py properties "$dir" "$port" "$cport" >>"$dir/server.properties.tmp" \
      || die "secure.py properties failed"
  fi
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    printf '\n# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >>"$dir/server.properties.tmp"
  fi
  mv "$dir/server.properties.tmp" "$dir/server.properties"
}

# Print the last 30 lines of the broker log(s) in DIR to stderr.
dump_logs() {
  local dir="$1"
  if [[ -s "$dir/server.log" ]]; then
    printf -- '--- last 30 lines of %s ---\n' "$dir/server.log" >&2
    tail -n 30 "$dir/server.log" >&2
  fi
  if [[ -s "$dir/console.log" ]]; then
    printf -- '--- last 30 lines of %s ---\n' "$dir/console.log" >&2
    tail -n 30 "$dir/console.log" >&2
  fi
}

cmd_wait() {
  (( $# >= 1 )) || { usage >&2; exit 2; }
  local dir timeout="${2:-$DEFAULT_WAIT_TIMEOUT}" bootstrap port deadline
  [[ "$timeout" =~ ^[0-9]+$ ]] || die "TIMEOUT must be a whole number of seconds, got '$timeout'"
  dir="$(existing_dir "$1")" || die "no such broker dir: $1"
  [[ -f "$dir/bootstrap" ]] || die "$dir has no bootstrap file (was the broker started there?)"
  bootstrap="$(cat "$dir/bootstrap")"
  port="${bootstrap##*:}"
  deadline=$(( SECONDS + timeout ))
  while :; do
    if ! running_pid "$dir" >/dev/null; then
      dump_logs "$dir"
      die "broker in $dir is not running"
    fi
    if grep -qF "$READY_PATTERN" "$dir/server.log" 2>/dev/null && port_in_use "$port"; then
      return 0
    fi
    if (( SECONDS >= deadline )); then
      dump_logs "$dir"
      die "broker in $dir not ready after ${timeout} s"
    fi
    sleep 0.2
  done
}

cmd_start() {
  (( $# >= 1 )) || { usage >&2; exit 2; }
  local dir timeout="${2:-$DEFAULT_WAIT_TIMEOUT}" pid port cport prev_port prev_cport cluster_id
  dir="$(abs_dir "$1")"
  check_python
  cmd_fetch
  if (( SECURE )); then
    secure_py prepare "$dir" || die "secure.py prepare failed"
  elif [[ -d "$dir/secure" ]]; then
    die "$dir holds a secured broker; use start-secure"
  fi

  if pid="$(running_pid "$dir")"; then
    note "broker in $dir already running (pid $pid)"
    cmd_wait "$dir" "$timeout"
    cat "$dir/bootstrap"
    return 0
  fi

  # Ports: explicit env > the ports this DIR used last time (if still free) > fresh.
  prev_port="$(prop_from "$dir/server.properties" 'advertised.listeners' | sed -n 's|.*:\([0-9][0-9]*\)$|\1|p')"
  prev_cport="$(prop_from "$dir/server.properties" 'controller.quorum.voters' | sed -n 's|.*:\([0-9][0-9]*\)$|\1|p')"
  read -r port cport <<<"$(two_free_ports)"
  if [[ -n "${KAFKA_PORT:-}" ]]; then
    port="$KAFKA_PORT"
  elif [[ -n "$prev_port" ]] && port_free "$prev_port"; then
    port="$prev_port"
  fi
  if [[ -n "${KAFKA_CONTROLLER_PORT:-}" ]]; then
    cport="$KAFKA_CONTROLLER_PORT"
  elif [[ -n "$prev_cport" && "$prev_cport" != "$port" ]] && port_free "$prev_cport"; then
    cport="$prev_cport"
  fi
  if [[ "$cport" == "$port" ]]; then   # only possible via a reused/explicit port
    read -r _ cport <<<"$(two_free_ports)"
    [[ "$cport" != "$port" ]] || read -r cport _ <<<"$(two_free_ports)"
  fi
  [[ "$port" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ ]] || die "ports must be numeric (got $port / $cport)"
  port_free "$port" || die "broker port $port on 127.0.0.1 is already in use"
  port_free "$cport" || die "controller port $cport on 127.0.0.1 is already in use"
  if [[ -n "$prev_port" && "$prev_port" != "$port" ]]; then
    note "port changed from $prev_port to $port (DIR/bootstrap updated)"
  fi

  write_config "$dir" "$port" "$cport"
  printf '127.0.0.1:%s\n' "$port" >"$dir/bootstrap"

  # Format on first use only; an existing meta.properties means formatted data to keep.
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    if [[ -f "$dir/cluster.id" ]]; then
      cluster_id="$(cat "$dir/cluster.id")"
    else
      cluster_id="$(new_cluster_id)"
      printf '%s\n' "$cluster_id" >"$dir/cluster.id"
    fi
    local -a format_extra=()
    local format_line=""
    if (( SECURE )); then  # SCRAM users exist from the first metadata record on (KIP-900)
      format_line="$(secure_py format-args "$dir")" || die "secure.py format-args failed"
      read -r -a format_extra <<<"$format_line"
    fi
    if ! "$JAVA_BIN" -Xmx256m -cp "$LIBS_DIR/*" kafka.tools.StorageTool format \
           --config "$dir/server.properties" --cluster-id "$cluster_id" --ignore-formatted \
           ${format_extra[@]+"${format_extra[@]}"} >"$dir/format.log" 2>&1; then
      cat "$dir/format.log" >&2
      die "formatting $dir/data failed"
    fi
  fi

  # Fresh log per run, so `wait` only sees this run's "started" line.
  [[ -f "$dir/server.log" ]] && mv -f "$dir/server.log" "$dir/server.log.prev"
  [[ -f "$dir/console.log" ]] && mv -f "$dir/console.log" "$dir/console.log.prev"

  local -a heap extra_jvm
  read -r -a heap <<<"${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
  read -r -a extra_jvm <<<"${KAFKA_JVM_OPTS:-}"
  # setsid: own session, so the caller's process-group kills and SIGHUPs don't reach it.
  setsid nohup "$JAVA_BIN" "${heap[@]}" \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true ${extra_jvm[@]+"${extra_jvm[@]}"} \
    -cp "$LIBS_DIR/*" "-Dlog4j2.configurationFile=$LOG4J_CONF" "-Dkafka.logs.dir=$dir" \
    kafka.Kafka "$dir/server.properties" \
    </dev/null >"$dir/console.log" 2>&1 &
  pid=$!
  disown "$pid" 2>/dev/null || true
  printf '%s\n' "$pid" >"$dir/pid"

  # kafka.Kafka is exec'd by setsid/nohup, so $! is the JVM once they have exec'd.
  for _ in $(seq 1 50); do
    running_pid "$dir" >/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  # Don't leave a half-started broker behind: on failure, stop it and fail.
  if ! (cmd_wait "$dir" "$timeout"); then
    cmd_stop "$dir" || true
    die "start failed; see $dir/server.log and $dir/console.log"
  fi
  if (( SECURE )); then
    secure_py clients "$dir" "$port" || die "secure.py clients failed"
  fi
  cat "$dir/bootstrap"
}

# ----------------------------------------------------------------- stop/status

cmd_stop() {
  (( $# == 1 )) || { usage >&2; exit 2; }
  local dir pid deadline
  if ! dir="$(existing_dir "$1")"; then
    note "no such dir $1; nothing to stop"
    return 0
  fi
  if ! pid="$(running_pid "$dir")"; then
    rm -f "$dir/pid"
    note "broker in $dir not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$(( SECONDS + STOP_TIMEOUT ))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      note "broker pid $pid did not exit after ${STOP_TIMEOUT} s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  rm -f "$dir/pid"
  note "stopped broker in $dir (pid $pid)"
}

cmd_status() {
  (( $# == 1 )) || { usage >&2; exit 2; }
  local dir pid bootstrap="-"
  if dir="$(existing_dir "$1")"; then
    [[ -f "$dir/bootstrap" ]] && bootstrap="$(cat "$dir/bootstrap")"
    if pid="$(running_pid "$dir")"; then
      printf 'running %s\n' "$bootstrap"
      return 0
    fi
  fi
  printf 'stopped %s\n' "$bootstrap"
  return 3
}

main() {
  local cmd="${1:-}"
  (( $# > 0 )) && shift
  case "$cmd" in
    fetch)  (( $# == 0 )) || { usage >&2; exit 2; }; cmd_fetch ;;
    start)  cmd_start "$@" ;;
    start-secure) SECURE=1; cmd_start "$@" ;;
    wait)   cmd_wait "$@" ;;
    stop)   cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    help|-h|--help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
