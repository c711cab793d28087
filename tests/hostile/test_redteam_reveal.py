"""Red team: reveal bypasses (issue 18, item 2) and reveal/forget audit logs (issue 19).

Each bypass once printed the originals: a caller's own policy file, a record whose
``regimes`` were edited, a forged ``policy_version``. Envelopes are now bound to the
record's classification and to the pipeline policy's version and digest, so each
attempt reveals nothing; every attempt is a chained, MACed audit event that ``veil
audit verify`` checks.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
from pathlib import Path

import pytest
from redteam import by_topic, leaks, policy_file, run_graph
from veil_testing import framed, media_record, message

from veil.pipelines.cli import main
from veil.transforms.crypto import KeyServiceConfig, LocalKeyring
from veil.transforms.keys import write_key_file

NAME, CARD = "John Smith", "4111 1111 1111 1111"
MASTER_ENV = "VEIL_REDTEAM_MASTER_KEY"


def local_config(tmp: Path) -> KeyServiceConfig:
    os.environ[MASTER_ENV] = secrets.token_hex(32)
    LocalKeyring.create(tmp / "keyring.json", MASTER_ENV)
    return KeyServiceConfig(
        store=str(tmp / "keys.db"), keyring=str(tmp / "keyring.json"), master_key_env=MASTER_ENV
    )


def _pipeline_policy(policy):
    policy["anonymize"]["text"]["entities"] = {"PERSON": "encrypt", "CREDIT_CARD": "encrypt"}
    policy["reidentification"] = {
        "default": ["privacy-officer"],
        "regimes": {"GDPR": ["privacy-officer"], "PCI": []},  # cards: nobody
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reveal")
    config = local_config(tmp)
    policy = policy_file(tmp, _pipeline_policy)
    audit_key = write_key_file(tmp / "audit.key")
    os.environ["VEIL_AUDIT_KEY_FILE"] = str(audit_key)
    msgs = [
        message(framed(media_record("p1", "alice", f"Call {NAME} today.".encode())), 0, b"alice"),
        message(
            framed(media_record("c1", "alice", f"{NAME} paid with {CARD}.".encode())), 1, b"alice"
        ),
    ]
    writes, _ = run_graph(
        msgs,
        f"--veil_policy={policy}",
        f"--veil_key_store={config.store}",
        f"--veil_keyring={config.keyring}",
        f"--veil_master_key_env={MASTER_ENV}",
        "--veil_step_isolation=off",
        tmp=tmp,
    )
    assert leaks(writes, NAME) == [] and leaks(writes, CARD) == []
    records = {w.record["source"]["offset"]: w.record for w in by_topic(writes, ".sanitized.text")}
    assert set(records) == {0, 1} and all(r["protected"] for r in records.values())
    yield tmp, config, policy, records, audit_key
    os.environ.pop("VEIL_AUDIT_KEY_FILE", None)


def _doc(record) -> dict:
    doc = dict(record, payload=record["payload"].decode())
    doc["protected"] = [
        {"field_path": p["field_path"], "envelope": base64.b64encode(p["envelope"]).decode()}
        for p in record["protected"]
    ]
    return doc


def _reveal(setup, doc, role, policy, capsys, tag):
    tmp, config, _, _, _ = setup
    path = tmp / f"in-{tag}.jsonl"
    path.write_text(json.dumps({"value": doc}) + "\n")
    capsys.readouterr()
    code = main(
        [
            "reveal",
            str(path),
            "--principal",
            "mallory",
            "--role",
            role,
            "--store",
            config.store,
            "--keyring",
            config.keyring,
            "--master-key-env",
            MASTER_ENV,
            "--audit-log",
            str(tmp / "audit.jsonl"),
            "--policy",
            str(policy),
        ]
    )
    return code, capsys.readouterr().out


def _own_policy(setup, tmp, version=None):
    """The attacker's policy: everyone may reveal everything."""

    def edit(policy):
        _pipeline_policy(policy)
        if version:
            policy["version"] = version
        everyone = ["privacy-officer", "analyst"]
        policy["reidentification"] = {
            "default": everyone,
            "regimes": {"GDPR": everyone, "PCI": everyone},
        }

    return policy_file(tmp, edit)


def test_control_pipeline_policy_reveals_the_name(setup, capsys):
    _, _, policy, records, _ = setup
    code, out = _reveal(setup, _doc(records[0]), "privacy-officer", policy, capsys, "ok")
    assert code == 0 and NAME in out


def test_pci_record_denied_to_everyone(setup, capsys):
    _, _, policy, records, _ = setup
    code, out = _reveal(setup, _doc(records[1]), "privacy-officer", policy, capsys, "pci")
    assert code == 1 and NAME not in out and "4111" not in out


def test_callers_own_policy_same_version_reveals_nothing(setup, capsys, tmp_path):
    own = _own_policy(setup, tmp_path)
    for offset in (0, 1):
        _, out = _reveal(setup, _doc(setup[3][offset]), "analyst", own, capsys, f"own{offset}")
        assert NAME not in out and "4111" not in out


def test_callers_own_policy_other_version_denied(setup, capsys, tmp_path):
    own = _own_policy(setup, tmp_path, version="attacker-1")
    code, out = _reveal(setup, _doc(setup[3][0]), "analyst", own, capsys, "ver")
    assert code == 1 and NAME not in out


def test_forged_policy_version_reveals_nothing(setup, capsys, tmp_path):
    own = _own_policy(setup, tmp_path, version="attacker-2")
    doc = _doc(setup[3][0])
    doc["policy_version"] = "attacker-2"
    _, out = _reveal(setup, doc, "analyst", own, capsys, "forged")
    assert NAME not in out


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c.update(regimes=[]),
        lambda c: c.update(regimes=["GDPR"]),
        lambda c: c.update(sensitivity="PUBLIC"),
    ],
    ids=["regimes-empty", "regimes-without-pci", "sensitivity"],
)
def test_edited_classification_reveals_nothing(setup, capsys, tamper):
    _, _, policy, records, _ = setup
    doc = copy.deepcopy(_doc(records[1]))
    tamper(doc["classification"])
    _, out = _reveal(setup, doc, "privacy-officer", policy, capsys, "tamper")
    assert NAME not in out and "4111" not in out


def test_reveal_and_forget_logs_verify(setup, capsys, tmp_path):
    tmp, config, policy, records, audit_key = setup
    log = tmp_path / "audit.jsonl"
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"value": _doc(records[0])}) + "\n")
    common = [
        "--store",
        config.store,
        "--keyring",
        config.keyring,
        "--master-key-env",
        MASTER_ENV,
        "--audit-log",
        str(log),
    ]
    reveal = ["reveal", str(path), "--principal", "ana", "--policy", str(policy), *common]
    assert main([*reveal, "--role", "privacy-officer"]) == 0
    assert main([*reveal, "--role", "analyst"]) == 1
    assert main(["keys", "forget", "bob", *common]) == 0
    capsys.readouterr()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["action"] for e in events] == ["REVEALED", "REVEAL_DENIED", "KEYS_DESTROYED"]
    assert all(e["chain"] and e["chain"]["mac"] for e in events)
    assert all(isinstance(e["event_time"], str) and "T" in e["event_time"] for e in events)
    assert NAME not in log.read_text() and "bob" not in log.read_text()
    assert main(["audit", "verify", "--file", str(log), "--key", str(audit_key)]) == 0
    # ...and the check can fail: a deleted reveal event is found.
    lines = log.read_text().splitlines()
    lines.pop(0)
    log.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify", "--file", str(log), "--key", str(audit_key)]) == 1
