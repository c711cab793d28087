"""A policy naming a Presidio recognizer file, on the real broker (``veil run``)."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from kafka_checks import finish, produce, raw_bytes, read_outputs, veil_run
from veil_testing import media_record, opaque

from veil.pipelines.topics import topic_specs
from veil.transforms.classification import default_policy_path
from veil.transforms.emit import TopicNames
from veil.transforms.kafkaio import ensure_topics

pytestmark = pytest.mark.integration

RECOGNIZERS = textwrap.dedent(
    """
    recognizers:
      - name: "Employee id recognizer"
        supported_language: "en"
        supported_entity: "EMPLOYEE_ID"
        patterns:
          - name: "acme employee id"
            regex: "\\\\bACME-[0-9]{6}\\\\b"
            score: 0.9
      - name: "Codenames"
        supported_language: "en"
        supported_entity: "CODENAME"
        deny_list: [Nightjar]
    """
)
VALUES = ("ACME-482913", "ACME-100200", "Nightjar")


def test_presidio_recognizer_file_on_the_broker(kafka_bootstrap, topic_prefix, tmp_path):
    (tmp_path / "acme.yaml").write_text(RECOGNIZERS, encoding="utf-8")
    raw = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    raw["text"]["recognizers"] = [{"presidio_yaml": "acme.yaml"}]
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(raw), encoding="utf-8")

    names = TopicNames(topic_prefix)
    ensure_topics({"bootstrap_servers": kafka_bootstrap}, topic_specs(names))
    texts = [
        "Door log: badge ACME-482913 opened the lab door.",
        "Project Nightjar is owned by badge ACME-100200.",
        "Nothing to see here.",
    ]
    records = [media_record(f"p-{i}", "subject-p", t.encode()) for i, t in enumerate(texts)]
    produce(kafka_bootstrap, names.raw, records)

    proc = veil_run(
        kafka_bootstrap, topic_prefix, "--veil_read_mode=bounded", f"--veil_policy={policy}"
    )
    code, logs = finish(proc, 300)
    assert code == 0, logs.decode(errors="replace")[-3000:]
    sanitized, dead, audit = read_outputs(kafka_bootstrap, names)
    assert dead == []
    assert len(sanitized) == len(texts)
    ids = {opaque(f"p-{i}"): f"p-{i}" for i in range(len(texts))}  # ids leave Veil opaque
    payloads = {ids[v["record_id"]]: v["payload"].decode() for _, v in sanitized}
    assert payloads["p-0"] == "Door log: badge <EMPLOYEE_ID> opened the lab door."
    assert "<CODENAME>" in payloads["p-1"] and "<EMPLOYEE_ID>" in payloads["p-1"]
    blobs = list(raw_bytes(sanitized, dead, audit))
    for value in VALUES:
        assert not any(value.encode() in blob for blob in blobs)
        assert value.encode() not in logs
    counts = {ids[v["record_id"]]: v["classification"]["entity_counts"] for _, v in sanitized}
    assert counts["p-0"] == {"EMPLOYEE_ID": 1}
