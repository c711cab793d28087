"""``veil produce DIR`` then a bounded ``veil run``, in process: the run ends with a summary
line from the pipeline's counters (issue 19), read, sanitized and dead-lettered by code."""

from __future__ import annotations

import json

import pytest

from veil.pipelines.cli import main

pytestmark = pytest.mark.integration


def test_bounded_run_ends_with_a_summary(kafka_bootstrap, topic_prefix, tmp_path, capsys):
    kafka = ["--veil_bootstrap_servers", kafka_bootstrap, "--veil_topic_prefix", topic_prefix]
    assert main(["topics", "create", *kafka, "--partitions", "1"]) == 0
    (tmp_path / "in").mkdir()
    records = tmp_path / "in" / "records.jsonl"  # produced by naming its directory
    records.write_text(
        json.dumps({"subject_key": "alice", "payload": "Mail ann@example.com"})
        + "\n"
        + json.dumps({"subject_key": "bob", "payload": "x", "modality": "hologram"})
        + "\n"
    )
    assert (
        main(["produce", str(tmp_path / "in"), "--topic", f"{topic_prefix}.raw", *kafka[:2]]) == 0
    )
    capsys.readouterr()
    code = main(
        [
            "run",
            f"--veil_bootstrap_servers={kafka_bootstrap}",
            f"--veil_topic_prefix={topic_prefix}",
            f"--veil_consumer_group={topic_prefix}-pipeline",
            "--veil_read_mode=bounded",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == (
        "veil run finished: 2 record(s) read, 1 sanitized, 1 dead-lettered (UNKNOWN_MODALITY 1)"
    )
