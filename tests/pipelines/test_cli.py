"""The ``veil`` command line, run as the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from veil_testing import opaque

VEIL = str(Path(sys.executable).with_name("veil"))
if not Path(VEIL).exists():  # pragma: no cover - a venv without the console script
    VEIL = "/work/main/.venv/bin/veil"

PII = ("John Smith", "john.smith@example.com", "212-555-0175", "4111 1111 1111 1111")


def veil(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [VEIL, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def test_top_level_help():
    done = veil("--help")
    assert done.returncode == 0, done.stderr
    for command in ("run", "produce", "consume", "sanitize", "topics", "demo"):
        assert command in done.stdout


def test_run_help_lists_veil_flags():
    done = veil("run", "--help")
    assert done.returncode == 0, done.stderr
    assert "--veil_bootstrap_servers" in done.stdout
    assert "--veil_policy" in done.stdout
    assert "DirectRunner is refused" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--runner", "DirectRunner"], "Prism"),
        (["run", "--runner=DirectRunner"], "Prism"),
        (["run", "--veil_bootstrap_servers=nohostport"], "--veil_bootstrap_servers"),
        (["run", "--veil_max_payload_bytes=0"], "--veil_max_payload_bytes"),
        (["sanitize", "missing.txt", "--out", "d"], "missing.txt: no such file"),
    ],
    ids=["direct-runner", "direct-runner-equals", "bad-bootstrap", "bad-limit", "missing-input"],
)
def test_usage_errors_exit_2_with_one_line(args, message, tmp_path):
    done = veil(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("veil: error: ")
    assert message in lines[0]
    assert not (tmp_path / "d").exists()


TEXT_FILE = "Contact John Smith at john.smith@example.com or 212-555-0175.\n"
JSONL_LINES = [
    json.dumps(
        {
            "record_id": "j1",
            "subject_key": "alice",
            "payload": "Card 4111 1111 1111 1111, ask for John Smith.",
            "attributes": {"channel": "chat"},
        }
    ),
    '{"record_id": "j2", "subject_key": "bob", "payload": "broken',
    json.dumps(
        {
            "record_id": "j3",
            "subject_key": "carol",
            "content_type": "application/json",
            "payload": json.dumps({"name": "Carol", "email": "carol@example.com"}),
        }
    ),
]


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """Runs ``veil sanitize`` once on a .txt and a 3-line .jsonl; returns paths and result."""
    work = tmp_path_factory.mktemp("sanitize")
    (work / "notes.txt").write_text(TEXT_FILE, encoding="utf-8")
    (work / "records.jsonl").write_text("\n".join(JSONL_LINES) + "\n", encoding="utf-8")
    out = work / "out"
    done = veil("sanitize", work / "notes.txt", work / "records.jsonl", "--out", out, cwd=work)
    return work, out, done


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_sanitize_exits_0_and_summarizes(sanitized):
    work, out, done = sanitized
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"4 record(s): 3 sanitized, 1 dead-lettered; outputs in {out}")
    assert done.stderr.strip() == f"input error: {work / 'records.jsonl'}:2: JSONDecodeError"
    assert sorted(p.name for p in out.iterdir()) == [
        "audit.jsonl",
        "dead-letter.jsonl",
        "notes.txt",
        "records.jsonl",
    ]


def test_sanitize_plain_file(sanitized):
    _, out, _ = sanitized
    text = (out / "notes.txt").read_text(encoding="utf-8")
    assert [raw for raw in PII if raw in text] == []
    assert "<EMAIL_ADDRESS>" in text and "<PERSON>" in text


def test_sanitize_jsonl(sanitized):
    work, out, _ = sanitized
    records = _jsonl(out / "records.jsonl")
    assert [r["record_id"] for r in records] == [opaque("j1"), opaque("j3")]
    record = records[0]
    assert [raw for raw in PII if raw in record["payload"]] == []
    assert "<CREDIT_CARD>" in record["payload"]
    assert record["modality"] == "text"
    assert record["classification"]["sensitivity"] == "RESTRICTED"
    assert "PCI" in record["classification"]["regimes"]
    assert record["source"] == {"topic": str(work / "records.jsonl"), "partition": 0, "offset": 0}
    structured = records[1]
    assert structured["modality"] == "structured"
    assert json.loads(structured["payload"]) == {
        "name": "<PERSON>",
        "email": "<EMAIL_ADDRESS>",
    }
    assert structured["classification"]["entity_counts"] == {"EMAIL_ADDRESS": 1, "PERSON": 1}


def test_sanitize_dead_letters(sanitized):
    work, out, _ = sanitized
    dead = _jsonl(out / "dead-letter.jsonl")
    assert [
        (d["record_id"], d["source"]["offset"], d["stage"], d["error_code"], d["original"])
        for d in dead
    ] == [
        (None, 1, "decode", "BAD_FRAMING", None),
    ]
    assert all(d["source"]["topic"] == str(work / "records.jsonl") for d in dead)


def test_sanitize_every_input_is_accounted_for(sanitized):
    """sanitized + dead letters == inputs, and the audit log covers every input."""
    work, out, _ = sanitized
    sanitized_ids = [r["record_id"] for r in _jsonl(out / "records.jsonl")]
    sanitized_ids += ["notes.txt"] if (out / "notes.txt").read_text() else []
    dead = _jsonl(out / "dead-letter.jsonl")
    inputs = 1 + len(JSONL_LINES)
    assert len(sanitized_ids) + len(dead) == inputs

    audit = _jsonl(out / "audit.jsonl")
    final = {}
    for event in audit:
        source = (event["source"]["topic"], event["source"]["offset"])
        if event["action"] in ("PUBLISHED", "DEAD_LETTERED"):
            assert source not in final, f"two terminal events for {source}"
            final[source] = event["action"]
    assert final == {
        (str(work / "notes.txt"), 0): "PUBLISHED",
        (str(work / "records.jsonl"), 0): "PUBLISHED",
        (str(work / "records.jsonl"), 1): "DEAD_LETTERED",
        (str(work / "records.jsonl"), 2): "PUBLISHED",
    }
    audit_text = (out / "audit.jsonl").read_text(encoding="utf-8")
    assert [raw for raw in PII if raw in audit_text] == []
