"""The Kafka data-key store on the real broker: one winner across processes, compaction,
erasure markers, usage counters, KEK rotation, and the workers' erasure deadline."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import time

import pytest
from crypto_testing import MASTER_ENV, fresh_service, local_config

from veil.transforms.crypto import DecryptionError, SubjectErased
from veil.transforms.crypto.kafka_store import (
    CANDIDATE,
    KafkaStoreUrl,
    partition_for,
    record_key,
)
from veil.transforms.crypto.kms import KmsError
from veil.transforms.keys import SubjectKeyErased

pytestmark = pytest.mark.integration


@pytest.fixture()
def kafka_config(kafka_bootstrap, topic_prefix, tmp_path):
    return local_config(tmp_path, store=f"kafka://{kafka_bootstrap}/{topic_prefix}.keys")


def _topic(config) -> str:
    return KafkaStoreUrl.parse(config.store).topic


def _read_topic(bootstrap: str, topic: str) -> list:
    """Every record still on the topic: (partition, offset, key, value)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "could not read the key topic"
            for records in consumer.poll(timeout_ms=200).values():
                out += [(r.partition, r.offset, r.key, r.value) for r in records]
        return out
    finally:
        consumer.close()


def test_url_forms():
    full = KafkaStoreUrl.parse("kafka://h1:9092,h2:9092/veil.keys?partitions=6")
    assert (full.bootstrap, full.topic, dict(full.settings)) == (
        ("h1:9092", "h2:9092"),
        "veil.keys",
        {"partitions": 6},
    )
    short = KafkaStoreUrl.parse("kafka://veil.keys", "b:1")
    assert (short.bootstrap, short.topic) == (("b:1",), "veil.keys")
    for bad in ("kafka://veil.keys", "sqlite:///x", "kafka://h:1/t?colour=red", "kafka://h:1/a/b"):
        with pytest.raises(KmsError):
            KafkaStoreUrl.parse(bad)


def test_options_select_the_kafka_store():
    from apache_beam.options.pipeline_options import PipelineOptions

    from veil.pipelines.options import ConfigError, VeilConfig

    flags = ["--veil_bootstrap_servers=127.0.0.1:9", "--veil_keyring=/r.json"]
    config = VeilConfig.from_options(
        PipelineOptions([*flags, "--veil_key_store=kafka://veil.keys"])
    ).key_service
    assert (config.store, config.bootstrap, config.erasure_topic) == (
        "kafka://veil.keys",
        "127.0.0.1:9",
        "veil.erasure",
    )
    with pytest.raises(ConfigError):
        VeilConfig.from_options(PipelineOptions([*flags, "--veil_key_store=kafka://h:1/a/b"]))


def test_round_trip_rotation_and_retire(kafka_config):
    service = fresh_service(kafka_config)
    ctx = service.context("r", "subject", "p")
    env1 = service.encrypt(b"v1", ctx)
    assert service.rotate(ctx.subject_key_id).version == 2
    env2 = service.encrypt(b"v2", ctx)
    assert [service.envelope_key(e)[1] for e in (env1, env2)] == [1, 2]
    service.retire(ctx.subject_key_id, 1)
    other = fresh_service(kafka_config)  # a new process: everything from the topic
    with pytest.raises(DecryptionError):
        other.decrypt(env1, ctx)
    assert other.decrypt(env2, ctx) == b"v2"


def test_usage_counters_rotate_across_writers(kafka_config):
    config = dataclasses.replace(kafka_config, max_uses=40, lease=8)
    a, b = fresh_service(config), fresh_service(config)
    ctx = a.context("r", "busy", "p")
    versions = [s.envelope_key(s.encrypt(b"x", ctx))[1] for _ in range(30) for s in (a, b)]
    counts = {v: versions.count(v) for v in set(versions)}
    assert max(counts.values()) <= 40 and max(versions) >= 2
    rows = {k["version"]: k["uses"] for k in fresh_service(config).list_keys() if k.get("uses")}
    # Leased (not necessarily used): at most one refused lease per writer over the budget.
    assert all(uses <= 40 + 2 * 8 for uses in rows.values())


