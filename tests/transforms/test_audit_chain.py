"""The audit chain's format and verifier: every tamper kind is found, and where."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from veil.pipelines.files import to_json
from veil.schemas import AUDIT_EVENT, catalog
from veil.transforms.audit import record_event
from veil.transforms.audit_chain import (
    GENESIS_HASH,
    NO_KEY,
    AuditKeyUnavailable,
    Located,
    MacKey,
    audit_partition,
    canonical,
    chain_id,
    decode_writer,
    event_hash,
    from_json,
    make_link,
    read_file,
    resolve_mac_key,
    verify,
)
from veil.transforms.keys import write_key_file
from veil.transforms.records import AuditStep, Source

KEY = MacKey(b"k" * 32, "file:test/audit")
OTHER_KEY = MacKey(b"o" * 32, "file:other/audit")


def _events(partition: int, count: int, topic="veil.raw") -> list[dict]:
    """``count`` content-free events of one source partition, one per record."""
    events = []
    for offset in range(count):
        trail = [AuditStep("decode", "ACCEPTED", at_ms=1_700_000_000_000 + offset)]
        events.append(
            record_event(
                Source(topic, partition, offset),
                f"r{partition}-{offset}",
                "text",
                trail,
                "p1",
                "v1",
            )
        )
    return events


def _chain(events: list[dict], key: MacKey = KEY, start: dict | None = None) -> list[dict]:
    """Links ``events`` as the writer does; ``start`` maps chain id -> (seq, hash)."""
    heads = dict(start or {})
    out = []
    for event in map(copy.deepcopy, events):
        label = chain_id(event)
        seq, prev = heads.get(label, (-1, GENESIS_HASH))
        event["chain"] = make_link(event, seq + 1, prev, key)
        heads[label] = (seq + 1, event_hash(event))
        out.append(event)
    return out


def _located(events, partition=0) -> list[Located]:
    return [Located(e, f"veil.audit/{partition}@{i}", partition) for i, e in enumerate(events)]


def _kinds(report) -> list[tuple]:
    return [(p.kind, p.sequence, p.where) for p in report.problems]


def test_canonical_bytes_survive_avro_and_json_round_trips():
    event = _chain(_events(0, 1))[0]
    event["duration_ms"] = 12.5
    event["entity_counts"] = {"PERSON": 2, "EMAIL_ADDRESS": 1}
    framed = catalog().encode(AUDIT_EVENT, event)
    decoded = decode_writer(framed)
    assert canonical(decoded) == canonical(event)
    as_json = json.loads(json.dumps(to_json(AUDIT_EVENT, decoded)))
    assert canonical(from_json(as_json)) == canonical(event)
    assert b'"mac"' not in canonical(event)  # the MAC covers the rest, not itself


def test_v1_events_and_v2_events_verify_on_one_chain():
    """Schema v2 (one event per record, ``steps``) extends v1: an audit topic written by
    the v1 pipeline and continued by the v2 one is one chain, and an edit inside a v2
    event's steps breaks its MAC and the next link, found at the event."""
    import io

    import fastavro

    from veil.schemas import HEADER, MAGIC_BYTE

    v1 = next(v for v in catalog().versions(AUDIT_EVENT) if v.version == 1)
    assert catalog().latest(AUDIT_EVENT).version == 2
    old = {k: v for k, v in _events(0, 1)[0].items() if k != "steps"}
    trail = [
        AuditStep("decode", "ACCEPTED", at_ms=1_700_000_000_100),
        AuditStep("text", "ANONYMIZED", entity_counts={"PERSON": 2}, duration_ms=3.25,
                  detectors={"spacy": "3.8"}, at_ms=1_700_000_000_101),
        AuditStep("emit", "PUBLISHED", at_ms=1_700_000_000_102),
    ]  # fmt: skip
    new = [record_event(Source("veil.raw", 0, o), f"r{o}", "text", trail, "p1", "v1")
           for o in (1, 2)]  # fmt: skip
    linked = _chain([old] + new)
    buf = io.BytesIO()
    buf.write(HEADER.pack(MAGIC_BYTE, v1.schema_id))
    fastavro.schemaless_writer(buf, v1.parsed, linked[0])
    topic = [decode_writer(buf.getvalue())] + [
        decode_writer(catalog().encode(AUDIT_EVENT, e)) for e in linked[1:]
    ]
    assert "steps" not in topic[0] and [s["action"] for s in topic[1]["steps"]] == [
        "ACCEPTED", "ANONYMIZED", "PUBLISHED"
    ]  # fmt: skip
    assert (topic[1]["entity_counts"], topic[1]["duration_ms"]) == ({"PERSON": 2}, 3.25)
    report = verify(_located(topic), [KEY])
    assert report.ok and report.events == 3 and report.macs_checked == 3, _kinds(report)
    topic[1]["steps"][1]["entity_counts"]["PERSON"] = 0  # a count edited inside the steps
    assert _kinds(verify(_located(topic), [KEY])) == [
        ("BAD_MAC", 1, "veil.audit/0@1"),
        ("BROKEN_LINK", 2, "veil.audit/0@2"),
    ]


