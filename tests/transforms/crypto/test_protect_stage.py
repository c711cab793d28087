"""The protection stage in the graph, dead-letter originals, and ``veil reveal``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions
from crypto_testing import MASTER_ENV, fresh_service, local_config
from veil_testing import framed, media_record, opaque

from veil.pipelines.options import LOCAL_RUNNER
from veil.pipelines.sanitize import build
from veil.schemas import catalog
from veil.transforms.audit import steps_of
from veil.transforms.classification import default_policy_path
from veil.transforms.crypto import DecryptionError, KeyServiceConfig
from veil.transforms.crypto.protect import ProtectOriginalsFn, protect_item
from veil.transforms.crypto.reveal import RevealPolicy, reveal_record
from veil.transforms.crypto.service import BOUND_SCHEMA, EnvelopeContext, protection_binding
from veil.transforms.records import Classification, ErrorCode, KafkaMessage, Source, WorkItem


def _item(subject="alice", pending=((("payload"), b"John Smith"),)):
    return WorkItem(
        source=Source("veil.raw", 0, 7),
        record=media_record("rec-1", subject, b"x"),
        modality="text",
        pending_protection=list(pending),
        classification=Classification("RESTRICTED", ["GDPR"], {"PERSON": 1}),
    )


def test_protect_item(tmp_path):
    service = fresh_service(local_config(tmp_path))
    item = protect_item(service, _item(pending=[("payload", b"John Smith"), ("payload", b"Ann")]))
    assert item.pending_protection == []
    assert [f["field_path"] for f in item.protected] == ["payload", "payload"]
    step = item.trail[-1]
    assert (step.stage, step.action, step.key_version) == ("protect", "PROTECTED", 1)
    assert step.key_id.startswith("s:") and "alice" not in step.key_id
    binding = protection_binding("RESTRICTED", ["GDPR"], "", "")
    ctx = service.context("rec-1", "alice", "payload")._replace(
        schema_version=BOUND_SCHEMA, binding=binding
    )
    assert [service.decrypt(f["envelope"], ctx) for f in item.protected] == [b"John Smith", b"Ann"]
    # Bound to the classification: other regimes, or the unbound context, do not decrypt.
    for other in (
        ctx._replace(binding=protection_binding("RESTRICTED", [], "", "")),
        service.context("rec-1", "alice", "payload"),
    ):
        with pytest.raises(DecryptionError):
            service.decrypt(item.protected[0]["envelope"], other)


def test_protect_item_without_classification_fails_closed(tmp_path):
    service = fresh_service(local_config(tmp_path))
    item = _item()
    item.classification = None
    with pytest.raises(ValueError):
        protect_item(service, item)
    assert item.protected == [] and item.pending_protection


def _run_fn(fn, item):
    fn.setup()
    return list(fn.process(item))


def test_protect_fn_fails_closed(tmp_path):
    config = local_config(tmp_path)
    fresh_service(config).forget("erased")
    out = _run_fn(ProtectOriginalsFn(config), _item("erased"))
    failure = out[0].value
    assert out[0].tag == "dead_letters" and failure.error_code == ErrorCode.SUBJECT_ERASED
    assert failure.raw is None and failure.record is None  # nothing of an erased subject
    broken = KeyServiceConfig(store=str(tmp_path / "k.db"), keyring=str(tmp_path / "none.json"))
    out = _run_fn(ProtectOriginalsFn(broken), _item())
    assert out[0].value.error_code == ErrorCode.PROTECTION_FAILED
    untouched = _item(pending=())
    assert _run_fn(ProtectOriginalsFn(broken), untouched) == [untouched]


class _ToFile(beam.PTransform):
    def __init__(self, path):
        super().__init__()
        self._path = str(path)

    def expand(self, writes):
        path = self._path

        def write(w):
            with open(path, "a") as fh:
                fh.write(json.dumps([w.topic, base64.b64encode(w.value).decode()]) + "\n")

        return writes | beam.Map(write)


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graph")
    config = local_config(tmp)
    policy = yaml.safe_load(Path(default_policy_path()).read_text())
    policy["anonymize"]["text"]["entities"] = {"PERSON": "encrypt"}
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    records = [media_record("t1", "alice", b"Call John Smith at 212-555-0175.")]
    msgs = [KafkaMessage("veil.raw", 0, 0, 0, b"alice", framed(records[0]))]
    msgs.append(KafkaMessage("veil.raw", 0, 1, 0, None, b"junk bytes"))
    # Fails after decoding (not UTF-8 text): its original is the re-framed MediaRecord.
    bad_text = media_record("t2", "bob", b"Bob Stone \xff\xfe")
    msgs.append(KafkaMessage("veil.raw", 0, 2, 0, b"bob", framed(bad_text)))
    options = PipelineOptions(
        [
            f"--runner={LOCAL_RUNNER}",
            f"--veil_policy={tmp / 'policy.yaml'}",
            f"--veil_key_store={config.store}",
            f"--veil_keyring={config.keyring}",
            f"--veil_master_key_env={MASTER_ENV}",
        ]
    )
    pipeline = beam.Pipeline(options=options)
    build(pipeline, options, source=beam.Create(msgs), sink=_ToFile(tmp / "out.jsonl"))
    pipeline.run().wait_until_finish()
    out = []
    for line in (tmp / "out.jsonl").read_text().splitlines():
        topic, value = json.loads(line)
        out.append((topic, catalog().decode(base64.b64decode(value))[1]))
    return config, out


def _policy_path(config) -> Path:
    return Path(config.store).parent / "policy.yaml"


def test_graph_publishes_protected_fields(graph_run):
    config, out = graph_run
    sanitized = [v for t, v in out if t == "veil.sanitized.text"]
    assert len(sanitized) == 1
    record = sanitized[0]
    assert b"John Smith" not in record["payload"] and b"<PERSON:protected>" in record["payload"]
    assert [p["field_path"] for p in record["protected"]] == ["payload[5:15]"]
    envelope = record["protected"][0]["envelope"]
    assert b"John Smith" not in envelope
    service = fresh_service(config)
    assert record["record_id"] == opaque("t1")  # never the producer's id
    policy = RevealPolicy.load(_policy_path(config))
    classification = record["classification"]
    binding = protection_binding(
        classification["sensitivity"], classification["regimes"], policy.version, policy.digest
    )
    ctx = service.context(record["record_id"], "alice", "payload[5:15]")
    assert service.decrypt(
        envelope, ctx._replace(schema_version=BOUND_SCHEMA, binding=binding)
    ) == (b"John Smith")
    events = [v for t, v in out if t == "veil.audit" and v["record_id"] == record["record_id"]]
    assert len(events) == 1  # one audit event per record, listing its steps
    audits = [s for s in steps_of(events[0]) if s["stage"] == "protect"]
    assert len(audits) == 1 and audits[0]["key_id"] == service.subject_key_id("alice")
    assert audits[0]["key_version"] == 1
    assert (events[0]["key_id"], events[0]["key_version"]) == (audits[0]["key_id"], 1)


def test_graph_dead_letter_original_is_encrypted(graph_run):
    config, out = graph_run
    dead = [v for t, v in out if t == "veil.dead-letter" and v["source"]["offset"] == 1]
    assert len(dead) == 1 and dead[0]["original_key_id"] == "veil:dead-letter"
    assert b"junk bytes" not in dead[0]["original"]
    service = fresh_service(config)
    ctx = service.dead_letter_context("veil.raw/0/1")
    assert service.decrypt(dead[0]["original"], ctx) == b"junk bytes"
    events = [v for t, v in out if t == "veil.audit" and v["action"] == "DEAD_LETTERED"]
    assert events[0]["key_id"] == "veil:dead-letter"


def test_graph_later_stage_dead_letter_keeps_the_record_encrypted(graph_run):
    config, out = graph_run
    dead = [v for t, v in out if t == "veil.dead-letter" and v["source"]["offset"] == 2]
    assert len(dead) == 1 and dead[0]["error_code"] == "TEXT_DECODE_ERROR"
    assert b"Bob Stone" not in dead[0]["original"]
    service = fresh_service(config)
    assert dead[0]["original_key_id"] == service.subject_key_id("bob")
    original = service.open_dead_letter(dead[0]["original"], "veil.raw/0/2")
    # Sealed under bob's own key: his erasure reaches it.
    assert service.envelope_key(dead[0]["original"])[0] == service.subject_key_id("bob")
    _, record = catalog().decode(original)  # framed: `veil produce` can replay it
    assert (record["record_id"], record["payload"]) == (opaque("t2"), b"Bob Stone \xff\xfe")


def test_reveal_allowed_denied_and_erased(graph_run):
    config, out = graph_run
    record = next(v for t, v in out if t == "veil.sanitized.text")
    service = fresh_service(config)
    policy = RevealPolicy.load(_policy_path(config))  # the pipeline's policy
    fields, event = reveal_record(service, policy, record, "ana", "privacy-officer")
    assert fields == [("payload[5:15]", b"John Smith")]
    assert (event["action"], event["outcome"], event["reason_code"]) == (
        "REVEALED",
        "OK",
        "ana/privacy-officer:unauthenticated",  # sealed before any role had a key
    )
    fields, event = reveal_record(service, policy, record, "bob", "analyst")
    assert fields == [] and event["action"] == "REVEAL_DENIED" and event["outcome"] == "FAILED"
    for ev in (event,):
        assert "John" not in json.dumps(ev, default=str)
    catalog().encode("AuditEvent", event)  # a valid AuditEvent


def test_reveal_cli_and_forget(graph_run, tmp_path, capsys):
    from veil.pipelines.cli import main

    config, out = graph_run
    record = next(v for t, v in out if t == "veil.sanitized.text")
    doc = dict(record, payload=record["payload"].decode())
    doc["protected"] = [
        {"field_path": p["field_path"], "envelope": base64.b64encode(p["envelope"]).decode()}
        for p in record["protected"]
    ]
    path, audit = tmp_path / "records.jsonl", tmp_path / "audit.jsonl"
    path.write_text(json.dumps({"value": doc}) + "\n")
    common = [
        "--store",
        config.store,
        "--keyring",
        config.keyring,
        "--master-key-env",
        MASTER_ENV,
        "--audit-log",
        str(audit),
    ]
    pinned = ["--policy", str(_policy_path(config))]
    assert (
        main(
            [
                "reveal",
                str(path),
                "--principal",
                "ana",
                "--role",
                "privacy-officer",
                *common,
                *pinned,
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["value"] == "John Smith"
    assert (
        main(["reveal", str(path), "--principal", "eve", "--role", "analyst", *common, *pinned])
        == 1
    )
    assert main(["keys", "forget", "alice", *common]) == 0
    assert main(["keys", "list", *common]) == 0
    listing = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"key_id": listing[0]["key_id"], "destroyed": 1} == listing[0]
    assert {"key_id": listing[0]["key_id"], "state": "erased"} in listing
    assert "alice" not in json.dumps(listing)
    capsys.readouterr()
    assert (
        main(
            [
                "reveal",
                str(path),
                "--principal",
                "ana",
                "--role",
                "privacy-officer",
                *common,
                *pinned,
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == ""
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [e["action"] for e in events] == [
        "REVEALED",
        "REVEAL_DENIED",
        "KEYS_DESTROYED",
        "REVEAL_FAILED",
    ]
    assert "John Smith" not in audit.read_text() and "alice" not in audit.read_text()
    fresh = fresh_service(config)
    with pytest.raises(DecryptionError):
        fresh.decrypt(
            record["protected"][0]["envelope"],
            EnvelopeContext("t1", listing[0]["key_id"], "payload[5:15]"),
        )
