"""deploy/monitoring, offline: the rules and the generated Prometheus config pass promtool,
every alert fires on made-up series (promtool test rules), and every metric the alerts
and the Grafana dashboard use is one the relabelling produces or Flink exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"


def _promtool(*args, cwd=MONITORING):
    if shutil.which("promtool") is None:
        pytest.fail("promtool missing: run `make monitor-setup`")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_alert_rules_are_valid_and_each_fires_on_its_condition():
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "alerts-test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    tests = (MONITORING / "alerts-test.yml").read_text()
    for rule in rules:
        if rule["alert"] != "VeilNoInput":  # absent(): nothing to make up
            assert f"alertname: {rule['alert']}" in tests, rule["alert"]


def test_monitor_script_writes_a_valid_config(tmp_path):
    env = {
        **os.environ,
        "PROM_DIR": str(tmp_path),
        "FLINK_METRICS": "127.0.0.1:9251,127.0.0.1:9252",
        "PROM_PORT": "1",
        "PATH": f"{tmp_path}/bin:{os.environ['PATH']}",
    }
    # A stand-in for the final exec only: the script's own checks (promtool) run for real.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "prometheus").write_text('#!/bin/sh\necho "$@" > "$PROM_DIR/args"\n')
    (tmp_path / "bin" / "prometheus").chmod(0o755)
    done = subprocess.run(
        ["bash", str(MONITORING / "monitor.sh")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9251", "127.0.0.1:9252"]
    assert len(job["metric_relabel_configs"]) == len(
        yaml.safe_load((MONITORING / "relabel.yml").read_text())
    )
    assert "--web.listen-address=127.0.0.1:1" in (tmp_path / "args").read_text()


def _produced_names() -> set:
    names = set()
    for rule in yaml.safe_load((MONITORING / "relabel.yml").read_text()):
        if rule.get("target_label") == "__name__":
            replacement = rule["replacement"]
            if "$" in replacement:  # veil_kafka_${1}_total, veil_step_latency_ms_$1
                options = re.search(r"\(([^)]*)\)", rule["regex"]).group(1).split("|")
                names |= {re.sub(r"\$\{?1\}?", o, replacement) for o in options}
            else:
                names.add(replacement)
    return names


def test_alerts_and_dashboard_use_only_metrics_that_exist():
    produced = _produced_names() | {
        "veil_step_latency_ms_bucket",
        "flink_jobmanager_job_numRestarts",
    }
    texts = [(MONITORING / "alerts.yml").read_text()]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    texts += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for text in texts for m in re.findall(r"\b(veil_[a-z_]+|flink_[A-Za-z_]+)\b", text)}
    used -= {"veil_dead_letters_total by code"}
    assert used and used <= produced, sorted(used - produced)
    assert {
        "veil_records_in_total",
        "veil_dead_letters_total",
        "veil_step_latency_ms_bucket",
    } <= used