def test_kek_rotation_rewraps_in_the_topic(kafka_config):
    service = fresh_service(kafka_config)
    ctx = service.context("r", "s1", "p")
    env = service.encrypt(b"before", ctx)
    result = service.rotate_kek(retire_old=True)
    assert result["kek_version"] == 2 and result["retired"] == [1]
    after = fresh_service(kafka_config)
    assert {k["kek"] for k in after.list_keys() if "kek" in k} == {"local/2"}
    assert after.decrypt(env, ctx) == b"before"


def _first_use(config, subject, barrier, out):
    """One worker process: open the store, wait for the others, first use at once."""
    service = fresh_service(config)
    barrier.wait(timeout=60)
    ctx = service.context("r", subject, "p")
    env = service.encrypt(b"hello", ctx)
    pseudo = service.secret_keys().key_for_subject("pseudonym", subject).hex()
    out.put((service.envelope_key(env), env, pseudo))


def _race(config, subject: str, processes: int) -> list:
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_first_use, args=(config, subject, barrier, out))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    return results


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_concurrent_first_use_at_the_same_moment(backend, kafka_config, tmp_path):
    config = kafka_config if backend == "kafka" else local_config(tmp_path)
    if backend == "kafka":  # the topic exists before the race (as in a deployment)
        fresh_service(config)._store.close()
    results = _race(config, "brand-new-subject", 6)
    assert len({key for key, _, _ in results}) == 1
    assert {key for key, _, _ in results}.pop()[1] == 1
    assert len({pseudo for _, _, pseudo in results}) == 1  # one pseudonym key too
    service = fresh_service(config)
    ctx = service.context("r", "brand-new-subject", "p")
    assert all(service.decrypt(env, ctx) == b"hello" for _, env, _ in results)
    rows = [k for k in service.list_keys() if k["key_id"] == ctx.subject_key_id]
    assert len(rows) == 1
    if backend == "kafka":  # losers tombstoned their candidates: one value per version
        topic = _topic(config)
        bootstrap = config.store.split("/")[2]
        live = {}
        for _, _, key, value in _read_topic(bootstrap, topic):
            live[key] = value
        winners = [k for k, v in live.items() if v is not None and json.loads(k)[0] == CANDIDATE]
        ids = sorted(json.loads(k)[1] for k in winners)
        assert len(ids) == len(set(ids)) == 3  # veil:index, s:..., p:...


def _set_cleaner_backoff(bootstrap: str, value_ms: int) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        node = admin.describe_cluster()["brokers"][0]["broker_id"]
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.BROKER,
                    str(node),
                    configs={"log.cleaner.backoff.ms": str(value_ms)},
                )
            ],
            incremental=True,
        )
    finally:
        admin.close()


