"""The pipeline on Apache Flink through Beam's FlinkRunner, against the real broker.

Flink runs embedded (``--flink_master=[local]``) or as a standalone session cluster
started from the job-server jar (deploy/flink/flink.sh); the Python SDK harness runs in
LOOPBACK mode (no Docker here). ``veil run`` adds the Flink flags Veil needs
(veil.pipelines.runners): streaming mode with checkpoints, so bundles are finalized and
source offsets committed.
"""

from __future__ import annotations

import collections
import os
import socket
import subprocess
from pathlib import Path

import pytest
from kafka_checks import (
    committed,
    finish,
    kill_group,
    pii_values,
    produce,
    raw_bytes,
    read_outputs,
    text_records,
    veil_run,
    wait_mid_stream,
)
from veil_testing import framed, media_record, opaque

from veil.pipelines.topics import topic_specs
from veil.transforms.audit_chain import read_topic, verify
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.flink]

REPO = Path(__file__).resolve().parents[2]
FLINK_SH = REPO / "deploy" / "flink" / "flink.sh"
LOCAL = ("--runner=FlinkRunner", "--flink_master=[local]")


@pytest.fixture(scope="session", autouse=True)
def flink_job_server_jar():
    """Builds (once, cached) the Beam Flink job server; veil run finds it via the env."""
    built = subprocess.run(["bash", str(FLINK_SH), "jar"], capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"could not build the Flink job server:\n{built.stderr[-3000:]}")
    jar = built.stdout.strip().splitlines()[-1]
    previous = os.environ.get("VEIL_FLINK_JOB_SERVER_JAR")
    os.environ["VEIL_FLINK_JOB_SERVER_JAR"] = jar
    yield jar
    if previous is None:
        os.environ.pop("VEIL_FLINK_JOB_SERVER_JAR", None)
    else:
        os.environ["VEIL_FLINK_JOB_SERVER_JAR"] = previous


def _setup_topics(bootstrap, prefix):
    names = TopicNames(prefix)
    ensure_topics({"bootstrap_servers": bootstrap}, topic_specs(names))
    return names


def _check_bounded_run(bootstrap, names, proc, texts, bad):
    code, logs = finish(proc, 600)
    assert code == 0, logs.decode(errors="replace")[-4000:]
    sanitized, dead, audit = read_outputs(bootstrap, names)
    coords = collections.Counter(
        (v["source"]["partition"], v["source"]["offset"]) for _, v in sanitized + dead
    )
    assert len(coords) == len(texts) + len(bad) and set(coords.values()) == {1}
    assert {v["record_id"] for _, v in sanitized} == {opaque(r["record_id"]) for r in texts}
    assert sorted(v["error_code"] for _, v in dead) == sorted(code for _, _, code in bad)
    assert {(v["source"]["partition"], v["source"]["offset"]) for _, v in audit} == set(coords)
    # The audit chains built on Flink's SDK workers verify (hash links; no key here).
    chains = verify(read_topic({"bootstrap_servers": bootstrap}, names.audit))
    assert chains.ok and chains.events == len(audit), [str(p) for p in chains.problems]
    blobs = list(raw_bytes(sanitized, dead, audit))
    for value in pii_values():
        assert not any(value.encode() in blob for blob in blobs), "a PII value leaked"
        assert value.encode() not in logs
    return logs


def _bad_records():
    return [
        (None, b"not avro at all", "BAD_FRAMING"),
        (b"s", framed(media_record("bad-empty", "s", b"")), "EMPTY_PAYLOAD"),
    ]


def test_flink_local_bounded_run_conserves_commits_and_leaks_nothing(kafka_bootstrap, topic_prefix):
    names = _setup_topics(kafka_bootstrap, topic_prefix)
    texts, bad = text_records(30), _bad_records()
    produce(kafka_bootstrap, names.raw, texts + [(k, v) for k, v, _ in bad])

    proc = veil_run(kafka_bootstrap, topic_prefix, *LOCAL, "--veil_read_mode=bounded")
    logs = _check_bounded_run(kafka_bootstrap, names, proc, texts, bad)
    assert b"FlinkRunner defaults added" in logs
    # Bundles were finalized on completed checkpoints: every offset is committed.
    offsets = committed(kafka_bootstrap, f"{topic_prefix}-pipeline", names.raw, 3)
    assert sum(offsets.values()) == len(texts) + len(bad)


