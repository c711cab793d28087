"""Red team: reveal bypasses (issue 18, item 2) and reveal/forget audit logs (issue 19).

Each bypass once printed the originals: a caller's own policy file, a record whose
``regimes`` were edited, a forged ``policy_version``, a role typed by the caller
(``--role privacy-officer --audit-log /dev/null``). Envelopes are now bound to the
record's classification and to the pipeline policy's version and digest, and, once
the roles have keys (``veil keys add-role``: one SoftHSM2 token per role here, or a
local role keyring), sealed to the roles the policy allows: typing a role without its
token's PIN opens nothing, and neither does the pipeline's own key service. Every
attempt is a chained, MACed audit event that ``veil audit verify`` checks.
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


# --- roles enforced by the role's key (PKCS#11 token per role; local role keyrings) ---

PO_PIN_ENV, AN_PIN_ENV = "VEIL_REDTEAM_PO_PIN", "VEIL_REDTEAM_AN_PIN"


def _keys(config):
    return [
        "--store", config.store, "--keyring", config.keyring, "--master-key-env", MASTER_ENV,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    """A pipeline run after the roles got keys: privacy-officer and analyst each on
    their own SoftHSM2 token (PINs in variables), auditor in a local role keyring."""
    from veil.transforms.crypto.kms import init_softhsm_token

    tmp = tmp_path_factory.mktemp("reveal-roles")
    config = local_config(tmp)
    for label, pin, env in (
        ("role-po", "31415926", PO_PIN_ENV),
        ("role-an", "27182818", AN_PIN_ENV),
    ):
        if not init_softhsm_token(tmp / "hsm", label, pin):
            pytest.fail("SoftHSM2 is missing: run deploy/setup-hsm.sh (make test does)")
        os.environ[env] = pin
    (tmp / "auditor.secret").write_text(secrets.token_hex(32))
    os.chmod(tmp / "auditor.secret", 0o600)

    def edit(policy):
        _pipeline_policy(policy)
        policy["reidentification"] = {
            "default": ["privacy-officer", "auditor"],
            "regimes": {"GDPR": ["privacy-officer", "auditor"], "PCI": []},
        }

    policy = policy_file(tmp, edit)
    audit_key = write_key_file(tmp / "audit.key")
    os.environ["VEIL_AUDIT_KEY_FILE"] = str(audit_key)
    for role, cred in (
        ("privacy-officer", ["--role-token", "role-po", "--role-pin-env", PO_PIN_ENV]),
        ("analyst", ["--role-token", "role-an", "--role-pin-env", AN_PIN_ENV]),
        ("auditor", ["--role-keyring", str(tmp / "auditor.json"),
                     "--role-secret-file", str(tmp / "auditor.secret")]),
    ):  # fmt: skip
        assert main(["keys", "add-role", role, *_keys(config), *cred]) == 0
    msgs = [
        message(framed(media_record("p1", "alice", f"Call {NAME} today.".encode())), 0, b"alice"),
        message(
            framed(media_record("c1", "alice", f"{NAME} paid with {CARD}.".encode())), 1, b"alice"
        ),
        message(framed(media_record("b1", "bob", b"Call Mary Jones today.")), 2, b"bob"),
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
    assert set(records) == {0, 1, 2} and all(r["protected"] for r in records.values())
    yield tmp, config, policy, records, audit_key
    os.environ.pop("VEIL_AUDIT_KEY_FILE", None)


def _reveal_as(sealed, offset, role, cred, capsys, audit_log=None):
    tmp, config, policy, records, _ = sealed
    path = tmp / f"in-{offset}.jsonl"
    path.write_text(json.dumps({"value": _doc(records[offset])}) + "\n")
    capsys.readouterr()
    log = audit_log or str(tmp / "audit.jsonl")
    before = len(Path(log).read_text().splitlines()) if os.path.isfile(log) else 0
    code = main(
        ["reveal", str(path), "--principal", "mallory", "--role", role, *_keys(config),
         "--audit-log", log, "--policy", str(policy), *cred]
    )  # fmt: skip
    out = capsys.readouterr().out
    events = []
    if os.path.isfile(log):
        events = [json.loads(line) for line in Path(log).read_text().splitlines()[before:]]
    return code, out, events


PO_TOKEN = ["--role-token", "role-po", "--role-pin-env", PO_PIN_ENV]


def test_roles_control_token_holder_reveals(sealed, capsys):
    code, out, events = _reveal_as(sealed, 0, "privacy-officer", PO_TOKEN, capsys)
    assert code == 0 and NAME in out
    assert [(e["action"], e["reason_code"]) for e in events] == [
        ("REVEALED", "mallory/privacy-officer")
    ]


def test_roles_envelopes_are_sealed_to_the_allowed_roles(sealed):
    from veil.transforms.crypto.aead import parse_role_envelope

    _, _, _, records, _ = sealed
    grants = {
        off: sorted(parse_role_envelope(r["protected"][0]["envelope"])[2])
        for off, r in records.items()
    }
    # GDPR record: the two allowed roles with keys; PCI record: nobody; never the analyst.
    assert grants == {0: ["auditor", "privacy-officer"], 1: [], 2: ["auditor", "privacy-officer"]}


def test_roles_typed_role_without_token_gets_nothing(sealed, capsys):
    code, out, events = _reveal_as(sealed, 0, "privacy-officer", [], capsys)
    assert code == 1 and NAME not in out and out == ""
    assert [(e["action"], e["reason_code"]) for e in events] == [
        ("REVEAL_DENIED", "ROLE_NOT_AUTHENTICATED:mallory/privacy-officer")
    ]
    assert all(e["chain"] and e["chain"]["mac"] for e in events)


@pytest.mark.parametrize(
    "cred",
    [
        ["--role-token", "role-po", "--role-pin-env", AN_PIN_ENV],  # wrong PIN
        ["--role-token", "role-an", "--role-pin-env", AN_PIN_ENV],  # own token, other role
        ["--role-token", "role-po", "--role-pin-env", "VEIL_REDTEAM_NO_SUCH_PIN"],
    ],
    ids=["wrong-pin", "analyst-token", "no-pin"],
)
def test_roles_wrong_pin_or_token_gets_nothing(sealed, capsys, cred):
    code, out, events = _reveal_as(sealed, 0, "privacy-officer", cred, capsys)
    assert code == 1 and out == ""
    assert [(e["action"], e["reason_code"]) for e in events] == [
        ("REVEAL_DENIED", "ROLE_AUTH_FAILED:mallory/privacy-officer")
    ]


def test_roles_own_token_with_a_key_labelled_for_the_role_gets_nothing(sealed, capsys):
    """Mallory makes a token of her own and a key pair labelled for privacy-officer."""
    from veil.transforms.crypto.kms import SOFTHSM_MODULE, Pkcs11RoleKey, init_softhsm_token

    tmp = sealed[0]
    assert init_softhsm_token(tmp / "hsm", "mallory", "11223344")
    os.environ["VEIL_REDTEAM_MALLORY_PIN"] = "11223344"
    Pkcs11RoleKey(
        SOFTHSM_MODULE, "mallory", "privacy-officer", "VEIL_REDTEAM_MALLORY_PIN", create=True
    ).close()
    cred = ["--role-token", "mallory", "--role-pin-env", "VEIL_REDTEAM_MALLORY_PIN"]
    code, out, events = _reveal_as(sealed, 0, "privacy-officer", cred, capsys)
    assert code == 1 and out == ""
    assert [(e["action"], e["reason_code"]) for e in events] == [
        ("REVEAL_DENIED", "ROLE_AUTH_FAILED:mallory/privacy-officer")
    ]


def test_roles_dev_null_audit_bypass_prints_nothing(sealed, capsys):
    # The bypass: typed role, audit to /dev/null. Refused, and would open nothing.
    tmp, config, policy, records, _ = sealed
    for cred in ([], ["--role-token", "role-po", "--role-pin-env", AN_PIN_ENV], PO_TOKEN):
        code, out, _ = _reveal_as(sealed, 0, "privacy-officer", cred, capsys, "/dev/null")
        assert code == 2 and out == ""


def test_roles_allowed_role_without_grant_and_disallowed_role(sealed, capsys):
    # The analyst holds its own token and PIN, but the policy allows it nothing.
    cred = ["--role-token", "role-an", "--role-pin-env", AN_PIN_ENV]
    code, out, events = _reveal_as(sealed, 0, "analyst", cred, capsys)
    assert code == 1 and out == "" and events[0]["action"] == "REVEAL_DENIED"
    # And PCI (nobody): even the privacy officer's token opens nothing.
    code, out, _ = _reveal_as(sealed, 1, "privacy-officer", PO_TOKEN, capsys)
    assert code == 1 and out == ""


def test_roles_pipeline_key_service_alone_opens_nothing(sealed):
    """Whoever holds the pipeline's KEK credential (keyring master key) gets the
    subject's data key, but not the role secret: no envelope opens."""
    from veil.transforms.crypto import DecryptionError
    from veil.transforms.crypto.aead import open_envelope, open_role_envelope
    from veil.transforms.crypto.kms import SOFTHSM_MODULE, Pkcs11RoleKey
    from veil.transforms.crypto.reveal import RevealPolicy, reveal_record
    from veil.transforms.crypto.service import (
        BOUND_SCHEMA,
        EnvelopeContext,
        KeyService,
        protection_binding,
    )

    tmp, config, policy_path, records, _ = sealed
    service = KeyService(config.kms(), config.open_store(), config)
    policy = RevealPolicy.load(policy_path)
    record = records[0]
    fields, event = reveal_record(service, policy, record, "pipeline", "privacy-officer")
    assert fields == [] and event["action"] == "REVEAL_DENIED"
    envelope = record["protected"][0]["envelope"]
    key_id, version = service.envelope_key(envelope)
    c = record["classification"]
    binding = protection_binding(c["sensitivity"], c["regimes"], policy.version, policy.digest)
    ctx = EnvelopeContext(record["record_id"], key_id, record["protected"][0]["field_path"],
                          BOUND_SCHEMA, binding)  # fmt: skip
    dek = service._prepared_key(key_id, version)  # what the KEK credential yields
    with pytest.raises(DecryptionError):
        service.decrypt(envelope, ctx)
    with pytest.raises(DecryptionError):
        open_envelope(dek, envelope, ctx.aad())
    for guess in (b"\x00" * 32, dek._commit_key):
        with pytest.raises(DecryptionError):
            open_role_envelope(dek, envelope, ctx.aad(), guess)
    # The analyst's token cannot open a grant made for the privacy officer either.
    analyst = Pkcs11RoleKey(SOFTHSM_MODULE, "role-an", "analyst", AN_PIN_ENV)
    try:
        with pytest.raises(DecryptionError):
            service.decrypt_for_role(envelope, ctx, analyst)
        analyst.role = "privacy-officer"  # claim the other role's grant
        with pytest.raises(DecryptionError):
            service.decrypt_for_role(envelope, ctx, analyst)
    finally:
        analyst.close()
    # Control: with the privacy officer's token the same context opens.
    po = Pkcs11RoleKey(SOFTHSM_MODULE, "role-po", "privacy-officer", PO_PIN_ENV)
    try:
        assert service.decrypt_for_role(envelope, ctx, po) == NAME.encode()
    finally:
        po.close()


