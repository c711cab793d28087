"""Veil with a real schema registry (Apicurio Registry, Confluent-compatible API).

One pipeline run (``veil run --veil_schema_registry URL``, bounded) over records that
upstream producers framed with the registry client's standard Avro serializer: Veil's
own MediaRecord schema, a newer version that adds an optional field (schema evolution),
and an id the registry never handed out. The checks then read Veil's output with the
registry client's standard Avro deserializer and librdkafka (no Veil code on the read
path). The registry already holds other teams' schemas, so registry ids and the local
catalog's ids differ: output framed with catalog ids would not decode.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka_checks import PEOPLE, VEIL, finish, pii_values, text_records, veil_run
from registry_server import running_registry
from veil_testing import opaque

from veil.pipelines.topics import topic_specs
from veil.schemas import catalog
from veil.schemas.registry import schema_text
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics

pytestmark = pytest.mark.integration

V1 = json.loads(schema_text("MediaRecord"))
# What an upstream producer registers next: v1 plus an optional field (BACKWARD).
V2 = {**V1, "fields": V1["fields"] + [
    {"name": "trace_id", "type": ["null", "string"], "default": None}
]}  # fmt: skip
UNKNOWN_ID = 987654


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory):
    with running_registry(tmp_path_factory.mktemp("registry")) as url:
        # Other teams' schemas first: Veil must use the ids the registry hands out.
        client = SchemaRegistryClient({"url": url})
        for i in range(5):
            other = {
                "type": "record",
                "name": f"Other{i}",
                "fields": [{"name": "x", "type": "int"}],
            }
            client.register_schema(f"other-team-{i}-value", Schema(json.dumps(other), "AVRO"))
        yield url


def _upstream_produce(bootstrap, registry, topic, schema, records):
    """An upstream producer: librdkafka + the registry client's AvroSerializer."""
    serializer = AvroSerializer(registry, json.dumps(schema))
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    ctx = SerializationContext(topic, MessageField.VALUE)
    for record in records:
        producer.produce(topic, key=record["subject_key"].encode(), value=serializer(record, ctx))
    assert producer.flush(30) == 0


def _plain_consume(bootstrap, registry, topic, idle_s=10.0):
    """A consumer that is not Veil: librdkafka + AvroDeserializer. ``[(value, id, msg)]``."""
    deserializer = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"not-veil-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    out, last = [], time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            last = time.monotonic()
            value = deserializer(msg.value(), SerializationContext(topic, MessageField.VALUE))
            out.append((value, struct.unpack(">bI", msg.value()[:5])[1], msg))
    finally:
        consumer.close()
    return out