def test_first_wins_and_erasure_survive_compaction(kafka_bootstrap, topic_prefix, tmp_path):
    """Compaction actually runs (small segments, a fast cleaner): the winner, its state
    and usage survive; an erased subject's wrapped keys leave the topic; its marker stays."""
    topic = f"{topic_prefix}.keys"
    store = (
        f"kafka://{kafka_bootstrap}/{topic}?partitions=1&segment_ms=200"
        "&max_compaction_lag_ms=500&delete_retention_ms=100&min_cleanable_dirty_ratio=0.001"
    )
    config = local_config(tmp_path, store=store)
    a, b = fresh_service(config), fresh_service(config)
    kept = a.context("r", "kept", "p")
    erased = a.context("r", "erased", "p")
    env_kept = a.encrypt(b"kept", kept)
    env_erased = a.encrypt(b"gone", erased)
    # A loser that crashed before tombstoning its candidate: a second candidate for the
    # same (key id, version), written after the winner, never deleted.
    winner = a._store.get(kept.subject_key_id, 1)
    loser = b._new_row(kept.subject_key_id, 1)
    b._store._send(
        record_key(CANDIDATE, kept.subject_key_id, 1, "crashed-loser"),
        kept.subject_key_id,
        {"kek": loser.kek_id, "kv": loser.kek_version, "w": _b64(loser.wrapped), "c": 1},
    )
    a.retire(kept.subject_key_id, 1)  # a state record; the next use creates version 2
    env_kept2 = a.encrypt(b"kept2", kept)
    for _ in range(5):  # overwritten usage records: compaction keeps the last per writer
        a._store.reserve(kept.subject_key_id, 2, 8)
    uses_before = a._store.get(kept.subject_key_id, 2).uses
    erased_wrapped = a._store.get(erased.subject_key_id, 1).wrapped
    a.forget("erased")
    before = _read_topic(kafka_bootstrap, topic)
    assert any(v and _b64(erased_wrapped).encode() in v for _, _, _, v in before)
    _set_cleaner_backoff(kafka_bootstrap, 300)
    try:
        deadline = time.monotonic() + 90
        while True:
            time.sleep(0.5)  # roll the segment: the active one is never cleaned
            a._store._send(record_key("x", "roll", 0, str(time.time())), "roll", {})
            records = _read_topic(kafka_bootstrap, topic)
            values = [v for _, _, _, v in records if v]
            uses_keys = [k for _, _, k, _ in records if json.loads(k)[0] == "u"]
            if not any(_b64(erased_wrapped).encode() in v for v in values) and len(uses_keys) < 5:
                break
            assert time.monotonic() < deadline, "the log cleaner never compacted the topic"
    finally:
        _set_cleaner_backoff(kafka_bootstrap, 15000)
    offsets = [o for _, o, _, _ in records]
    assert len(offsets) < len(before) and offsets == sorted(offsets)  # compacted, same offsets
    assert any(json.loads(k)[3] == "crashed-loser" for _, _, k, v in records if v)
    fresh = fresh_service(config)  # reads the compacted topic from the beginning
    got = fresh._store.get(kept.subject_key_id, 1)
    assert (got.wrapped, got.state) == (winner.wrapped, "retired")
    assert fresh._store.get(kept.subject_key_id, 2).uses == uses_before
    assert fresh.decrypt(env_kept2, kept) == b"kept2"
    with pytest.raises(DecryptionError):
        fresh.decrypt(env_kept, kept)  # version 1 stays retired
    assert fresh._store.is_erased(erased.subject_key_id)
    with pytest.raises(DecryptionError):
        fresh.decrypt(env_erased, erased)
    with pytest.raises(SubjectErased):
        fresh.encrypt(b"new", erased)


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode()


def test_a_candidate_after_the_marker_never_wins(kafka_config):
    """A worker with a stale index proposes a key for a subject just forgotten: refused,
    and its candidate is tombstoned at once."""
    worker = fresh_service(kafka_config)
    ctx = worker.context("r", "late", "p")
    worker.forget("late")
    with pytest.raises(SubjectErased):  # an up-to-date worker does not even propose
        worker._store.insert_if_absent(worker._new_row(ctx.subject_key_id, 1))
    # A worker whose index had not reached the marker yet proposes after it:
    row = worker._new_row(ctx.subject_key_id, 1)
    worker._store._send(
        record_key(CANDIDATE, ctx.subject_key_id, 1, "stale-worker"),
        ctx.subject_key_id,
        {"kek": row.kek_id, "kv": row.kek_version, "w": _b64(row.wrapped), "c": 1},
    )
    fresh = fresh_service(kafka_config)  # replays the whole topic
    assert fresh._store.get(ctx.subject_key_id, 1) is None
    with pytest.raises(SubjectErased):
        fresh.encrypt(b"new", ctx)
    records = _read_topic(kafka_config.store.split("/")[2], _topic(kafka_config))
    assert {p for p, _, k, _ in records if json.loads(k)[1] == ctx.subject_key_id} == {
        partition_for(ctx.subject_key_id, 3)
    }  # every record of one key id in one partition


def test_kafka_store_evicts_workers_within_seconds(kafka_config):
    config = dataclasses.replace(kafka_config, cache_ttl_s=60.0)
    worker, admin = fresh_service(config), fresh_service(config)
    ctx = worker.context("r", "dana", "$.name")
    env = worker.encrypt(b"Dana", ctx)
    assert worker.decrypt(env, ctx) == b"Dana"  # warm cache, 60 s TTL
    start = time.monotonic()
    admin.forget("dana")
    # Typically ~0.1 s (the index thread's poll); the bound leaves room for a loaded CI box.
    _assert_refused_within(worker, env, ctx, start, 5.0)
    with pytest.raises(SubjectKeyErased):
        worker.secret_keys().key_for_subject("pseudonym", "dana")


def _assert_refused_within(service, env, ctx, start: float, deadline_s: float) -> float:
    while True:
        try:
            service.decrypt(env, ctx)
        except DecryptionError:
            elapsed = time.monotonic() - start
            assert elapsed < deadline_s
            return elapsed
        assert time.monotonic() - start < deadline_s, "the worker still decrypts"
        time.sleep(0.01)