def test_roles_local_role_keyring(sealed, capsys, tmp_path):
    tmp = sealed[0]
    good = [
        "--role-keyring",
        str(tmp / "auditor.json"),
        "--role-secret-file",
        str(tmp / "auditor.secret"),
    ]
    code, out, _ = _reveal_as(sealed, 0, "auditor", good, capsys)
    assert code == 0 and NAME in out
    (tmp_path / "wrong.secret").write_text(secrets.token_hex(32))
    os.chmod(tmp_path / "wrong.secret", 0o600)
    bad = [
        "--role-keyring",
        str(tmp / "auditor.json"),
        "--role-secret-file",
        str(tmp_path / "wrong.secret"),
    ]
    code, out, events = _reveal_as(sealed, 0, "auditor", bad, capsys)
    assert code == 1 and out == "" and events[0]["reason_code"].startswith("ROLE_AUTH_FAILED")
    # The auditor's keyring claimed for the privacy officer: refused.
    code, out, _ = _reveal_as(sealed, 0, "privacy-officer", good, capsys)
    assert code == 1 and out == ""


def test_roles_erasure_shreds_for_every_role(sealed, capsys):
    tmp, config, *_ = sealed
    code, out, _ = _reveal_as(sealed, 2, "privacy-officer", PO_TOKEN, capsys)
    assert code == 0 and "Mary Jones" in out
    assert (
        main(["keys", "forget", "bob", *_keys(config), "--audit-log", str(tmp / "audit.jsonl")])
        == 0
    )
    auditor = [
        "--role-keyring",
        str(tmp / "auditor.json"),
        "--role-secret-file",
        str(tmp / "auditor.secret"),
    ]
    for role, cred in (("privacy-officer", PO_TOKEN), ("auditor", auditor)):
        code, out, events = _reveal_as(sealed, 2, role, cred, capsys)
        assert out == "" and events[0]["action"] == "REVEAL_FAILED"


def test_roles_audit_log_verifies(sealed, capsys):
    tmp, *_, audit_key = sealed
    log = tmp / "audit.jsonl"
    assert main(["audit", "verify", "--file", str(log), "--key", str(audit_key)]) == 0
    assert NAME not in log.read_text() and "31415926" not in log.read_text()
