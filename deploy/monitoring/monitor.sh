#!/usr/bin/env bash
# Runs a private Prometheus (Debian's package) with Veil's alert rules, scraping Flink's
# Prometheus reporter, in the foreground (`make monitor`; Ctrl-C stops it).
#
# Environment:
#   FLINK_METRICS   comma-separated HOST:PORT of Flink JVMs' reporters (default 127.0.0.1:9249;
#                   embedded Flink and each TaskManager take the first free port of 9249-9259)
#   PROM_PORT       Prometheus' web/API port on 127.0.0.1 (default 9090)
#   PROM_DIR        its configuration and data (default $VEIL_CACHE/monitoring, else .cache/monitoring)
#   SCRAPE_INTERVAL / EVAL_INTERVAL   (default 15s / 15s; the tests use 1s)
#   RULES           alert rules file (default deploy/monitoring/alerts.yml)
# Start the pipeline with FLINK_CONF_DIR=deploy/monitoring/flink-conf (embedded Flink) or
# the same reporter lines in the cluster's flink-conf.yaml; see docs/monitoring.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
command -v prometheus >/dev/null || { echo "error: prometheus missing: run make monitor-setup" >&2; exit 1; }
dir=${PROM_DIR:-${VEIL_CACHE:-$repo/.cache}/monitoring}
mkdir -p "$dir/data"
targets=""
IFS=, read -ra hosts <<<"${FLINK_METRICS:-127.0.0.1:9249}"
for h in "${hosts[@]}"; do targets+="'$h', "; done
cp "${RULES:-$here/alerts.yml}" "$dir/alerts.yml"
{
    cat <<CONF
# Written by deploy/monitoring/monitor.sh
global:
  scrape_interval: ${SCRAPE_INTERVAL:-15s}
  evaluation_interval: ${EVAL_INTERVAL:-15s}
rule_files: ['$dir/alerts.yml']
scrape_configs:
  - job_name: veil-flink
    static_configs:
      - targets: [${targets%, }]
    metric_relabel_configs:
CONF
    sed -e '/^#/d' -e 's/^/      /' "$here/relabel.yml"
} >"$dir/prometheus.yml"
promtool check config "$dir/prometheus.yml" >/dev/null
echo "Prometheus on http://127.0.0.1:${PROM_PORT:-9090} scraping ${FLINK_METRICS:-127.0.0.1:9249} (config: $dir/prometheus.yml)" >&2
exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
    --web.listen-address="127.0.0.1:${PROM_PORT:-9090}" --storage.tsdb.retention.time=2d \
    --log.level=warn
