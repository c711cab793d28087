"""Erasure through Kafka: `veil keys forget --bootstrap` publishes the key id on
<prefix>.erasure and audits to <prefix>.audit; `veil keys watch-erasures` at another
site applies it, after which nothing of the subject decrypts there either."""

from __future__ import annotations

import json

import pytest
from crypto_testing import MASTER_ENV, fresh_service, local_config

from veil.pipelines.cli import consume, main
from veil.pipelines.topics import topic_specs
from veil.transforms.crypto import DecryptionError
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio.admin import ensure_topics

pytestmark = pytest.mark.integration


def _args(config, audit):
    return [
        "--store", config.store, "--keyring", config.keyring,
        "--master-key-env", MASTER_ENV, "--audit-log", str(audit),
    ]  # fmt: skip


def test_forget_publishes_and_watch_applies(kafka_bootstrap, topic_prefix, tmp_path, capsys):
    ensure_topics({"bootstrap_servers": [kafka_bootstrap]}, topic_specs(TopicNames(topic_prefix)))
    site_a = local_config(tmp_path / "a")
    site_b = local_config(tmp_path / "b")  # another site with its own store
    for config in (site_a, site_b):
        fresh_service(config).encrypt(b"x", fresh_service(config).context("r", "bob", "p"))
    service_b = fresh_service(site_b)
    ctx_b = service_b.context("r1", "bob", "$.name")
    envelope = service_b.encrypt(b"Bob Jones", ctx_b)
    # Site a knows bob's key id only through its own index key; publish the raw request
    # the way an upstream system would: keyed by the subject key.
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[kafka_bootstrap])
    producer.send(f"{topic_prefix}.erasure", key=b"bob", value=b"{}").get(timeout=30)
    producer.close()
    common = [*_args(site_b, tmp_path / "audit-b.jsonl"), "--prefix", topic_prefix]
    assert (
        main(
            [
                "keys",
                "watch-erasures",
                "--bootstrap",
                kafka_bootstrap,
                "--idle-timeout",
                "3",
                *common,
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"requests": 1}
    fresh = fresh_service(site_b)
    with pytest.raises(DecryptionError):
        fresh.decrypt(envelope, ctx_b)
    # forget with --bootstrap: an audit event on the topic, and the key id on erasure.
    common_a = [*_args(site_a, tmp_path / "audit-a.jsonl"), "--prefix", topic_prefix]
    assert main(["keys", "forget", "bob", "--bootstrap", kafka_bootstrap, *common_a]) == 0
    key_id = json.loads(capsys.readouterr().out)["key_id"]
    client = {"bootstrap_servers": [kafka_bootstrap]}
    audits = [v for _, _, v in consume(client, f"{topic_prefix}.audit", idle_timeout_s=5)]
    # One event from site b's watcher, one from site a's forget.
    assert sorted((a["action"], a["key_id"]) for a in audits) == sorted(
        [("KEYS_DESTROYED", ctx_b.subject_key_id), ("KEYS_DESTROYED", key_id)]
    )
    assert all(a["reason_code"] in ("cli", "erasure-topic") for a in audits)
    keys = [r.key for r, _, _ in consume(client, f"{topic_prefix}.erasure", idle_timeout_s=5)]
    assert keys == [b"bob", key_id.encode()]
