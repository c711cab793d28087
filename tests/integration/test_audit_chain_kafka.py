"""The audit chain on the real broker: the sink chains what it produces, over bundles,
restarts and other writers; the pipeline's audit topic verifies; tampering is found.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

import apache_beam as beam
import pytest
from kafka_checks import (
    VEIL,
    finish,
    kill_group,
    produce,
    text_records,
    veil_run,
    wait_mid_stream,
)
from veil_testing import beam_pipeline

from veil.pipelines.topics import topic_specs
from veil.schemas import AUDIT_EVENT, catalog
from veil.transforms.audit import record_event
from veil.transforms.audit_chain import read_topic, resolve_mac_key, verify
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import WriteToKafka, audit_chainer, ensure_topics
from veil.transforms.kafkaio.audit_chainer import AuditChainSpec
from veil.transforms.keys import write_key_file
from veil.transforms.records import AuditStep, KafkaWrite, Source

pytestmark = pytest.mark.integration


def _writes(topic: str, partition: int, offsets) -> list[KafkaWrite]:
    """The audit writes emit would make for records at ``offsets`` of a source partition."""
    writes = []
    for offset in offsets:
        source = Source("veil.raw", partition, offset)
        trail = [AuditStep("decode", "ACCEPTED"), AuditStep("emit", "PUBLISHED")]
        event = record_event(source, f"r{partition}-{offset}", "text", trail, "p", "v")
        value = catalog().encode(AUDIT_EVENT, event)
        writes.append(KafkaWrite(topic, event["event_id"].encode(), value, (), source))
    return writes


def _write(bootstrap: str, spec: AuditChainSpec, writes) -> None:
    """One pipeline run (one bundle per partition's writes) through the real sink."""
    with beam_pipeline() as p:
        _ = (
            p
            | beam.Create(writes, reshuffle=False)
            | WriteToKafka({"bootstrap_servers": bootstrap}, topic_writers=[spec])
        )


@pytest.fixture
def audit_key(tmp_path, monkeypatch):
    monkeypatch.delenv("VEIL_AUDIT_KEY_FILE", raising=False)
    return str(write_key_file(tmp_path / "audit.key"))


def test_sink_chains_over_bundles_restarts_and_other_writers(
    kafka_bootstrap, topic_prefix, audit_key
):
    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    spec = AuditChainSpec(names.audit, key_ref=audit_key, recover_window=4)
    config = {"bootstrap_servers": kafka_bootstrap}

    _write(
        kafka_bootstrap,
        spec,
        _writes(names.audit, 0, range(0, 5)) + _writes(names.audit, 1, range(0, 3)),
    )
    _write(kafka_bootstrap, spec, _writes(names.audit, 0, range(5, 9)))  # cached heads
    chainer = spec.open(config)
    recoveries = chainer.recoveries
    # Another worker (its own chainer, as in another process) extends chain 1 ...
    _send_as_other_worker(spec, config, _writes(names.audit, 1, range(3, 6)))
    # ... so this process must notice and recover chain 1's head from the topic.
    _write(
        kafka_bootstrap,
        spec,
        _writes(names.audit, 1, range(6, 8)) + _writes(names.audit, 2, range(2)),
    )
    assert chainer.recoveries > recoveries
    # A restart (a fresh process has no cache) replays offsets 7-8 of partition 0.
    audit_chainer._CHAINERS.clear()
    _write(kafka_bootstrap, spec, _writes(names.audit, 0, range(7, 11)))

    report = verify(read_topic(config, names.audit), [resolve_mac_key(audit_key)])
    assert report.ok, [str(p) for p in report.problems]
    assert report.events == 11 + 2 + 8 + 2  # one event per record, replays included
    assert report.duplicates == 2 and report.macs_checked == report.events
    assert {name.split(" ")[0] for name in report.chains} == {f"veil.raw/{p}" for p in range(3)}


def _send_as_other_worker(spec, config, writes) -> None:
    """Writes through a second chainer and producer, as another process would."""
    from kafka import KafkaProducer

    other = audit_chainer.AuditChainer(spec, config)
    producer = KafkaProducer(acks="all", enable_idempotence=True, **config)
    try:
        other.begin_bundle()
        futures = [other.send(producer, write) for write in writes]
        producer.flush()
        other.settle()
        assert all(f.succeeded() for f in futures)
    finally:
        producer.close()


def _verify_cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [VEIL, "audit", "verify", "--bootstrap", bootstrap, *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_pipeline_audit_topic_verifies_across_restarts_and_tampering_is_found(
    kafka_bootstrap, topic_prefix, audit_key, tmp_path
):
    names = TopicNames(topic_prefix)
    specs = [
        dataclasses.replace(s, partitions=1) if s.name == names.audit else s
        for s in topic_specs(names)
    ]  # one audit partition: the chains of all three source partitions interleave there
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, specs)
    env = {"VEIL_AUDIT_KEY_FILE": audit_key}
    first = text_records(60, "first")
    produce(kafka_bootstrap, names.raw, first + [(b"k", b"not avro")])
    # A streaming run, SIGKILLed mid-stream: sends in flight are lost, offsets replayed.
    proc = veil_run(
        kafka_bootstrap, topic_prefix, "--veil_read_mode=unbounded",
        "--veil_max_records_per_bundle=4", env=_env(env), start_new_session=True,
    )  # fmt: skip
    try:
        wait_mid_stream(proc, kafka_bootstrap, names, at_least=8, total=len(first), timeout_s=180)
    finally:
        kill_group(proc)
    # The restart: a new process recovers every chain's head from the topic.
    produce(kafka_bootstrap, names.raw, text_records(12, "second"))
    proc = veil_run(
        kafka_bootstrap, topic_prefix, "--veil_read_mode=bounded",
        "--veil_max_records_per_bundle=4", env=_env(env),
    )  # fmt: skip
    code, logs = finish(proc, 300)
    assert code == 0, logs.decode(errors="replace")[-3000:]

    done = _verify_cli(kafka_bootstrap, "--topic", names.audit, "--key", audit_key)
    assert done.returncode == 0, done.stdout + done.stderr
    print(done.stdout.splitlines()[-1])
    assert "OK: 3 chain(s)" in done.stdout
    assert ", 0 unsigned" in done.stdout and "veil.raw" not in done.stderr

    # The same log as `veil consume` writes it, then tampered with in each way.
    dump = subprocess.run(
        [VEIL, "consume", "--bootstrap", kafka_bootstrap, "--topic", names.audit],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout.splitlines()  # fmt: skip
    lines = [json.loads(line) for line in dump]
    assert _verify_file(tmp_path, lines, audit_key)[0] == 0
    for kind, tamper in _TAMPERS.items():
        code, out = _verify_file(tmp_path, tamper(json.loads(json.dumps(lines))), audit_key)
        assert code == 1 and kind in out, (kind, out)
        assert f"{names.audit}/0@" in out  # says where


def _env(extra: dict) -> dict:
    import os

    return {**os.environ, **extra}


def _verify_file(tmp_path, lines, key) -> tuple[int, str]:
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = subprocess.run(
        [VEIL, "audit", "verify", "--file", str(path), "--key", key],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout


def _modify(lines):
    lines[10]["value"]["outcome"] = "OK" if lines[10]["value"]["outcome"] == "FAILED" else "FAILED"
    return lines


def _delete(lines):
    victim = lines[20]["value"]["source"]
    # Delete an event that is not its chain's last (tail truncation needs --expect-head).
    later = [l for l in lines[21:] if l["value"]["source"]["partition"] == victim["partition"]]
    assert later
    return lines[:20] + lines[21:]


def _reorder(lines):
    label = lines[5]["value"]["source"]["partition"]
    same = [i for i, l in enumerate(lines) if l["value"]["source"]["partition"] == label]
    i, j = same[2], same[3]
    lines[i], lines[j] = lines[j], lines[i]
    return lines


def _insert(lines):
    return lines[:15] + [lines[3]] + lines[15:]


def _swap_key(lines):
    lines[7]["value"]["chain"]["mac_key_id"] = "file:attacker/audit"
    return lines


_TAMPERS = {
    "BAD_MAC": _modify,
    "DELETED": _delete,
    "REORDERED": _reorder,
    "INSERTED": _insert,
    "UNKNOWN_MAC_KEY": _swap_key,
}


def test_exactly_once_chain_survives_a_crash_mid_transaction(
    kafka_bootstrap, topic_prefix, audit_key
):
    """Exactly-once mode: a SIGKILL leaves chained events in an open transaction, which is
    aborted; the restart continues every chain after its last committed event."""
    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    env = _env({"VEIL_AUDIT_KEY_FILE": audit_key})
    first = text_records(45, "eo")
    produce(kafka_bootstrap, names.raw, first)
    flags = ("--veil_delivery=exactly_once", "--veil_max_records_per_bundle=3")
    proc = veil_run(
        kafka_bootstrap, topic_prefix, "--veil_read_mode=unbounded", *flags,
        env=env, start_new_session=True,
    )  # fmt: skip
    try:
        wait_mid_stream(proc, kafka_bootstrap, names, at_least=6, total=len(first), timeout_s=180)
    finally:
        kill_group(proc)
    proc = veil_run(kafka_bootstrap, topic_prefix, "--veil_read_mode=bounded", *flags, env=env)
    code, logs = finish(proc, 300)
    assert code == 0, logs.decode(errors="replace")[-3000:]

    config = {"bootstrap_servers": kafka_bootstrap}
    report = verify(read_topic(config, names.audit), [resolve_mac_key(audit_key)])
    assert report.ok, [str(p) for p in report.problems]
    assert report.duplicates == 0  # read_committed: aborted events are not in the log
    print(report.summary())
