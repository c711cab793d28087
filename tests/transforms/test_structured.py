"""The structured branch and the policy's operators end to end, through ApplyPrivacyStep."""

from __future__ import annotations

import copy
import json
import socket

import apache_beam as beam
import pytest
import yaml
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record

from veil.schemas import catalog
from veil.transforms.classification import default_policy_path, load_policy, parse_policy
from veil.transforms.emit import PublishSanitized, TopicNames
from veil.transforms.keys import write_key_file
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder
from veil.transforms.records import Source, WorkItem
from veil.transforms.structured import StructuredHandler
from veil.transforms.text import TextHandler

RAW_POLICY = yaml.safe_load(default_policy_path().read_text())


def _policy(**anonymize) -> dict:
    raw = copy.deepcopy(RAW_POLICY)
    raw["version"] = "test-structured-1"
    raw["anonymize"].update(anonymize)
    return raw


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in unit tests")


@pytest.fixture(scope="module")
def shared_model():
    """Loads the text model once (network disabled) into ApplyPrivacyStep's shared slot."""
    handler = StructuredHandler(load_policy())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        holder = ApplyPrivacyStep.shared_for(handler).acquire(
            lambda: _ModelHolder(handler.load()), handler.share_key()
        )
        yield holder
    assert TextHandler(load_policy()).share_key() == handler.share_key()


def _item(record_id, offset, payload, modality="structured", subject="patient-7", **record):
    if not isinstance(payload, bytes):
        payload = json.dumps(payload).encode()
    content_type = record.pop(
        "content_type", "application/json" if modality == "structured" else "text/plain"
    )
    return WorkItem(
        source=Source("veil.raw", 0, offset),
        record=media_record(record_id, subject, payload, content_type=content_type, **record),
        modality=modality,
    )


def _run(handler, items):
    pipeline = beam_pipeline()
    result = pipeline | beam.Create(items, reshuffle=False) | ApplyPrivacyStep(handler)
    return pipeline, result


def _view(item):
    payload = item.sanitized_payload.decode()
    body = json.loads(payload) if item.modality == "structured" else payload
    return item.record_id, body, item.classification.as_dict(), item.sanitized_content_type


PATIENT = {
    "patient": {
        "name": "Ada Byron",
        "age": 37,
        "zip": "03601",
        "dob": "1988-04-12",
        "notes": "Called 212-555-0175; diagnosed with asthma.",
        "visits": [{"date": "2024-01-02", "card": 4111111111111111}],
        "flags": [True, None],
    },
    "ada@example.com": {"ok": True},
    "count": 3,
    "product": {"sku": "X-1", "price": 9.5},
}