@pytest.mark.parametrize("redistribute", ["off", "on"])
def test_flink_streaming_job_killed_mid_stream_resumes_without_loss(
    kafka_bootstrap, topic_prefix, redistribute
):
    """Killed mid-stream (pipeline, job server and Flink at once), then submitted
    afresh: every record has an outcome. ``on``: redistributed after the read, where
    Flink finalizes read bundles whose records may not be written yet; their offsets
    must not commit before a later checkpoint (``_DeferredCommits``)."""
    names = _setup_topics(kafka_bootstrap, topic_prefix)
    first = text_records(300, "first")
    produce(kafka_bootstrap, names.raw, first)

    streaming = (
        *LOCAL,
        "--veil_read_mode=unbounded",
        "--checkpointing_interval=2000",
        f"--veil_redistribute={redistribute}",
    )
    proc = veil_run(
        kafka_bootstrap,
        topic_prefix,
        *streaming,
        "--veil_max_records_per_bundle=5",
        start_new_session=True,
    )
    try:
        wait_mid_stream(proc, kafka_bootstrap, names, at_least=10, total=len(first), timeout_s=300)
    finally:
        kill_group(proc)  # the pipeline, its job server and Flink, all at once

    second = text_records(20, "second")
    produce(kafka_bootstrap, names.raw, second)
    proc = veil_run(kafka_bootstrap, topic_prefix, *streaming, "--veil_idle_stop_s=5")
    code, logs = finish(proc, 600)
    assert code == 0, logs.decode(errors="replace")[-4000:]
    assert (b"Redistributing after the read" in logs) is (redistribute == "on")

    sanitized, dead, _ = read_outputs(kafka_bootstrap, names)
    assert not dead
    assert {v["record_id"] for _, v in sanitized} == {
        opaque(r["record_id"]) for r in first + second
    }
    variants = collections.defaultdict(set)
    for rec, v in sanitized:
        variants[v["record_id"]].add((rec.key, v["payload"]))
    assert all(len(v) == 1 for v in variants.values()), "duplicates must be identical"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_flink_standalone_cluster_runs_the_pipeline(kafka_bootstrap, topic_prefix, tmp_path):
    """`veil run --runner FlinkRunner --flink_master HOST:PORT` on a standalone cluster."""
    env = dict(os.environ, FLINK_REST_PORT=str(_free_port()))
    started = subprocess.run(
        ["bash", str(FLINK_SH), "cluster-start", str(tmp_path / "flink")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    master = started.stdout.strip().splitlines()[-1]
    try:
        names = _setup_topics(kafka_bootstrap, topic_prefix)
        texts, bad = text_records(12), _bad_records()
        produce(kafka_bootstrap, names.raw, texts + [(k, v) for k, v, _ in bad])
        proc = veil_run(
            kafka_bootstrap,
            topic_prefix,
            "--runner=FlinkRunner",
            f"--flink_master={master}",
            "--veil_read_mode=bounded",
        )
        _check_bounded_run(kafka_bootstrap, names, proc, texts, bad)
    finally:
        subprocess.run(["bash", str(FLINK_SH), "cluster-stop", str(tmp_path / "flink")])


def test_flink_parallelism_two_on_separate_sdk_workers(kafka_bootstrap, topic_prefix):
    """A standalone cluster with a Python SDK worker pool (``--environment_type
    EXTERNAL``), parallelism 2 over the 3-partition raw topic, redistributed (``--veil_redistribute auto``,
    on above parallelism 1): the job's Python code runs in worker processes the
    pool started (not in the submitting process), the text step's task received records
    on both subtasks, every offset has exactly one outcome, the audit chains verify (one
    writer per chain although the steps ran on both subtasks) and all offsets commit.

    Nothing here is timed: the deadlines (cluster and pool start, the job) are generous
    for a loaded 2-core box, and the worker count is a lower bound (a job restart by
    Flink's restart strategy starts more workers without harming the outcome)."""
    import sys

    sys.path.insert(0, str(REPO / "bench" / "platform"))
    from flink_scale import FlinkSession

    names = _setup_topics(kafka_bootstrap, topic_prefix)
    texts, bad = text_records(60), _bad_records()
    produce(kafka_bootstrap, names.raw, texts + [(k, v) for k, v, _ in bad])
    with FlinkSession(slots=2) as session:
        proc = veil_run(
            kafka_bootstrap, topic_prefix, *session.flags(2), "--veil_read_mode=bounded"
        )
        logs = _check_bounded_run(kafka_bootstrap, names, proc, texts, bad)
        workers = session.workers_started()
        pool_log = session.pool_log.read_text(errors="replace")
        tasks = session.last_job_subtasks()
    assert workers >= 2, pool_log[-2000:]
    # Round robin after the read: both subtasks of the text step's task got records,
    # whichever subtask read which partitions.
    step = [counts for name, counts in tasks if "Text" in name and "ReadRaw" not in name]
    assert len(step) == 1 and len(step[0]) == 2 and min(step[0]) > 0, tasks
    # The text step's model loaded in the workers, never in the submitting process
    # (with LOOPBACK, ``veil -v run`` logs this line itself).
    assert b"text step: model ready" not in logs
    offsets = committed(kafka_bootstrap, f"{topic_prefix}-pipeline", names.raw, 3)
    assert sum(offsets.values()) == len(texts) + len(bad)
