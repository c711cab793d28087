"""Red team: producer-chosen record ids never reach an output (issue 18, item 1).

Each id below once came out verbatim as the Kafka key, the ``veil-record-id`` header,
the sanitized record's and dead letter's ``record_id`` and in every audit event. Now
decoding replaces it by its keyed hash (``veil.transforms.ids``); without a key, only
already-opaque ids pass and others are dead-lettered ``INVALID_RECORD``.
"""

from __future__ import annotations

import json
import os

import pytest
from redteam import by_topic, leaks, run_graph
from veil_testing import framed, media_record, message, opaque

from veil.transforms.ids import ID_KEY_ENV, is_opaque, opaque_id
from veil.transforms.keys import write_key_file

# Small runs keep the text step in process (the step worker is covered elsewhere).
FAST = "--veil_step_isolation=off"

HOSTILE_IDS = [
    "john.smith@example.com",
    "id-123-45-6789",
    "John_Smith_SSN_123-45-6789.txt",
    "4111 1111 1111 1111",
    "+1 (212) 555-0175",
    "müller@gmx.de",
]


def _messages():
    """Per id: one record that is sanitized (text), one that is dead-lettered (empty
    payload after decoding), one that fails in its branch (bad JSON)."""
    out, offset = [], 0
    for rid in HOSTILE_IDS:
        for record in (
            media_record(rid, "alice", b"Ticket closed."),
            media_record(rid, "alice", b""),
            media_record(rid, "alice", b"{not json", content_type="application/json"),
        ):
            out.append(message(framed(record), offset=offset, key=b"alice"))
            offset += 1
    return out


@pytest.fixture(scope="module")
def graph_writes(tmp_path_factory):
    writes, _ = run_graph(_messages(), tmp=tmp_path_factory.mktemp("ids"))
    return writes


@pytest.mark.parametrize("rid", HOSTILE_IDS)
def test_producer_id_absent_from_every_output(graph_writes, rid):
    assert leaks(graph_writes, rid) == []
    # ...and replaced by its opaque id everywhere an id is written.
    want = opaque(rid)
    sanitized = [
        w for w in by_topic(graph_writes, ".sanitized.text") if w.record["record_id"] == want
    ]
    assert len(sanitized) == 1
    assert sanitized[0].key == want.encode()
    assert dict(sanitized[0].headers)["veil-record-id"] == want.encode()
    dead = [w for w in by_topic(graph_writes, ".dead-letter") if w.record["record_id"] == want]
    assert sorted(w.record["error_code"] for w in dead) == [
        "EMPTY_PAYLOAD",
        "STRUCTURED_DECODE_ERROR",
    ]
    audit_ids = {w.record["record_id"] for w in by_topic(graph_writes, ".audit")}
    assert want in audit_ids and rid not in audit_ids


def test_every_input_accounted_for(graph_writes):
    outcomes = by_topic(graph_writes, ".sanitized.text") + by_topic(graph_writes, ".dead-letter")
    assert len(outcomes) == 3 * len(HOSTILE_IDS)
    assert all(is_opaque(w.record["record_id"]) for w in outcomes)


def test_same_id_same_opaque_id_across_runs(tmp_path):
    """Deterministic: a duplicate after a restart shares its Kafka key."""
    msg = [message(framed(media_record("dup-1", "alice", b"Hi.")), offset=0, key=b"alice")]
    first, _ = run_graph(msg, FAST, tmp=tmp_path)
    second, _ = run_graph(msg, FAST, tmp=tmp_path)
    key = lambda ws: [w.key for w in by_topic(ws, ".sanitized.text")]  # noqa: E731
    assert key(first) == key(second) == [opaque("dup-1").encode()]


def test_other_key_other_ids(tmp_path):
    """The mapping needs the key: another key gives other ids."""
    other = write_key_file(tmp_path / "other.key")
    assert opaque_id(b"k" * 32, "john.smith@example.com") != opaque("john.smith@example.com")
    writes, _ = run_graph(
        [message(framed(media_record("r-x", "alice", b"Hi.")), offset=0, key=b"alice")],
        f"--veil_record_id_key={other}",
        FAST,
        tmp=tmp_path,
    )
    ids = {w.record["record_id"] for w in by_topic(writes, ".sanitized.text")}
    assert ids and ids != {opaque("r-x")}


def test_without_a_key_only_opaque_ids_pass(tmp_path, monkeypatch):
    monkeypatch.delenv(ID_KEY_ENV)
    uuid_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    hex_id = "9b2f6c0e4f1a4e39a3d2c2c7f0b1a2d3"
    msgs = [
        message(framed(media_record(rid, "alice", b"Hi.")), offset=i, key=b"alice")
        for i, rid in enumerate(["john.smith@example.com", uuid_id, hex_id])
    ]
    writes, _ = run_graph(msgs, FAST, tmp=tmp_path)
    assert leaks(writes, "john.smith@example.com") == []
    dead = by_topic(writes, ".dead-letter")
    assert [(d.record["record_id"], d.record["error_code"]) for d in dead] == [
        (None, "INVALID_RECORD")
    ]
    assert sorted(w.record["record_id"] for w in by_topic(writes, ".sanitized.text")) == sorted(
        [uuid_id, hex_id]
    )
    assert os.environ.get(ID_KEY_ENV) is None


def test_unreadable_id_key_fails_closed(tmp_path):
    bad = tmp_path / "short.key"
    bad.write_text("abcd\n")
    bad.chmod(0o600)
    msgs = [message(framed(media_record("r-1", "alice", b"Hi.")), offset=0, key=b"alice")]
    writes, _ = run_graph(msgs, f"--veil_record_id_key={bad}", FAST, tmp=tmp_path)
    assert by_topic(writes, ".sanitized.text") == []
    dead = by_topic(writes, ".dead-letter")
    assert [d.record["error_code"] for d in dead] == ["RECORD_ID_KEY_UNAVAILABLE"]
    assert json.dumps([d.record for d in dead], default=str).count("r-1") == 0


def test_mapping_needs_the_key(capsys, tmp_path, monkeypatch):
    """`veil keys record-id` recomputes an opaque id with the key, and only with it."""
    from veil.pipelines.cli import main

    assert main(["keys", "record-id", "john.smith@example.com"]) == 0
    assert json.loads(capsys.readouterr().out)["record_id"] == opaque("john.smith@example.com")
    monkeypatch.delenv(ID_KEY_ENV)
    assert main(["keys", "record-id", "john.smith@example.com"]) == 2
