"""``veil report --since``: the report from the topics over a time window, on a real
pipeline run against the real broker."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kafka_checks import finish, pii_values, produce, text_records, veil_run
from veil_testing import framed, media_record

from veil.pipelines.report import from_topics
from veil.pipelines.topics import topic_specs
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics

pytestmark = pytest.mark.integration


def test_report_from_topics_over_a_window(kafka_bootstrap, topic_prefix, tmp_path):
    import datetime as dt

    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    produce(
        kafka_bootstrap,
        names.raw,
        text_records(8) + [(None, b"junk"), (b"s", framed(media_record("e", "s", b"")))],
    )
    started = dt.datetime.now(dt.UTC)
    proc = veil_run(kafka_bootstrap, topic_prefix, "--veil_read_mode=bounded")
    code, logs = finish(proc, 600)
    assert code == 0, logs.decode(errors="replace")[-3000:]

    data = from_topics(
        {"bootstrap_servers": kafka_bootstrap},
        topic_prefix,
        started - dt.timedelta(seconds=5),
        dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5),
    )
    outcomes = data.by_outcome()
    assert len(data.records) == 10 and outcomes["sanitized"] == 8 and outcomes["dead-lettered"] == 2
    assert sorted(r.error_code for r in data.records if r.error_code) == [
        "BAD_FRAMING",
        "EMPTY_PAYLOAD",
    ]
    assert all(r.sensitivity for r in data.records if r.outcome == "sanitized")
    assert all(r.sanitized_bytes for r in data.records if r.outcome == "sanitized")
    assert data.chain.ok and data.audit_events >= 10  # one event per record

    # A window before the run holds nothing (the chain is still checked from genesis).
    empty = from_topics(
        {"bootstrap_servers": kafka_bootstrap},
        topic_prefix,
        started - dt.timedelta(hours=2),
        started - dt.timedelta(hours=1),
    )
    assert empty.records == [] and empty.chain.ok

    out = tmp_path / "r.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "veil.pipelines.cli",
            "report",
            "--since",
            "10m",
            "--bootstrap",
            kafka_bootstrap,
            "--prefix",
            topic_prefix,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    html = out.read_bytes()
    assert b"10 record(s)" in done.stdout.encode() and b'data-section="audit-chain"' in html
    for value in pii_values():
        assert value.encode() not in html
