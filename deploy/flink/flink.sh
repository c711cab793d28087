#!/usr/bin/env bash
# Veil's Flink tooling: the Beam Flink job-server jar, and a local standalone Flink cluster.
#
#   deploy/flink/flink.sh jar                 build (once, cached) and print the job-server jar path
#   deploy/flink/flink.sh cluster-start DIR   start a standalone Flink 1.19 session cluster
#                                             (JobManager + TaskManager, REST/dashboard on
#                                             127.0.0.1:${FLINK_REST_PORT:-8081}); prints HOST:PORT
#   deploy/flink/flink.sh cluster-stop DIR
#
# Environment: VEIL_CACHE (default <repo>/.cache), FLINK_REST_PORT, FLINK_TM_SLOTS (2),
# FLINK_START_TIMEOUT_S (240).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VEIL_CACHE:-$repo/.cache}/flink
pom=$here/job-server/pom.xml
jar_name=beam-runners-flink-1.19-job-server-veil-2.62.0.jar

die() { echo "flink.sh: $*" >&2; exit 1; }

build_jar() {
    local jar=$cache/$jar_name stamp=$cache/$jar_name.sha256
    local want
    want=$(sha256sum "$pom" | cut -d' ' -f1)
    if [[ -f $jar && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        echo "$jar"
        return
    fi
    command -v mvn >/dev/null || die "Maven (mvn) is required to build the Flink job server"
    command -v java >/dev/null || die "Java 17+ is required"
    mkdir -p "$cache"
    local work
    work=$(mktemp -d)
    cp "$pom" "$work/pom.xml"
    echo "Building the Beam Flink job server (first time only) ..." >&2
    if ! mvn -q -B -f "$work/pom.xml" package -DskipTests >"$cache/build.log" 2>&1; then
        tail -30 "$cache/build.log" >&2
        rm -rf "$work"
        die "job-server build failed (log: $cache/build.log)"
    fi
    mv "$work/target/$jar_name" "$jar"
    rm -rf "$work"
    echo "$want" >"$stamp"
    echo "$jar"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

cluster_start() {
    local dir=$1
    mkdir -p "$dir/conf" "$dir/log" "$dir/checkpoints" "$dir/savepoints"
    dir=$(cd "$dir" && pwd)
    local jar rest_port rpc_port
    jar=$(build_jar)
    rest_port=${FLINK_REST_PORT:-8081}
    rpc_port=$(free_port)
    cat >"$dir/conf/flink-conf.yaml" <<CONF
jobmanager.rpc.address: localhost
jobmanager.rpc.port: $rpc_port
jobmanager.bind-host: 127.0.0.1
jobmanager.memory.process.size: 1200m
taskmanager.bind-host: 127.0.0.1
taskmanager.host: localhost
taskmanager.memory.process.size: 2000m
taskmanager.numberOfTaskSlots: ${FLINK_TM_SLOTS:-2}
parallelism.default: 1
rest.address: localhost
rest.bind-address: 127.0.0.1
rest.port: $rest_port
state.checkpoints.dir: file://$dir/checkpoints
state.savepoints.dir: file://$dir/savepoints
execution.checkpointing.interval: 10s
restart-strategy.type: fixed-delay
restart-strategy.fixed-delay.attempts: 3
restart-strategy.fixed-delay.delay: 5s
CONF
    FLINK_LOG_DIR=$dir/log setsid nohup java -Xmx1g -Dlog.file="$dir/log/jobmanager.log" \
        -cp "$jar" org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint \
        --configDir "$dir/conf" >"$dir/log/jobmanager.out" 2>&1 </dev/null &
    echo $! >"$dir/jm.pid"
    # TaskManager memory settings are computed the way Flink's own scripts do.
    local params jvm dyn
    params=$(java -cp "$jar" org.apache.flink.runtime.util.bash.BashJavaUtils \
        GET_TM_RESOURCE_PARAMS --configDir "$dir/conf" 2>/dev/null | grep BASH_JAVA_UTILS_EXEC_RESULT)
    jvm=$(echo "$params" | sed -n 1p | sed 's/.*RESULT://')
    dyn=$(echo "$params" | sed -n 2p | sed 's/.*RESULT://')
    [[ -n $jvm ]] || die "could not compute TaskManager memory settings"
    # shellcheck disable=SC2086  # the computed settings are several words on purpose
    setsid nohup java $jvm -Dlog.file="$dir/log/taskmanager.log" -cp "$jar" \
        org.apache.flink.runtime.taskexecutor.TaskManagerRunner --configDir "$dir/conf" $dyn \
        >"$dir/log/taskmanager.out" 2>&1 </dev/null &
    echo $! >"$dir/tm.pid"
    # Two JVMs starting on a loaded 2-core box (CI) can take well over a minute.
    local timeout=${FLINK_START_TIMEOUT_S:-240}
    local deadline=$((SECONDS + timeout))
    until curl -sf "http://127.0.0.1:$rest_port/taskmanagers" 2>/dev/null | grep -q '"slotsNumber"'; do
        if ((SECONDS > deadline)); then
            tail -20 "$dir/log/jobmanager.out" "$dir/log/taskmanager.out" >&2 || true
            cluster_stop "$dir"
            die "Flink cluster not ready after $timeout s"
        fi
        for pidfile in "$dir/jm.pid" "$dir/tm.pid"; do
            kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -20 "$dir/log/"*.out >&2; cluster_stop "$dir"; die "a Flink process exited during start-up"; }
        done
        sleep 1
    done
    echo "localhost:$rest_port" >"$dir/master"
    echo "localhost:$rest_port"
}

cluster_stop() {
    local dir=$1 pid
    for pidfile in "$dir/tm.pid" "$dir/jm.pid"; do
        [[ -f $pidfile ]] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

case ${1:-} in
    jar) build_jar ;;
    cluster-start) [[ $# -eq 2 ]] || die "usage: flink.sh cluster-start DIR"; cluster_start "$2" ;;
    cluster-stop) [[ $# -eq 2 ]] || die "usage: flink.sh cluster-stop DIR"; cluster_stop "$2" ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
