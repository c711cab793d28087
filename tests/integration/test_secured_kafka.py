"""Veil on a secured broker: SASL_SSL (TLS 1.3 + SCRAM-SHA-512) with least-privilege ACLs.

The module starts its own broker with ``kafka.sh start-secure`` (ACL authorizer on, deny
by default), applies ``deploy/kafka/acls.sh`` as the admin, creates the topics with
``veil topics create`` as the admin, and then runs every role as its own principal:
upstream producer, pipeline (``veil run``), analyst (``veil consume``). Passwords reach
the clients only through environment variables named by ``--sasl-password-env``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)
from kafka_checks import (
    finish,
    pii_values,
    produce,
    raw_bytes,
    read_outputs,
    text_records,
    veil_run,
)
from veil_testing import opaque

from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio.client import resolve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
ACLS_SH = REPO / "deploy" / "kafka" / "acls.sh"
VEIL = str(Path(sys.executable).with_name("veil"))
REFUSED = KafkaTimeoutError  # kafka-python 3: the bootstrap never completed


class SecuredBroker:
    """The broker's address, CA and users; ``client(user)`` holds no password."""

    def __init__(self, broker_dir: Path, info: dict):
        self.dir = broker_dir
        self.bootstrap = info["bootstrap_servers"]
        self.cafile = info["ssl_cafile"]
        self.passwords = info["users"]

    @staticmethod
    def password_env(user: str) -> str:
        return "VEIL_TEST_PW_" + user.upper().replace("-", "_")

    def client(self, user: str) -> dict:
        return {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": self.cafile,
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_password_env": self.password_env(user),
        }

    def flags(self, user: str, prefix: str = "--veil_") -> list[str]:
        """``veil run`` flags (or, with ``prefix="--"``, the commands' flags) for ``user``."""
        sep = "_" if prefix == "--veil_" else "-"
        return [
            f"{prefix}security{sep}protocol=SASL_SSL",
            f"{prefix}ssl{sep}cafile={self.cafile}",
            f"{prefix}sasl{sep}mechanism=SCRAM-SHA-512",
            f"{prefix}sasl{sep}username={user}",
            f"{prefix}sasl{sep}password{sep}env={self.password_env(user)}",
        ]


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    broker_dir = tmp_path_factory.mktemp("kafka-secure")
    started = subprocess.run(
        ["bash", str(KAFKA_SH), "start-secure", str(broker_dir), "120"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        pytest.fail(f"secured broker did not start:\n{started.stderr[-3000:]}")
    broker = SecuredBroker(broker_dir, json.loads((broker_dir / "client.json").read_text()))
    # Each user's password in its own variable, as a deployment would hand them out.
    passwords = {broker.password_env(u): p for u, p in broker.passwords.items()}
    os.environ.update(passwords)
    try:
        yield broker
    finally:
        for name in passwords:
            os.environ.pop(name, None)
        subprocess.run(["bash", str(KAFKA_SH), "stop", str(broker_dir)], capture_output=True)


def _veil(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([VEIL, *argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def names(secured) -> TopicNames:
    """A topic prefix with its ACLs applied and its topics created, both as the admin."""
    prefix = f"s{uuid.uuid4().hex[:8]}"
    admin = ["--bootstrap", secured.bootstrap, *secured.flags("admin", prefix="--")]
    acls = subprocess.run(
        ["bash", str(ACLS_SH), *admin, "--prefix", prefix,
         "--consumer-group", f"{prefix}-pipeline", "--prune"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert acls.returncode == 0, acls.stderr[-2000:]
    assert f"only veil-pipeline reads {prefix}.raw" in acls.stdout
    topics = _veil("topics", "create", "--prefix", prefix, *admin)
    assert topics.returncode == 0, topics.stderr[-2000:]
    return TopicNames(prefix)


def test_pipeline_runs_end_to_end_as_its_own_principal(secured, names):
    texts = text_records(12, "sec")
    bad = [(None, b"not avro: John Smith, 212-555-0175")]
    # Upstream records come from the producer principal, which may only write raw.
    produce(secured.bootstrap, names.raw, texts + bad, client=secured.client("veil-producer"))

    proc = veil_run(
        secured.bootstrap, names.prefix, "--veil_read_mode=bounded", *secured.flags("veil-pipeline")
    )
    code, logs = finish(proc, 300)
    assert code == 0, logs.decode(errors="replace")[-3000:]

    sanitized, dead, audit = read_outputs(secured.bootstrap, names, secured.client("admin"))
    coords = collections.Counter(
        (v["source"]["partition"], v["source"]["offset"]) for _, v in sanitized + dead
    )
    assert len(coords) == len(texts) + len(bad) and set(coords.values()) == {1}
    assert {v["record_id"] for _, v in sanitized} == {opaque(r["record_id"]) for r in texts}
    assert [v["error_code"] for _, v in dead] == ["BAD_FRAMING"]
    assert {(v["source"]["partition"], v["source"]["offset"]) for _, v in audit} == set(coords)
    blobs = list(raw_bytes(sanitized, dead, audit))
    for value in pii_values():
        assert not any(value.encode() in blob for blob in blobs), "PII leaked downstream"
        assert value.encode() not in logs, "PII leaked into the pipeline's logs"
    for secret in secured.passwords.values():
        assert secret.encode() not in logs, "a password reached the logs"

    # The analyst reads the sanitized records through `veil consume`, as its own user.
    analyst = _veil(
        "consume", "--topic", names.sanitized("text"), "--idle-timeout", "10",
        "--bootstrap", secured.bootstrap, *secured.flags("veil-analyst", prefix="--"),
    )  # fmt: skip
    assert analyst.returncode == 0, analyst.stderr[-2000:]
    seen = [json.loads(line)["value"]["record_id"] for line in analyst.stdout.splitlines()]
    assert sorted(seen) == sorted(opaque(r["record_id"]) for r in texts)


def _fetch(secured, user: str, topic: str) -> int:
    """Fetches ``topic``'s partition 0 from the beginning as ``user``; returns the count.

    Describe rights (which WRITE implies) are not enough: the fetch itself is checked."""
    settings = {"bootstrap_servers": secured.bootstrap, **secured.client(user)}
    consumer = KafkaConsumer(enable_auto_commit=False, **resolve(settings))
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        count = 0
        for _ in range(10):
            count += sum(len(v) for v in consumer.poll(timeout_ms=500).values())
            if consumer.position(tp) >= end:
                break
        return count
    finally:
        consumer.close()


@pytest.mark.parametrize(
    "user, topic_of, allowed",
    [
        ("veil-analyst", lambda n: n.sanitized("text"), True),
        ("veil-analyst", lambda n: n.raw, False),
        ("veil-analyst", lambda n: n.dead_letter, False),
        ("veil-analyst", lambda n: n.audit, False),
        ("veil-analyst", lambda n: n.quarantine("text"), False),
        ("veil-producer", lambda n: n.raw, False),
        ("veil-auditor", lambda n: n.audit, True),
        ("veil-auditor", lambda n: n.raw, False),
        ("veil-pipeline", lambda n: n.raw, True),
        ("veil-pipeline", lambda n: n.sanitized("text"), False),
    ],
    ids=[
        "analyst-sanitized", "analyst-raw", "analyst-dead-letter", "analyst-audit",
        "analyst-quarantine", "producer-raw", "auditor-audit", "auditor-raw",
        "pipeline-raw", "pipeline-sanitized",
    ],
)  # fmt: skip
def test_who_may_read_what(secured, names, user, topic_of, allowed):
    topic = topic_of(names)
    if allowed:
        assert _fetch(secured, user, topic) >= 0
    else:
        with pytest.raises(TopicAuthorizationFailedError):
            _fetch(secured, user, topic)


def test_analyst_consume_of_raw_is_refused_by_the_cli(secured, names):
    refused = _veil(
        "consume", "--topic", names.raw, "--idle-timeout", "1",
        "--bootstrap", secured.bootstrap, *secured.flags("veil-analyst", prefix="--"),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "not authorized" in refused.stderr and refused.stdout == ""


def _send(secured, user: str, topic: str, **settings):
    producer = KafkaProducer(
        **resolve({"bootstrap_servers": secured.bootstrap, **secured.client(user)}), **settings
    )
    try:
        return producer.send(topic, key=b"k", value=b"v").get(timeout=30)
    finally:
        producer.close(timeout=5)


@pytest.mark.parametrize(
    "user, topic_of, allowed",
    [
        ("veil-pipeline", lambda n: n.raw, False),
        ("veil-pipeline", lambda n: n.erasure, False),
        ("veil-pipeline", lambda n: n.dead_letter, True),
        ("veil-analyst", lambda n: n.sanitized("text"), False),
        ("veil-producer", lambda n: n.sanitized("text"), False),
        ("veil-producer", lambda n: n.raw, True),
    ],
    ids=[
        "pipeline-raw", "pipeline-erasure", "pipeline-dead-letter", "analyst-sanitized",
        "producer-sanitized", "producer-raw",
    ],
)  # fmt: skip
def test_who_may_write_what(secured, names, user, topic_of, allowed):
    """Idempotent producers, as Veil's: no cluster-wide IdempotentWrite grant needed."""
    topic = topic_of(names)
    if allowed:
        assert _send(secured, user, topic, acks="all", enable_idempotence=True).topic == topic
    else:
        # Topic..., or Cluster... for a user with no WRITE anywhere (InitProducerId).
        with pytest.raises(KafkaError, match="(Topic|Cluster)AuthorizationFailed"):
            _send(secured, user, topic, acks="all", enable_idempotence=True)


def _transactional(secured, transactional_id: str) -> KafkaProducer:
    settings = {"bootstrap_servers": secured.bootstrap, **secured.client("veil-pipeline")}
    return KafkaProducer(transactional_id=transactional_id, **resolve(settings))


def test_transactional_ids_only_under_the_pipeline_group(secured, names):
    """Exactly-once mode's transactional ids are ``<group>-<topic>-<partition>``."""
    producer = _transactional(secured, f"{names.prefix}-pipeline-{names.raw}-0")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(names.dead_letter, key=b"k", value=b"v")
        producer.commit_transaction()
    finally:
        producer.close(timeout=5)
    other = _transactional(secured, f"someone-else-{names.raw}-0")
    try:
        with pytest.raises(TransactionalIdAuthorizationFailedError):
            other.init_transactions()
    finally:
        other.close(timeout=5)


def test_the_pipeline_cannot_create_topics(secured, names):
    admin = KafkaAdminClient(
        **resolve({"bootstrap_servers": secured.bootstrap, **secured.client("veil-pipeline")})
    )
    try:
        with pytest.raises(KafkaError, match="AuthorizationFailed"):
            admin.create_topics(
                {f"{names.prefix}.sanitized.new": {"num_partitions": 1, "replication_factor": 1}}
            )
    finally:
        admin.close()


def _bootstrap_fails(settings: dict) -> None:
    with pytest.raises(REFUSED):
        KafkaConsumer(bootstrap_timeout_ms=3000, **settings)


def test_unauthenticated_and_untrusting_clients_are_refused(secured, caplog):
    base = {"bootstrap_servers": secured.bootstrap}
    _bootstrap_fails(base)  # plaintext on the SASL_SSL port
    _bootstrap_fails({**base, "security_protocol": "SSL", "ssl_cafile": secured.cafile})  # no SASL
    no_ca = {k: v for k, v in secured.client("veil-analyst").items() if k != "ssl_cafile"}
    with caplog.at_level(logging.WARNING, logger="kafka"):
        _bootstrap_fails(resolve({**base, **no_ca}))  # does not trust the broker's CA
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def _scram_failures(secured) -> int:
    """The broker's count of refused SCRAM logins (its log names no user or password)."""
    log = (secured.dir / "server.log").read_text(errors="replace")
    return log.count("invalid credentials with SASL mechanism SCRAM-SHA-512")


def test_a_wrong_password_is_refused(secured, monkeypatch):
    settings = {"bootstrap_servers": secured.bootstrap, **secured.client("veil-analyst")}
    KafkaConsumer(**resolve(settings)).close()  # the right one gets in
    before = _scram_failures(secured)
    monkeypatch.setenv(secured.password_env("veil-analyst"), "not-the-password")
    _bootstrap_fails(resolve(settings))
    assert _scram_failures(secured) > before
