"""veil.schemas.registry without a registry: offline defaults, fail-fast start-up, and
decoding with registry ids when the registry is gone (a closed loopback port: real
client, real connection refused). With a real registry: tests/integration/
test_schema_registry.py."""

from __future__ import annotations

import socket
import struct
import time

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record, message, opaque

from veil.schemas import MEDIA_RECORD, SANITIZED_RECORD, FramingError, catalog
from veil.schemas.registry import (
    RegistryBinding,
    RegistryCatalog,
    RegistryError,
    codec,
    default_url,
    register,
    resolve_url,
)
from veil.transforms.codec import DecodeRecords

MEDIA_ID = 1001  # an id "the registry" gave Veil's MediaRecord


@pytest.fixture(scope="module")
def closed_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/apis/ccompat/v7"


def test_offline_is_the_default_only_without_a_configured_registry(monkeypatch):
    monkeypatch.delenv("VEIL_SCHEMA_REGISTRY_URL", raising=False)
    assert default_url() == "none" and resolve_url(default_url()) is None
    monkeypatch.setenv("VEIL_SCHEMA_REGISTRY_URL", "http://reg:8080/apis/ccompat/v7")
    assert resolve_url(default_url()) == "http://reg:8080/apis/ccompat/v7"
    assert resolve_url("NONE") is None
    assert codec(None) is catalog()
    with pytest.raises(RegistryError, match="http://"):
        resolve_url("reg:8080")
    with pytest.raises(RegistryError, match="credentials") as info:
        resolve_url("https://veil:s3cret@reg:8080/apis/ccompat/v7")
    assert "s3cret" not in str(info.value)


def test_an_unreachable_registry_fails_fast_with_the_fix(closed_url):
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        register(closed_url, [("veil.raw", MEDIA_RECORD)])
    assert time.monotonic() - started < 15
    assert "unreachable" in str(info.value)
    assert "--veil_schema_registry none" in str(info.value)


def test_registry_ids_frame_output_and_catalog_ids_are_not_trusted(closed_url):
    cat = RegistryCatalog(RegistryBinding(closed_url, ((MEDIA_RECORD, MEDIA_ID),)))
    framed = cat.encode(MEDIA_RECORD, media_record("r1"))
    assert struct.unpack(">bI", framed[:5]) == (0, MEDIA_ID)
    assert cat.decode(framed, expect=MEDIA_RECORD)[1]["record_id"] == "r1"  # no network
    with pytest.raises(FramingError) as info:  # a type the registry gave no id here
        cat.encode(SANITIZED_RECORD, {})
    assert info.value.code == "UNKNOWN_SCHEMA_ID"
    local = catalog().encode(MEDIA_RECORD, media_record("r2"))  # local id 1: ask the registry
    with pytest.raises(FramingError) as info:
        cat.decode(local)
    assert info.value.code == "SCHEMA_REGISTRY_UNAVAILABLE"


def test_decode_fn_dead_letters_ids_it_cannot_resolve(closed_url):
    binding = RegistryBinding(closed_url, ((MEDIA_RECORD, MEDIA_ID),))
    good = codec(binding).encode(MEDIA_RECORD, media_record("ok", "alice"))
    unresolved = struct.pack(">bI", 0, 77) + good[5:]
    pipeline = beam_pipeline()
    decoded = (
        pipeline
        | beam.Create([message(good, 0, b"alice"), message(unresolved, 1, b"alice")])
        | DecodeRecords(max_payload_bytes=64, max_message_bytes=1024, schemas=binding)
    )
    with pipeline:
        assert_that(decoded.records | beam.Map(lambda i: i.record_id), equal_to([opaque("ok")]))
        assert_that(
            decoded.dead_letters | beam.Map(lambda f: (f.source.offset, f.error_code)),
            equal_to([(1, "SCHEMA_REGISTRY_UNAVAILABLE")]),
            label="DeadLetters",
        )


def test_the_pipeline_flag_is_validated_before_the_graph(monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions

    from veil.pipelines.options import ConfigError, VeilConfig

    monkeypatch.delenv("VEIL_SCHEMA_REGISTRY_URL", raising=False)
    assert VeilConfig.from_options(PipelineOptions([])).schema_registry is None
    url = "http://127.0.0.1:8081/apis/ccompat/v7"
    monkeypatch.setenv("VEIL_SCHEMA_REGISTRY_URL", url)
    assert VeilConfig.from_options(PipelineOptions([])).schema_registry == url
    none = PipelineOptions(["--veil_schema_registry=none"])
    assert VeilConfig.from_options(none).schema_registry is None
    with pytest.raises(ConfigError, match="--veil_schema_registry"):
        VeilConfig.from_options(PipelineOptions(["--veil_schema_registry=registry:8081"]))


def test_emitters_frame_sanitized_audit_and_dead_letters_with_registry_ids(closed_url):
    from veil.transforms.emit import PublishDeadLetters, PublishSanitized, TopicNames
    from veil.transforms.records import Classification, Failure, Source, WorkItem

    ids = (("AuditEvent", 3003), ("DeadLetter", 3004), ("MediaRecord", 3001),
           ("SanitizedRecord", 3002))  # fmt: skip
    binding = RegistryBinding(closed_url, ids)
    topics = TopicNames("reg")
    item = WorkItem(source=Source("reg.raw", 0, 5), record=media_record("ok"), modality="text")
    item.sanitized_payload = b"Hi <PERSON>"
    item.classification = Classification("CONFIDENTIAL", ["GDPR"], {"PERSON": 1})
    failure = Failure(source=Source("reg.raw", 0, 6), stage="decode", error_code="BAD_FRAMING")
    header = lambda w: (w.topic, struct.unpack(">bI", w.value[:5])[1])  # noqa: E731
    pipeline = beam_pipeline()
    sanitized = (
        pipeline
        | "Items" >> beam.Create([item])
        | PublishSanitized(topics, "p1", schemas=binding)
        | "SanitizedIds" >> beam.Map(header)
    )
    dead = (
        pipeline
        | "Failures" >> beam.Create([failure])
        | PublishDeadLetters(topics, "p1", schemas=binding)
        | "DeadIds" >> beam.Map(header)
    )
    with pipeline:
        assert_that(
            sanitized,
            equal_to([("reg.sanitized.text", 3002), ("reg.audit", 3003)]),
            label="Sanitized",
        )
        assert_that(dead, equal_to([("reg.dead-letter", 3004), ("reg.audit", 3003)]), label="Dead")
