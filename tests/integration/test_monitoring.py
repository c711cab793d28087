"""Monitoring on the runner: Flink's Prometheus reporter, Prometheus, Veil's alert rules.

The pipeline runs on embedded Flink (``--flink_master=[local]``) with the reporter from
``deploy/monitoring/flink-conf``; ``deploy/monitoring/monitor.sh`` starts Debian's
Prometheus with Veil's relabelling and its shipped alert rules, made quick for the test
(1 s scrapes and evaluations, 20 s windows, no ``for`` delay). The test reads
Prometheus' HTTP API: records in, step-time histogram and consumer lag with non-zero
values, then a burst of bad records makes the dead-letter series appear and the
dead-letter-rate alert fire (and it was not firing before).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from kafka_checks import produce, text_records, veil_run
from veil_testing import framed, media_record

from veil.pipelines.topics import topic_specs
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.flink]

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quick_rules(target: Path) -> Path:
    """The shipped rules with test-sized windows and no pending period."""
    text = (MONITORING / "alerts.yml").read_text()
    text = re.sub(r"\[(5|10)m\]", "[20s]", text)
    text = re.sub(r"for: \d+m", "for: 0s", text)
    target.write_text(text)
    return target


class Prometheus:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"

    def _get(self, path: str, **params) -> dict:
        url = f"{self.base}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)["data"]

    def value(self, query: str) -> float | None:
        result = self._get("/api/v1/query", query=query)["result"]
        if not result:
            return None
        return sum(float(r["value"][1]) for r in result)

    def firing(self) -> set:
        return {
            a["labels"]["alertname"]
            for a in self._get("/api/v1/alerts")["alerts"]
            if a["state"] == "firing"
        }

    def wait(self, what, timeout_s: float, proc=None):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                got = what()
            except OSError:
                got = None
            if got:
                return got
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"the pipeline exited early ({proc.returncode})")
            time.sleep(1)
        return what()


@pytest.fixture
def job_server_jar():
    built = subprocess.run(
        ["bash", str(REPO / "deploy" / "flink" / "flink.sh"), "jar"], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def _stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_prometheus_scrapes_flink_and_the_dead_letter_alert_fires(
    kafka_bootstrap, topic_prefix, tmp_path, job_server_jar
):
    if shutil.which("prometheus") is None:
        pytest.fail("Prometheus missing: run `make monitor-setup`")
    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    produce(kafka_bootstrap, names.raw, text_records(30))

    metrics_port, prom_port = _free_port(), _free_port()
    conf = tmp_path / "flink-conf"
    conf.mkdir()
    reporter = (MONITORING / "flink-conf" / "flink-conf.yaml").read_text()
    (conf / "flink-conf.yaml").write_text(reporter.replace("9249-9259", str(metrics_port)))
    env = {**os.environ, "FLINK_CONF_DIR": str(conf), "VEIL_FLINK_JOB_SERVER_JAR": job_server_jar}
    pipeline = veil_run(
        kafka_bootstrap,
        topic_prefix,
        "--runner=FlinkRunner",
        "--flink_master=[local]",
        "--checkpointing_interval=2000",
        env=env,
        start_new_session=True,
    )
    prom_env = {
        **os.environ,
        "FLINK_METRICS": f"127.0.0.1:{metrics_port}",
        "PROM_PORT": str(prom_port),
        "PROM_DIR": str(tmp_path / "prometheus"),
        "SCRAPE_INTERVAL": "1s",
        "EVAL_INTERVAL": "1s",
        "RULES": str(_quick_rules(tmp_path / "alerts.yml")),
    }
    prom_log = open(tmp_path / "prometheus.log", "wb")
    prometheus = subprocess.Popen(
        ["bash", str(MONITORING / "monitor.sh")],
        env=prom_env,
        stdout=prom_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prom = Prometheus(prom_port)
    try:
        # Records in, the step-time histogram and the consumer lag, from Flink's reporter.
        assert prom.wait(
            lambda: (prom.value("sum(veil_records_in_total)") or 0) >= 30, 420, pipeline
        ), "records-in never reached 30 in Prometheus"
        assert prom.value('sum(veil_step_latency_ms_count{stage="text"})') >= 30
        assert prom.value('sum(veil_step_latency_ms_bucket{stage="text", le="+Inf"})') >= 30
        assert prom.value('sum(veil_step_latency_ms_sum{stage="text"})') > 0
        p99 = prom.value(
            'histogram_quantile(0.99, sum by (le) (veil_step_latency_ms_bucket{stage="text"}))'
        )
        assert p99 is not None and 0 < p99 <= 120000
        # One lag gauge per partition read (Beam gauges reach Flink as numbers).
        assert prom.wait(lambda: (prom.value("count(veil_consumer_lag_records)") or 0) >= 1, 60)
        # No dead letters yet: every code's series is there, at 0 (so rate() sees a first
        # burst), and no alert.
        assert prom.wait(lambda: (prom.value("count(veil_dead_letters_total)") or 0) >= 40, 60)
        assert prom.value("sum(veil_dead_letters_total)") == 0
        assert prom.value('count(veil_step_timeouts_total{stage="text"})') >= 1
        assert "VeilDeadLetterRateHigh" not in prom.firing()

        # A burst of bad records: dead-letter series per code, and the rate alert fires.
        bad = [(None, b"not avro at all")] * 30 + [
            (b"s", framed(media_record(f"empty-{i}", "s", b""))) for i in range(30)
        ]
        produce(kafka_bootstrap, names.raw, bad)
        assert prom.wait(
            lambda: (prom.value("sum(veil_dead_letters_total)") or 0) >= 60, 300, pipeline
        ), (
            prom.value("sum(veil_dead_letters_total)"),
            prom.value("sum(veil_records_in_total)"),
            prom.value("count(veil_dead_letters_total)"),
            prom.value("sum(veil_consumer_lag_records)"),
        )
        assert prom.value('sum(veil_dead_letters_total{code="BAD_FRAMING"})') == 30
        assert prom.value('sum(veil_dead_letters_total{code="EMPTY_PAYLOAD"})') == 30
        assert prom.wait(lambda: "VeilDeadLetterRateHigh" in prom.firing(), 120), prom.firing()
    finally:
        _stop(prometheus)
        prom_log.close()
        _stop(pipeline)