def test_an_event_without_steps_hashes_the_same_read_back():
    """Writers of events about no pipeline run (reveal, erasure) build them without
    ``steps``; decoding with schema v2 fills in ``[]``: the chain must not see a change."""
    event = {k: v for k, v in _events(0, 1)[0].items() if k != "steps"}
    linked = _chain([event])[0]
    decoded = decode_writer(catalog().encode(AUDIT_EVENT, linked))
    assert decoded["steps"] == [] and canonical(decoded) == canonical(linked)
    assert verify(_located([decoded]), [KEY]).ok


def test_a_clean_chain_verifies_with_and_without_the_key():
    chain = _chain(_events(0, 6))
    for keys in ([KEY], []):
        report = verify(_located(chain), keys)
        assert report.ok, _kinds(report)
        assert report.events == 6 and len(report.chains) == 1
    assert verify(_located(chain), [KEY]).macs_checked == 6


def test_interleaved_chains_of_several_source_partitions_verify():
    a, b, c = _events(0, 5), _events(1, 4), _events(2, 3)
    mixed = [e for group in zip(a, b, c) for e in group] + a[3:] + b[3:]
    report = verify(_located(_chain(mixed)), [KEY])
    assert report.ok, _kinds(report)
    assert sorted(report.chains) == [f"veil.raw/{p} (audit partition 0)" for p in range(3)]


def test_replayed_records_are_duplicates_not_tampering():
    events = _events(0, 4)
    replayed = events + events[2:]  # a crash replayed offsets 2 and 3
    report = verify(_located(_chain(replayed)), [KEY])
    assert report.ok and report.duplicates == 2


def test_a_modified_event_is_found_by_its_mac_and_by_the_next_link():
    chain = _chain(_events(0, 5))
    chain[2]["entity_counts"] = {"PERSON": 0}
    report = verify(_located(chain), [KEY])
    assert ("BAD_MAC", 2, "veil.audit/0@2") in _kinds(report)
    assert ("BROKEN_LINK", 3, "veil.audit/0@3") in _kinds(report)
    keyless = verify(_located(chain), [])  # hash links alone point at it too
    assert _kinds(keyless) == [("BROKEN_LINK", 3, "veil.audit/0@3")]


def test_a_deleted_event_is_a_sequence_gap():
    chain = _chain(_events(0, 5))
    located = _located(chain)
    del located[2]
    report = verify(located, [KEY])
    assert [(p.kind, p.sequence) for p in report.problems] == [("DELETED", 2)]
    assert "veil.audit/0@3" in report.problems[0].where


def test_deleting_the_start_of_a_chain_is_found():
    located = _located(_chain(_events(0, 4)))[2:]
    assert [(p.kind, p.sequence) for p in verify(located, [KEY]).problems] == [("DELETED", 0)]


