"""Red team: the structured branch's side doors (issue 18, item 4).

Keys of an object under a typed field, a producer hint naming an arbitrary string as
its entity type, and card numbers sent as JSON floats. Each value must be absent from
every output, or the record dead-lettered with its code.
"""

from __future__ import annotations

import json

import pytest
from redteam import by_topic, leaks, run_graph
from veil_testing import framed, media_record, message

CASES = [
    # (name, body, attributes, values that must not come out, expected dead-letter code)
    ("key-under-typed", {"email": {"john.smith@example.com": "primary"}}, {}, ["john.smith"], None),
    (
        "nested-key-under-typed",
        {"contact": {"emails": [{"jane.doe@example.org": {"verified": True}}]}},
        {"veil.hints": json.dumps({"$.contact.emails": "EMAIL_ADDRESS"})},
        ["jane.doe"],
        None,
    ),
    ("card-float", {"payment": 4111111111111111.0}, {}, ["4111111111111111", "411111111111"], None),
    ("card-float-exp", {"n": 4.111111111111111e15}, {}, ["4111111111111111", "4.1111111111"], None),
    ("card-float-big", {"v": 5555555555554444.0}, {}, ["5555555555554444", "555555555555"], None),
    (
        "hint-arbitrary-type",
        {"note": "hello"},
        {"veil.hints": json.dumps({"$.note": "john.smith@example.com"})},
        ["john.smith@example.com"],
        "INVALID_RECORD",
    ),
    (
        "hint-unknown-type",
        {"note": "hello"},
        {"veil.hints": json.dumps({"$.note": "SSN 123-45-6789"})},
        ["123-45-6789"],
        "INVALID_RECORD",
    ),
]


@pytest.fixture(scope="module")
def writes(tmp_path_factory):
    msgs = []
    for offset, (name, body, attrs, _, _) in enumerate(CASES):
        record = media_record(
            name,
            "alice",
            json.dumps(body).encode(),
            content_type="application/json",
            attributes=attrs,
        )
        msgs.append(message(framed(record), offset=offset, key=b"alice"))
    out, _ = run_graph(msgs, tmp=tmp_path_factory.mktemp("structured"))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_structured_side_door_closed(writes, case):
    name, _, _, secrets, code = case
    offset = CASES.index(case)
    for secret in secrets:
        assert leaks(writes, secret) == [], secret
    dead = [w for w in by_topic(writes, ".dead-letter") if w.record["source"]["offset"] == offset]
    sanitized = [
        w
        for w in by_topic(writes, ".sanitized.structured")
        if w.record["source"]["offset"] == offset
    ]
    if code:
        assert [d.record["error_code"] for d in dead] == [code] and sanitized == []
    else:
        assert dead == [] and len(sanitized) == 1
        counts = sanitized[0].record["classification"]["entity_counts"]
        assert set(counts) <= {"EMAIL_ADDRESS", "CREDIT_CARD"} and counts


def test_audit_counts_name_only_known_types(writes):
    for w in by_topic(writes, ".audit"):
        for counted in [w.record] + list(w.record.get("steps") or ()):  # the steps' too
            for entity in counted["entity_counts"]:
                assert entity.isupper() or entity in ("protected_fields",), entity