def test_structured_records_keep_shape_and_types(shared_model):
    items = [
        _item("nested", 0, PATIENT),
        _item("clean", 1, {"sku": "X-1", "qty": 2, "tags": ["blue", "large"]}),
        _item("array", 2, [{"email": "bo@example.org"}, "call 617-555-0199", 42]),
    ]
    counts = {"AGE": 1, "CREDIT_CARD": 1, "DATE_TIME": 2, "EMAIL_ADDRESS": 1, "HEALTH": 2,
              "PERSON": 1, "PHONE_NUMBER": 1, "ZIP_CODE": 1}  # fmt: skip
    pipeline, result = _run(StructuredHandler(load_policy()), items)
    with pipeline:
        assert_that(
            result.records | "View" >> beam.Map(_view),
            equal_to(
                [
                    (
                        "nested",
                        {
                            "patient": {
                                "name": "<PERSON>",
                                "age": "30-39",
                                "zip": "000",  # a HIPAA small-area prefix
                                "dob": "1988",  # HIPAA PHI: dates to year
                                "notes": "Called <PHONE_NUMBER>; <HEALTH> <HEALTH>.",
                                "visits": [{"date": "2024", "card": "************1111"}],
                                "flags": [True, None],
                            },
                            "<EMAIL_ADDRESS>": {"ok": True},
                            "count": 3,
                            "product": {"sku": "X-1", "price": 9.5},
                        },
                        {
                            "sensitivity": "RESTRICTED",
                            "regimes": ["GDPR", "GDPR_SPECIAL_CATEGORY", "HIPAA_PHI", "PCI"],
                            "entity_counts": counts,
                        },
                        "application/json",
                    ),
                    (
                        "clean",
                        {"sku": "X-1", "qty": 2, "tags": ["blue", "large"]},
                        {"sensitivity": "INTERNAL", "regimes": [], "entity_counts": {}},
                        "application/json",
                    ),
                    (
                        "array",
                        [{"email": "<EMAIL_ADDRESS>"}, "call <PHONE_NUMBER>", 42],
                        {
                            "sensitivity": "CONFIDENTIAL",
                            "regimes": ["GDPR"],
                            "entity_counts": {"EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1},
                        },
                        "application/json",
                    ),
                ]
            ),
            label="records",
        )
        assert_that(result.dead_letters, equal_to([]), label="dead_letters")


def _deep(depth):
    doc = "x"
    for _ in range(depth):
        doc = {"a": doc}
    return doc


def test_bad_structured_input_is_dead_lettered(shared_model):
    items = [
        _item("not-json", 0, b'{"name": "Ada'),
        _item("not-utf8", 1, b'{"name": "caf\xc3\x28"}'),
        _item("too-deep", 2, _deep(40)),
        _item("bad-hints", 3, {"a": 1}, attributes={"veil.hints": "[1, 2]"}),
        _item("ok", 4, {"a": 1}),
    ]
    pipeline, result = _run(StructuredHandler(load_policy()), items)
    with pipeline:
        assert_that(
            result.records | "Ids" >> beam.Map(lambda i: i.record_id),
            equal_to(["ok"]),
            label="records",
        )
        assert_that(
            result.dead_letters
            | "Dead" >> beam.Map(lambda f: (f.record_id, f.stage, f.error_code, f.error_class)),
            equal_to(
                [
                    (rid, "structured", "STRUCTURED_DECODE_ERROR", None)
                    for rid in ("not-json", "not-utf8", "too-deep", "bad-hints")
                ]
            ),
            label="dead_letters",
        )


def test_hints_drop_redact_and_ndjson(shared_model):
    policy = parse_policy(
        _policy(
            structured={
                "default": "replace",
                "entities": {
                    "LOYALTY_ID": "drop",
                    "AGE": "redact",
                    "CREDIT_CARD": {"operator": "mask", "keep_last": 4},
                },
            }
        )
    )
    hints = json.dumps({"$.member.loyalty": "LOYALTY_ID", "$.member.kids[*].years": "AGE"})
    items = [
        _item(
            "hinted",
            0,
            {"member": {"loyalty": "L-99", "kids": [{"years": 7}, {"years": 9}], "tier": "gold"}},
            attributes={"veil.hints": hints},
        ),
        _item(
            "lines",
            1,
            b'{"card": "4111 1111 1111 1111"}\n\n{"note": "all good"}\n',
            content_type="application/x-ndjson",
        ),
    ]
    pipeline, result = _run(StructuredHandler(policy), items)
    with pipeline:
        assert_that(
            result.records
            | "View"
            >> beam.Map(lambda i: (i.record_id, i.sanitized_payload, i.sanitized_content_type)),
            equal_to(
                [
                    (
                        "hinted",
                        b'{"member": {"kids": [{"years": null}, {"years": null}], "tier": "gold"}}',
                        "application/json",
                    ),
                    (
                        "lines",
                        b'{"card": "**** **** **** 1111"}\n{"note": "all good"}\n',
                        "application/x-ndjson",
                    ),
                ]
            ),
        )


@pytest.fixture
def key_file(tmp_path):
    return str(write_key_file(tmp_path / "pseudonym.key"))


def test_pseudonyms_match_across_modalities_and_date_shift_per_subject(shared_model, key_file):
    raw = _policy(
        text={"default": "replace", "entities": {"PERSON": "pseudonym",
                                                 "DATE_TIME": "date_shift"}},
        structured={"default": "replace", "entities": {"PERSON": "pseudonym",
                                                       "DATE_TIME": "date_shift"}},
        regimes={},
    )  # fmt: skip
    raw["keys"] = {"pseudonym_key_file": key_file}
    policy = parse_policy(raw)
    text_items = [
        _item("t1", 0, b"Dr. Ada Byron saw him on 2024-01-02.", "text", "s1"),
        _item("t2", 1, b"Dr. Ada Byron saw him on 2024-01-02.", "text", "s2"),
    ]
    json_items = [_item("j1", 2, {"name": "ada  byron", "visit_date": "2024-01-12"},
                        subject="s1")]  # fmt: skip
    pipeline = beam_pipeline()
    texts = (
        pipeline
        | "Texts" >> beam.Create(text_items, reshuffle=False)
        | "Text" >> ApplyPrivacyStep(TextHandler(policy))
    )
    docs = (
        pipeline
        | "Docs" >> beam.Create(json_items, reshuffle=False)
        | "Structured" >> ApplyPrivacyStep(StructuredHandler(policy))
    )

    def check(views):
        by_id = dict(views)
        t1, t2, j1 = by_id["t1"], by_id["t2"], json.loads(by_id["j1"])
        # The title is redacted as a span of its own: the name's pseudonym ignores it.
        title, name = t1.split(" saw")[0].split(" ")
        assert title.startswith("<PERSON_") and "Dr" not in t1
        assert name.startswith("<PERSON_") and "Ada" not in t1
        assert t2.split(" saw")[0].split(" ")[1] == name  # same value, same pseudonym
        assert j1["name"] == name  # across modalities, case and spacing normalized
        d1 = t1.rsplit(" ", 1)[1].rstrip(".")
        assert d1 != "2024-01-02" and len(d1) == 10
        # visit_date is not a field rule: found in the value, shifted by s1's offset
        import datetime as dt

        delta = dt.date.fromisoformat(j1["visit_date"]) - dt.date.fromisoformat(d1)
        assert delta.days == 10  # s1's dates keep their intervals

    views = (
        (texts.records, docs.records)
        | beam.Flatten()
        | beam.Map(lambda i: (i.record_id, i.sanitized_payload.decode()))
        | beam.combiners.ToList()
    )
    assert_that(views, lambda got: check(got[0]) if len(got) == 1 else pytest.fail("no output"))
    pipeline.run()


def test_missing_pseudonym_key_fails_closed(shared_model, tmp_path, monkeypatch):
    monkeypatch.delenv("VEIL_PSEUDONYM_KEY_FILE", raising=False)
    raw = _policy(text={"default": "pseudonym"}, structured={"default": "pseudonym"})
    raw["keys"] = {"pseudonym_key_file": str(tmp_path / "absent.key")}
    policy = parse_policy(raw)
    pipeline = beam_pipeline()
    items = [_item("t", 0, b"Call Ada Byron.", "text"), _item("clean", 1, b"All good.", "text")]
    text = (
        pipeline
        | "T" >> beam.Create(items, reshuffle=False)
        | "Text" >> ApplyPrivacyStep(TextHandler(policy))
    )
    docs = (
        pipeline
        | "J" >> beam.Create([_item("j", 2, {"name": "Ada"})], reshuffle=False)
        | "Structured" >> ApplyPrivacyStep(StructuredHandler(policy))
    )
    dead = (
        (text.dead_letters, docs.dead_letters)
        | beam.Flatten()
        | beam.Map(lambda f: (f.record_id, f.stage, f.error_code))
    )
    assert_that(
        dead,
        equal_to(
            [("t", "text", "PSEUDONYM_KEY_UNAVAILABLE"),
             ("j", "structured", "PSEUDONYM_KEY_UNAVAILABLE")]
        ),
        label="dead",
    )  # fmt: skip
    assert_that(text.records | beam.Map(lambda i: i.record_id), equal_to(["clean"]), label="ok")
    pipeline.run()


def test_encrypt_for_recovery_is_dead_lettered_until_protection_exists(shared_model):
    policy = parse_policy(
        _policy(
            text={"default": "replace", "entities": {"US_SSN": "encrypt"}},
            structured={"default": "replace", "entities": {"US_SSN": "encrypt"}},
        )
    )
    items = [
        _item("t", 0, b"My SSN is 123-45-6789.", "text"),
        _item("none", 1, b"Nothing here.", "text"),
    ]
    pipeline = beam_pipeline()
    text = (
        pipeline
        | "T" >> beam.Create(items, reshuffle=False)
        | "Text" >> ApplyPrivacyStep(TextHandler(policy))
    )
    docs = (
        pipeline
        | "J" >> beam.Create([_item("j", 2, {"ssn": "123-45-6789"})], reshuffle=False)
        | "Structured" >> ApplyPrivacyStep(StructuredHandler(policy))
    )
    pending = (text.records, docs.records) | "Both" >> beam.Flatten()
    assert_that(
        pending
        | "Pending" >> beam.Map(lambda i: (i.record_id, i.pending_protection, i.sanitized_payload)),
        equal_to(
            [
                ("t", [("payload[10:21]", b"123-45-6789")], b"My SSN is <US_SSN:protected>."),
                ("none", [], b"Nothing here."),
                ("j", [("$.ssn", b"123-45-6789")], b'{"ssn": "<US_SSN:protected>"}'),
            ]
        ),
        label="pending",
    )
    writes = pending | PublishSanitized(TopicNames("tst"), policy.version)

    def summary(write):
        subject, record = catalog().decode(write.value)
        if subject == "DeadLetter":
            return (write.topic, record["record_id"], record["error_code"])
        if subject == "SanitizedRecord":
            assert b"123-45-6789" not in record["payload"]
            return (write.topic, record["record_id"], None)
        return None

    assert_that(
        writes | beam.Map(summary) | beam.Filter(lambda s: s is not None),
        equal_to(
            [
                ("tst.dead-letter", "t", "PROTECTION_UNAVAILABLE"),
                ("tst.dead-letter", "j", "PROTECTION_UNAVAILABLE"),
                ("tst.sanitized.text", "none", None),
            ]
        ),
        label="writes",
    )
    pipeline.run()


def test_key_service_pseudonyms_are_per_subject_and_die_with_erasure(
    shared_model, tmp_path, monkeypatch
):
    """With the key service as the pseudonym key source, pseudonyms and date shifts use
    a secret per subject: consistent within a subject (across modalities), different
    across subjects, and after `forget` the subject's records are dead-lettered."""
    from veil.transforms.crypto import KeyServiceConfig, LocalKeyring
    from veil.transforms.keys import SubjectKeyErased
    from veil.transforms.operators import pseudonym

    monkeypatch.setenv("VEIL_TEST_PSEUDO_MASTER", "33" * 32)
    LocalKeyring.create(tmp_path / "keyring.json", "VEIL_TEST_PSEUDO_MASTER")
    uri = (
        f"kms:local?store={tmp_path / 'keys.db'}&keyring={tmp_path / 'keyring.json'}"
        "&master_key_env=VEIL_TEST_PSEUDO_MASTER"
    )
    raw = _policy(
        text={"default": "replace", "entities": {"PERSON": "pseudonym"}},
        structured={"default": "replace", "entities": {"PERSON": "pseudonym"}},
        regimes={},
    )
    raw["keys"] = {"pseudonym_key_file": uri}
    policy = parse_policy(raw)

    keys = KeyServiceConfig.from_uri(uri).open().secret_keys()

    def name(subject):  # the title is a span of its own: the name's pseudonym ignores it
        title = f"<PERSON_{pseudonym('Dr.', keys, 12, subject)}>"
        return f"{title} <PERSON_{pseudonym('Ada Byron', keys, 12, subject)}>"

    def run(text_items, json_items, want_ok, want_dead):
        pipeline = beam_pipeline()
        texts = (
            pipeline
            | "Texts" >> beam.Create(text_items, reshuffle=False)
            | "Text" >> ApplyPrivacyStep(TextHandler(policy))
        )
        docs = (
            pipeline
            | "Docs" >> beam.Create(json_items, reshuffle=False)
            | "Structured" >> ApplyPrivacyStep(StructuredHandler(policy))
        )
        views = (
            (texts.records, docs.records)
            | beam.Flatten()
            | beam.Map(lambda i: (i.record_id, i.sanitized_payload.decode()))
        )
        dead = (
            (texts.dead_letters, docs.dead_letters)
            | "Dead" >> beam.Flatten()
            | beam.Map(lambda f: (f.record_id, f.error_code))
        )
        assert_that(views, equal_to(want_ok), label="records")
        assert_that(dead, equal_to(want_dead), label="dead")
        pipeline.run()

    text = b"Dr. Ada Byron called."
    assert name("s1") != name("s2")  # not linkable across subjects
    run(
        [_item("t1", 0, text, "text", "s1"), _item("t2", 1, text, "text", "s2")],
        [_item("j1", 2, {"name": "ada byron"}, subject="s1")],
        [("t1", f"{name('s1')} called."), ("t2", f"{name('s2')} called."),
         ("j1", json.dumps({"name": name("s1").split(" ")[1]}))],
        [],
    )  # fmt: skip
    before = name("s2")
    KeyServiceConfig.from_uri(uri).open().forget("s1")
    with pytest.raises(SubjectKeyErased):
        name("s1")  # nobody can recompute s1's pseudonyms any more
    run(
        [_item("t3", 3, text, "text", "s1"), _item("t4", 4, text, "text", "s2")],
        [],
        [("t4", f"{before} called.")],
        [("t3", "SUBJECT_ERASED")],
    )