def test_inserted_events_are_found():
    chain = _chain(_events(0, 4))
    forged = copy.deepcopy(chain[3])
    forged["chain"] = make_link(forged, 4, event_hash(chain[3]), OTHER_KEY)
    report = verify(_located(chain + [forged]), [KEY])
    assert _kinds(report) == [("UNKNOWN_MAC_KEY", 4, "veil.audit/0@4")]
    copied = _located(chain + [chain[1]])  # a valid event inserted again
    assert _kinds(verify(copied, [KEY])) == [("INSERTED", 1, "veil.audit/0@4")]
    # Without the key, a forged event that reuses a sequence still conflicts.
    rogue = copy.deepcopy(chain[2])
    rogue["stage"] = "forged"
    rogue["chain"] = make_link(rogue, 2, event_hash(chain[1]), NO_KEY)
    kinds = _kinds(verify(_located(chain[:3] + [rogue] + chain[3:]), []))
    assert ("CONFLICT", 2, "veil.audit/0@3") in kinds


def test_reordered_events_are_found():
    chain = _chain(_events(0, 5))
    chain[2], chain[3] = chain[3], chain[2]  # the log now holds 0, 1, 3, 2, 4
    report = verify(_located(chain), [KEY])
    assert _kinds(report) == [("REORDERED", 2, "veil.audit/0@3")]


def test_a_swapped_mac_key_is_found():
    chain = _chain(_events(0, 3))
    resigned = _chain(_events(0, 3), key=MacKey(b"x" * 32, KEY.key_id))  # same id, wrong key
    assert {p.kind for p in verify(_located(resigned), [KEY]).problems} == {"BAD_MAC"}
    other = _chain(_events(0, 3), key=OTHER_KEY)
    assert {p.kind for p in verify(_located(other), [KEY]).problems} == {"UNKNOWN_MAC_KEY"}
    # Stripping the MACs (a downgrade) is refused when a key is given.
    unsigned = _chain(_events(0, 3), key=NO_KEY)
    assert {p.kind for p in verify(_located(unsigned), [KEY]).problems} == {"UNSIGNED"}
    assert verify(_located(unsigned), [KEY], allow_unsigned=True).ok
    assert verify(_located(chain), [KEY]).ok


def test_expected_heads_catch_tail_truncation():
    chain = _chain(_events(1, 5))
    assert verify(_located(chain), [KEY], expect_heads={"veil.raw/1": 4}).ok
    report = verify(_located(chain[:3]), [KEY], expect_heads={"veil.raw/1": 4})
    assert [(p.kind, p.chain) for p in report.problems] == [("TRUNCATED", "veil.raw/1")]


def test_unchained_and_unreadable_events_are_problems():
    event = _events(0, 1)[0]
    report = verify([Located(event, "x:1", None), Located(None, "x:2", None, "BAD_FRAMING")])
    assert [p.kind for p in report.problems] == ["UNCHAINED", "UNREADABLE"]


def test_files_as_veil_consume_writes_them(tmp_path):
    chain = _chain(_events(0, 3) + _events(2, 2))
    lines = []
    for offset, event in enumerate(chain):
        value = to_json(AUDIT_EVENT, decode_writer(catalog().encode(AUDIT_EVENT, event)))
        lines.append({"topic": "veil.audit", "partition": 1, "offset": offset, "value": value})
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(json.dumps(line, default=str) for line in lines) + "\n")
    assert verify(read_file(str(path)), [KEY]).ok
    lines[1]["value"]["reason_code"] = "EDITED"
    path.write_text("\n".join(json.dumps(line, default=str) for line in lines) + "\n")
    report = verify(read_file(str(path)), [KEY])
    assert report.problems[0].kind == "BAD_MAC"
    assert report.problems[0].where == f"{path}:2 (veil.audit/1@1)"


def test_audit_partition_is_stable_and_spreads_chains():
    assert audit_partition("veil.raw/0", 3) == audit_partition("veil.raw/0", 3)
    assert len({audit_partition(f"veil.raw/{p}", 3) for p in range(12)}) == 3