def _erasure_worker(tmp_path, bootstrap, prefix):
    from veil.pipelines.topics import topic_specs
    from veil.transforms.crypto.erasure import wait_ready
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio.admin import ensure_topics

    ensure_topics({"bootstrap_servers": [bootstrap]}, topic_specs(TopicNames(prefix)))
    config = local_config(
        tmp_path, cache_ttl_s=60.0, bootstrap=bootstrap, erasure_topic=f"{prefix}.erasure"
    )
    worker = config.open()  # the per-process service: starts the erasure listener
    assert wait_ready(worker)
    return config, worker


def test_sqlite_worker_evicts_on_the_erasure_topic(kafka_bootstrap, topic_prefix, tmp_path):
    from veil.pipelines.cli import main

    config, worker = _erasure_worker(tmp_path, kafka_bootstrap, topic_prefix)
    ctx = worker.context("r", "erin", "$.name")
    env = worker.encrypt(b"Erin", ctx)
    assert worker.decrypt(env, ctx) == b"Erin"
    args = [
        "--store", config.store, "--keyring", config.keyring, "--master-key-env", MASTER_ENV,
        "--audit-log", str(tmp_path / "audit.jsonl"), "--prefix", topic_prefix,
        "--bootstrap", kafka_bootstrap,
    ]  # fmt: skip
    start = time.monotonic()
    try:
        assert main(["keys", "forget", "erin", *args]) == 0
        elapsed = _assert_refused_within(worker, env, ctx, start, 2.0)
        print(f"erasure seen by the worker after {elapsed * 1000:.0f} ms (TTL 60 s)")
    finally:
        worker.erasure_listener.close()


def test_raw_request_takes_effect_when_applied(kafka_bootstrap, topic_prefix, tmp_path):
    """An upstream request keyed by the raw subject key: the worker evicts and re-checks
    the store on every use, so the watcher's erasure bites at the next use."""
    from kafka import KafkaProducer

    from veil.pipelines.cli import main

    config, worker = _erasure_worker(tmp_path, kafka_bootstrap, topic_prefix)
    ctx = worker.context("r", "frank", "$.name")
    env = worker.encrypt(b"Frank", ctx)
    producer = KafkaProducer(bootstrap_servers=[kafka_bootstrap])
    producer.send(f"{topic_prefix}.erasure", key=b"frank", value=b"{}").get(timeout=30)
    producer.close()
    deadline = time.monotonic() + 5
    while worker.erasure_listener.seen < 1:
        assert time.monotonic() < deadline, "the listener never saw the request"
        time.sleep(0.05)
    assert worker.decrypt(env, ctx) == b"Frank"  # not applied to the store yet
    args = [
        "--store", config.store, "--keyring", config.keyring, "--master-key-env", MASTER_ENV,
        "--audit-log", str(tmp_path / "audit.jsonl"), "--prefix", topic_prefix,
        "--bootstrap", kafka_bootstrap, "--idle-timeout", "2",
    ]  # fmt: skip
    try:
        assert main(["keys", "watch-erasures", *args]) == 0
        with pytest.raises(DecryptionError):
            worker.decrypt(env, ctx)  # the cache TTL (60 s) has not passed
    finally:
        worker.erasure_listener.close()


def test_cli_against_the_kafka_store(kafka_bootstrap, topic_prefix, tmp_path, capsys):
    from veil.pipelines.cli import main
    from veil.pipelines.topics import topic_specs
    from veil.transforms.emit import TopicNames
    from veil.transforms.kafkaio.admin import ensure_topics

    ensure_topics({"bootstrap_servers": [kafka_bootstrap]}, topic_specs(TopicNames(topic_prefix)))
    config = local_config(tmp_path)
    args = [
        "--store", f"kafka://{topic_prefix}.keys", "--bootstrap", kafka_bootstrap,
        "--keyring", config.keyring, "--master-key-env", MASTER_ENV,
        "--audit-log", str(tmp_path / "audit.jsonl"), "--prefix", topic_prefix,
    ]  # fmt: skip
    assert main(["keys", "create", "gina", *args]) == 0
    created = json.loads(capsys.readouterr().out)
    assert main(["keys", "create", "gina", *args]) == 0  # idempotent: the same key
    assert json.loads(capsys.readouterr().out) == created
    list_args = [a for a in args if a not in ("--audit-log", str(tmp_path / "audit.jsonl"))]
    assert main(["keys", "list", *list_args]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"key_id": created["key_id"], "version": 1} in [
        {"key_id": r["key_id"], "version": r.get("version")} for r in rows
    ]
    assert main(["keys", "forget", "gina", *args]) == 0
    assert json.loads(capsys.readouterr().out)["destroyed"] == 1
    fresh = fresh_service(
        dataclasses.replace(config, store=f"kafka://{kafka_bootstrap}/{topic_prefix}.keys")
    )
    assert fresh._store.is_erased(created["key_id"])


