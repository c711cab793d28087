"""``veil audit verify`` on the chained ``audit.jsonl`` that ``veil sanitize`` writes."""

from __future__ import annotations

import json

import pytest

from veil.pipelines.cli import main
from veil.transforms.keys import write_key_file


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """One ``veil sanitize`` run (MACs under a fresh audit key); its output dir and key."""
    root = tmp_path_factory.mktemp("audit-cli")
    key = str(write_key_file(root / "audit.key"))
    inputs = root / "in.jsonl"
    inputs.write_text(
        "".join(
            json.dumps(
                {"record_id": f"r{i}", "subject_key": "s", "payload": f"Call 212-555-01{i:02d}"}
            )
            + "\n"
            for i in range(4)
        )
        + "not json\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEIL_AUDIT_KEY_FILE", key)
        # The last line is not JSON: a dead letter, which exits 3 unless allowed.
        args = ["sanitize", str(inputs), "--out", str(root / "out"), "--allow-dead-letters"]
        assert main(args) == 0
    return root / "out", key


def _verify(capsys, *args) -> tuple[int, str]:
    code = main(["audit", "verify", *args])
    return code, capsys.readouterr().out


def test_sanitize_writes_a_chain_that_verifies(sanitized, capsys, monkeypatch):
    out, key = sanitized
    monkeypatch.delenv("VEIL_AUDIT_KEY_FILE", raising=False)
    code, text = _verify(capsys, "--file", str(out / "audit.jsonl"), "--key", key)
    assert code == 0, text
    assert "OK: 1 chain(s)" in text and "0 unsigned" in text
    # Without the key only the links are checked, and it says so.
    assert _verify(capsys, "--file", str(out / "audit.jsonl"))[0] == 0


def test_tampering_with_the_file_fails_and_says_where(sanitized, capsys, tmp_path, monkeypatch):
    out, key = sanitized
    monkeypatch.delenv("VEIL_AUDIT_KEY_FILE", raising=False)
    lines = (out / "audit.jsonl").read_text().splitlines()
    event = json.loads(lines[3])
    event["action"] = "NOTHING_HAPPENED"
    lines[3] = json.dumps(event)
    path = tmp_path / "tampered.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, text = _verify(capsys, "--file", str(path), "--key", key)
    assert code == 1
    assert "BAD_MAC" in text and f"{path}:4" in text
    assert "FAILED: 2 problem(s)" in text  # its MAC, and the next event's link


def test_usage_errors(capsys, tmp_path):
    assert main(["audit", "verify", "--file", str(tmp_path / "missing.jsonl")]) == 2
    (tmp_path / "a.jsonl").write_text("")
    assert main(["audit", "verify", "--file", str(tmp_path / "a.jsonl"), "--expect-head", "x"]) == 2
    assert (
        main(
            [
                "audit",
                "verify",
                "--file",
                str(tmp_path / "a.jsonl"),
                "--key",
                str(tmp_path / "nokey"),
            ]
        )
        == 2
    )