def test_mac_key_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("VEIL_AUDIT_KEY_FILE", raising=False)
    assert resolve_mac_key() == NO_KEY
    path = write_key_file(tmp_path / "audit.key")
    key = resolve_mac_key(str(path))
    assert key.key and len(key.key) == 32 and key.key_id.endswith("/audit")
    assert key.key_id.startswith("file:")
    monkeypatch.setenv("VEIL_AUDIT_KEY_FILE", str(path))
    assert resolve_mac_key() == key
    with pytest.raises(AuditKeyUnavailable):  # configured but missing: fail closed
        resolve_mac_key(str(tmp_path / "missing.key"))


def test_mac_key_from_the_key_service(tmp_path, monkeypatch):
    """With --veil_key_store the audit key is the key service's ``audit`` scope key, the
    same in every process, and the verifier reaches it through a kms: URI."""
    from veil.transforms.crypto import KeyServiceConfig, LocalKeyring

    monkeypatch.delenv("VEIL_AUDIT_KEY_FILE", raising=False)
    monkeypatch.setenv("VEIL_TEST_AUDIT_MASTER", "22" * 32)
    LocalKeyring.create(tmp_path / "keyring.json", "VEIL_TEST_AUDIT_MASTER")
    config = KeyServiceConfig(
        store=str(tmp_path / "keys.db"),
        keyring=str(tmp_path / "keyring.json"),
        master_key_env="VEIL_TEST_AUDIT_MASTER",
    )
    key = resolve_mac_key(key_service=config)
    assert key.key and key.key_id.startswith("kms:") and key.key_id.endswith("/audit")
    uri = (
        f"kms:local?store={tmp_path / 'keys.db'}&keyring={tmp_path / 'keyring.json'}"
        "&master_key_env=VEIL_TEST_AUDIT_MASTER"
    )
    assert resolve_mac_key(uri) == key
    monkeypatch.delenv("VEIL_TEST_AUDIT_MASTER")
    broken = dataclasses.replace(config, master_key_env="VEIL_TEST_AUDIT_NOWHERE")
    with pytest.raises(AuditKeyUnavailable):  # configured but unusable: fail closed
        resolve_mac_key(key_service=broken)


def test_the_writer_refuses_to_start_without_a_required_or_readable_key(tmp_path, monkeypatch):
    from veil.transforms.kafkaio.audit_chainer import AuditChainer, AuditChainSpec

    monkeypatch.delenv("VEIL_AUDIT_KEY_FILE", raising=False)
    config = {"bootstrap_servers": ["127.0.0.1:1"]}  # never contacted by the constructor
    with pytest.raises(AuditKeyUnavailable):
        AuditChainer(AuditChainSpec("veil.audit", require_key=True), config)
    with pytest.raises(AuditKeyUnavailable):
        AuditChainer(AuditChainSpec("veil.audit", key_ref=str(tmp_path / "gone.key")), config)
    assert AuditChainer(AuditChainSpec("veil.audit"), config).key == NO_KEY  # usable, unsigned


@pytest.mark.parametrize("sequence", [0, 1, 63, 64, 8191, 2**31, 2**62])
@pytest.mark.parametrize("key", [KEY, MacKey(None, "none")], ids=["mac", "no-mac"])
def test_spliced_link_encodes_exactly_like_a_full_encode(sequence, key):
    """The sink splices the ChainLink onto the unchained Avro bytes instead of
    re-encoding every audit event; both must give the same bytes."""
    from veil.transforms.audit_chain import link_event
    from veil.transforms.kafkaio.audit_chainer import with_link

    event = _events(0, 1)[0]
    unchained = catalog().encode(AUDIT_EVENT, event)
    linked = dict(event)
    link_event(linked, sequence, bytes(range(32)), key)
    assert with_link(unchained, linked["chain"]) == catalog().encode(AUDIT_EVENT, linked)
    # A value that is already chained is re-encoded in full, never spliced twice.
    chained = catalog().encode(AUDIT_EVENT, linked)
    relinked = dict(event)
    link_event(relinked, sequence + 1, bytes(32), key)
    assert with_link(chained, relinked["chain"]) == catalog().encode(AUDIT_EVENT, relinked)