def _protected_view(item):
    return (item.record_id, [f["field_path"] for f in item.protected], item.trail[-1].key_version)


def test_protect_stage_on_the_kafka_store(kafka_config):
    """ProtectOriginals in a Beam pipeline, its workers' key service on the Kafka store."""
    import apache_beam as beam
    from apache_beam.testing.util import assert_that, equal_to
    from veil_testing import beam_pipeline, media_record

    from veil.transforms.crypto.protect import ProtectOriginals
    from veil.transforms.records import Classification, Source, WorkItem

    fresh_service(kafka_config).forget("erased-subject")

    def item(record_id, subject):
        return WorkItem(
            source=Source("veil.raw", 0, 1),
            record=media_record(record_id, subject, b"x"),
            modality="text",
            pending_protection=[("payload", b"John Smith")],
            # Envelopes are bound to the classification (none: fail closed).
            classification=Classification("CONFIDENTIAL", ["GDPR"], {"PERSON": 1}),
        )

    pipeline = beam_pipeline()
    out = (
        pipeline
        | beam.Create([item("ok", "alice"), item("gone", "erased-subject")], reshuffle=False)
        | ProtectOriginals(kafka_config)
    )
    assert_that(
        out.records | beam.Map(_protected_view), equal_to([("ok", ["payload"], 1)]), label="ok"
    )
    assert_that(
        out.dead_letters | beam.Map(lambda f: (f.record_id, f.error_code, f.raw)),
        equal_to([("gone", "SUBJECT_ERASED", None)]),
        label="dead",
    )
    pipeline.run()


def test_a_cut_off_worker_fails_closed_after_the_ttl(kafka_config):
    """If the index cannot prove it follows the topic (broker unreachable) for longer
    than the cache TTL, the store refuses reads: no key outlives an erasure unseen."""
    service = fresh_service(kafka_config)
    ctx = service.context("r", "hank", "p")
    env = service.encrypt(b"Hank", ctx)
    service.clear_cache()
    store = service._store
    store._max_staleness_s = -1.0  # as if the last proof of freshness were too old
    with pytest.raises(DecryptionError):
        service.decrypt(env, ctx)
    with pytest.raises(KmsError):
        service.encrypt(b"new", service.context("r", "new-subject", "p"))
    store._fresh_at, store._max_staleness_s = 0.0, kafka_config.cache_ttl_s
    deadline = time.monotonic() + 10  # the index thread proves freshness again
    while time.monotonic() < deadline:
        try:
            assert service.decrypt(env, ctx) == b"Hank"
            break
        except DecryptionError:
            time.sleep(0.2)
    else:
        pytest.fail("the store never recovered")


def test_pseudonym_keys_from_a_kms_uri_on_the_kafka_store(kafka_config):
    from veil.transforms.keys import keys_from_config
    from veil.transforms.operators import pseudonym

    uri = (
        f"kms:local?store={kafka_config.store}&keyring={kafka_config.keyring}"
        f"&master_key_env={kafka_config.master_key_env}"
    )
    keys = keys_from_config(uri, None)
    a = pseudonym("Ivy Lee", keys, 12, "ivy")
    assert a == pseudonym("ivy lee", fresh_service(kafka_config).secret_keys(), 12, "ivy")
    fresh_service(kafka_config).forget("ivy")
    deadline = time.monotonic() + 2  # the URI's service learns it from its store index
    while True:
        try:
            pseudonym("Ivy Lee", keys, 12, "ivy")
        except SubjectKeyErased:
            break
        assert time.monotonic() < deadline, "the pseudonym key outlived the erasure"
        time.sleep(0.02)
