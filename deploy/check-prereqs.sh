#!/usr/bin/env bash
# Fails with one clear line when something Veil's set-up needs is missing.
set -euo pipefail
fail() { echo "error: $*" >&2; exit 1; }
command -v python3.11 >/dev/null || fail "Python 3.11 (python3.11) is required"
command -v java >/dev/null || fail "Java 17+ is required (install a JDK, e.g. apt-get install openjdk-17-jdk-headless)"
java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
[ "${java_major%%.*}" -ge 17 ] 2>/dev/null || fail "Java 17+ is required, found ${java_major:-unknown}"
command -v mvn >/dev/null || fail "Maven is required to fetch the Kafka broker (apt-get install maven)"
exit 0