@pytest.fixture(scope="module")
def run(kafka_bootstrap, registry_url):
    """Topics + schemas (veil topics create), upstream records, one bounded pipeline run."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    names = TopicNames(prefix)
    created = subprocess.run(
        [VEIL, "topics", "create", "--prefix", prefix, "--partitions", "2",
         "--bootstrap", kafka_bootstrap, "--schema-registry", registry_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    registry = SchemaRegistryClient({"url": registry_url})
    v1_records = text_records(6, prefix="v1")
    v2_records = [dict(r, record_id=f"v2-{i}", trace_id=f"trace-{i}")
                  for i, r in enumerate(text_records(4, prefix="v2"))]  # fmt: skip
    _upstream_produce(kafka_bootstrap, registry, names.raw, V1, v1_records)
    _upstream_produce(kafka_bootstrap, registry, names.raw, V2, v2_records)
    # A value framed with an id nobody registered.
    body = Producer({"bootstrap.servers": kafka_bootstrap})
    body.produce(names.raw, key=b"s", value=struct.pack(">bI", 0, UNKNOWN_ID) + b"\x02x")
    assert body.flush(30) == 0

    proc = veil_run(
        kafka_bootstrap, prefix, "--veil_read_mode=bounded",
        f"--veil_schema_registry={registry_url}",
    )  # fmt: skip
    code, logs = finish(proc, 400)
    assert code == 0, logs.decode(errors="replace")[-3000:]
    return {
        "names": names,
        "registry": registry,
        "logs": logs,
        "good": len(v1_records) + len(v2_records),
        "sanitized": _plain_consume(kafka_bootstrap, registry, names.sanitized("text")),
        "audit": _plain_consume(kafka_bootstrap, registry, names.audit),
        "dead": _plain_consume(kafka_bootstrap, registry, names.dead_letter),
    }


def test_veil_registers_its_subjects_backward(run):
    registry, names = run["registry"], run["names"]
    subjects = set(registry.get_subjects())
    for topic in (names.raw, names.audit, names.dead_letter, names.sanitized("text"),
                  names.quarantine("image")):  # fmt: skip
        assert f"{topic}-value" in subjects
        assert registry.get_compatibility(f"{topic}-value") == "BACKWARD"


def test_output_carries_registry_ids_not_catalog_ids(run):
    registry, names = run["registry"], run["names"]
    expected = registry.lookup_schema(
        f"{names.sanitized('text')}-value", Schema(schema_text("SanitizedRecord"), "AVRO")
    ).schema_id
    assert expected != catalog().latest("SanitizedRecord").schema_id  # ids were shifted
    assert {schema_id for _, schema_id, _ in run["sanitized"]} == {expected}
    audit_id = registry.lookup_schema(
        f"{names.audit}-value", Schema(schema_text("AuditEvent"), "AVRO")
    ).schema_id
    assert {schema_id for _, schema_id, _ in run["audit"]} == {audit_id}


def test_a_consumer_that_is_not_veil_reads_sanitized_and_audit(run):
    sanitized = [value for value, _, _ in run["sanitized"]]
    assert len(sanitized) == run["good"]
    assert {v["modality"] for v in sanitized} == {"text"}
    text = b"\n".join(v["payload"] for v in sanitized)
    for pii in pii_values():
        assert pii.encode() not in text
    assert all(v["classification"]["sensitivity"] for v in sanitized)
    events = [value for value, _, _ in run["audit"]]
    published = {e["record_id"] for e in events if e["action"] == "PUBLISHED"}
    assert published == {v["record_id"] for v in sanitized}
    assert all(e["chain"] is not None for e in events)  # chained by the sink, still decodes


def test_an_upstream_schema_version_with_a_new_optional_field_decodes(run):
    ids = {v["record_id"] for v, _, _ in run["sanitized"]}
    v2 = {opaque(f"v2-{i}") for i in range(4)}  # ids leave Veil opaque (issue 18)
    assert v2 <= ids
    assert ids - v2 and len(ids) == run["good"]  # the first version's records too


def test_an_id_the_registry_never_issued_is_dead_lettered(run):
    dead = [value for value, _, _ in run["dead"]]
    assert [d["error_code"] for d in dead] == ["UNKNOWN_SCHEMA_ID"]
    assert dead[0]["stage"] == "decode"


def test_names_in_the_logs_stay_out(run):
    for name, *_ in PEOPLE:
        assert name.encode() not in run["logs"]


def test_an_unreachable_registry_fails_fast_naming_the_fix(kafka_bootstrap):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    proc = veil_run(
        kafka_bootstrap, f"t{uuid.uuid4().hex[:10]}", "--veil_read_mode=bounded",
        f"--veil_schema_registry=http://127.0.0.1:{port}/apis/ccompat/v7",
    )  # fmt: skip
    code, logs = finish(proc, 120)
    text = logs.decode(errors="replace")
    assert code == 2, text[-2000:]
    assert time.monotonic() - started < 60
    assert "unreachable" in text and "--veil_schema_registry none" in text


def test_veil_consume_and_audit_verify_resolve_registry_ids(run, kafka_bootstrap, registry_url):
    names = run["names"]
    common = ["--bootstrap", kafka_bootstrap, "--schema-registry", registry_url]
    consumed = subprocess.run(
        [VEIL, "consume", "--topic", names.sanitized("text"), "--idle-timeout", "10", *common],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    rows = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert len(rows) == run["good"] and {r["schema"] for r in rows} == {"SanitizedRecord"}
    verified = subprocess.run(
        [VEIL, "audit", "verify", "--topic", names.audit, *common],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    # Offline (local catalog ids) the same topic does not decode: the ids differ.
    offline = subprocess.run(
        [VEIL, "consume", "--topic", names.sanitized("text"), "--idle-timeout", "10",
         "--bootstrap", kafka_bootstrap, "--schema-registry", "none"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert all(json.loads(line)["schema"] is None for line in offline.stdout.splitlines())


def test_kafka_connect_sinks_a_sanitized_topic_to_a_file(run, kafka_bootstrap, registry_url,
                                                         tmp_path):  # fmt: skip
    """A Kafka Connect worker (Maven Central) with Apicurio's AvroConverter, reading
    Confluent framing, sinks sanitized.text to a file with the file sink connector."""
    import os
    import signal

    from registry_server import REGISTRY_SH

    libs = subprocess.run(["bash", str(REGISTRY_SH), "connect-libs"], capture_output=True,
                          text=True, check=True).stdout.strip().splitlines()[-1]  # fmt: skip
    native_api = registry_url.replace("/apis/ccompat/v7", "/apis/registry/v2")
    out = tmp_path / "sanitized-text.txt"
    (tmp_path / "worker.properties").write_text("\n".join([
        f"bootstrap.servers={kafka_bootstrap}",
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=io.apicurio.registry.utils.converter.AvroConverter",
        f"value.converter.apicurio.registry.url={native_api}",
        "value.converter.apicurio.registry.as-confluent=true",  # 4-byte ids in the value
        "value.converter.apicurio.registry.use-id=contentId",  # = the ccompat ids
        "value.converter.apicurio.registry.headers.enabled=false",
        f"offset.storage.file.filename={tmp_path / 'offsets'}",
        "offset.flush.interval.ms=1000",
        "listeners=http://127.0.0.1:0",
    ]) + "\n")  # fmt: skip
    (tmp_path / "sink.properties").write_text("\n".join([
        "name=veil-sanitized-text-file",
        "connector.class=org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max=1",
        f"topics={run['names'].sanitized('text')}",
        f"file={out}",
    ]) + "\n")  # fmt: skip
    log = open(tmp_path / "connect.log", "wb")
    worker = subprocess.Popen(
        ["java", "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", f"{libs}/*",
         "org.apache.kafka.connect.cli.ConnectStandalone",
         str(tmp_path / "worker.properties"), str(tmp_path / "sink.properties")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        lines = []
        while time.monotonic() < deadline and worker.poll() is None:
            lines = out.read_text().splitlines() if out.is_file() else []
            if len(lines) >= run["good"]:
                break
            time.sleep(2)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()
    assert len(lines) == run["good"], (tmp_path / "connect.log").read_text()[-3000:]
    expected = {v["record_id"] for v, _, _ in run["sanitized"]}
    assert {line.split("record_id=", 1)[1].split(",", 1)[0] for line in lines} == expected
    assert all("modality=text" in line for line in lines)


def test_veil_produce_frames_files_with_the_registry_id(kafka_bootstrap, registry_url, tmp_path):
    names = TopicNames(f"t{uuid.uuid4().hex[:10]}")
    topic = names.raw
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names, 1)[:1])
    (tmp_path / "note.txt").write_text("hello")
    produced = subprocess.run(
        [VEIL, "produce", str(tmp_path / "note.txt"), "--topic", topic, "--subject", "s1",
         "--bootstrap", kafka_bootstrap, "--schema-registry", registry_url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert produced.returncode == 0, produced.stderr
    registry = SchemaRegistryClient({"url": registry_url})
    media_id = registry.lookup_schema(
        f"{topic}-value", Schema(schema_text("MediaRecord"), "AVRO")
    ).schema_id
    ((value, schema_id, msg),) = _plain_consume(kafka_bootstrap, registry, topic)
    assert schema_id == media_id != catalog().latest("MediaRecord").schema_id
    assert value["subject_key"] == "s1" and value["payload"] == b"hello"
