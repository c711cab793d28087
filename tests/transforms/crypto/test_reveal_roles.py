"""Role-sealed envelopes (issue 18): grants per allowed role, key pins, erasure.

Local role keyrings here (fast); the PKCS#11 token per role is exercised end to end by
``tests/hostile/test_redteam_reveal.py``.
"""

from __future__ import annotations

import os
import secrets

import pytest
from crypto_testing import fresh_service, local_config
from veil_testing import media_record

from veil.transforms.crypto import DecryptionError, aead
from veil.transforms.crypto.kms import KmsError, LocalRoleKey
from veil.transforms.crypto.protect import protect_item
from veil.transforms.crypto.reveal import RevealPolicy, reveal_record
from veil.transforms.records import Classification, Source, WorkItem

SECTION = {
    "default": ["officer"],
    "regimes": {"GDPR": ["officer", "dpo"], "HIPAA_PHI": ["dpo"], "PCI": []},
}


def _item(regimes, subject="alice"):
    return WorkItem(
        source=Source("veil.raw", 0, 7),
        record=media_record("rec-1", subject, b"x"),
        modality="text",
        pending_protection=[("payload", b"John Smith")],
        classification=Classification("RESTRICTED", list(regimes), {"PERSON": 1}),
    )


@pytest.fixture()
def roles(tmp_path):
    keys = {}
    for role in ("officer", "dpo", "analyst"):
        env = f"VEIL_TEST_ROLE_{role.upper()}"
        os.environ[env] = secrets.token_hex(32)
        keys[role] = LocalRoleKey.create(tmp_path / f"{role}.json", role, env)
    return keys


def _record(item, pins):
    return {
        "record_id": item.record_id,
        "policy_version": pins[0],
        "classification": {"sensitivity": "RESTRICTED", "regimes": item.classification.regimes},
        "protected": item.protected,
        "source": {"topic": "t", "partition": 0, "offset": 7},
        "modality": "text",
    }


@pytest.mark.parametrize(
    "regimes,granted",
    [([], ["officer"]), (["GDPR"], ["dpo", "officer"]), (["GDPR", "HIPAA_PHI"], ["dpo"]),
     (["PCI"], []), (["GDPR", "PCI"], [])],
)  # fmt: skip
def test_grants_follow_the_policy(tmp_path, roles, regimes, granted):
    service = fresh_service(local_config(tmp_path))
    for role, key in roles.items():
        service.register_role(role, key.public_der)
    pins = ("v1", "d" * 64, SECTION)
    item = protect_item(service, _item(regimes), pins)
    envelope = item.protected[0]["envelope"]
    assert sorted(aead.parse_role_envelope(envelope)[2]) == granted
    assert item.trail[-1].entity_counts["role_grants"] == len(granted)
    policy = RevealPolicy.from_pins(pins)
    for role, key in roles.items():
        fields, event = reveal_record(service, policy, _record(item, pins), "p", role, key)
        expect = [("payload", b"John Smith")] if role in granted else []
        assert fields == expect, role
        if role in granted:
            assert event["reason_code"] == f"p/{role}"
        # Without the role's key nothing opens, whatever role is typed.
        fields, event = reveal_record(service, policy, _record(item, pins), "p", role)
        assert fields == [] and event["action"] == "REVEAL_DENIED"


def test_no_role_keys_means_plain_envelopes(tmp_path):
    service = fresh_service(local_config(tmp_path))
    item = protect_item(service, _item(["GDPR"]), ("v1", "d" * 64, SECTION))
    assert not aead.is_role_envelope(item.protected[0]["envelope"])


def test_key_pin_drops_a_substituted_key(tmp_path, roles):
    service = fresh_service(local_config(tmp_path))
    service.register_role("officer", roles["analyst"].public_der)  # substituted
    service.register_role("dpo", roles["dpo"].public_der)
    section = dict(
        SECTION,
        role_keys={
            "officer": aead.public_key_fingerprint(roles["officer"].public_der),
            "dpo": aead.public_key_fingerprint(roles["dpo"].public_der),
        },
    )
    item = protect_item(service, _item(["GDPR"]), ("v1", "d" * 64, section))
    assert sorted(aead.parse_role_envelope(item.protected[0]["envelope"])[2]) == ["dpo"]
    listing = {r["key_id"]: r for r in service.list_keys()}
    assert listing["veil:role:dpo"]["fingerprint"] == section["role_keys"]["dpo"]


def test_role_envelope_binding_and_tampering(tmp_path, roles):
    dek = aead.new_key()
    grants = {"officer": roles["officer"].public_der, "dpo": roles["dpo"].public_der}
    env = aead.seal_for_roles(dek, "s:ab", 3, b"Jane", b"ctx", grants)
    _, _, wrapped, _ = aead.parse_role_envelope(env)
    secret = roles["officer"].unwrap(wrapped["officer"])
    assert aead.open_role_envelope(dek, env, b"ctx", secret) == b"Jane"
    assert roles["dpo"].unwrap(wrapped["dpo"]) == secret
    with pytest.raises(DecryptionError):
        roles["analyst"].unwrap(wrapped["officer"])
    with pytest.raises(DecryptionError):
        aead.open_role_envelope(dek, env, b"other", secret)
    with pytest.raises(DecryptionError):
        aead.open_role_envelope(aead.new_key(), env, b"ctx", secret)
    for i in (2, 9, len(env) // 2, len(env) - 1):  # every byte, grants included, is bound
        bad = bytearray(env)
        bad[i] ^= 1
        with pytest.raises(DecryptionError):
            aead.open_role_envelope(dek, bytes(bad), b"ctx", secret)
    for cut in (3, 20, 100, len(env) - 40):
        with pytest.raises(DecryptionError):
            aead.parse_role_envelope(env[:cut])


def test_erasure_shreds_for_every_role(tmp_path, roles):
    service = fresh_service(local_config(tmp_path))
    for role, key in roles.items():
        service.register_role(role, key.public_der)
    pins = ("v1", "d" * 64, SECTION)
    item = protect_item(service, _item(["GDPR"], "bob"), pins)
    policy = RevealPolicy.from_pins(pins)
    assert reveal_record(service, policy, _record(item, pins), "p", "dpo", roles["dpo"])[0]
    service.forget("bob")
    fresh = fresh_service(local_config(tmp_path))
    for role in ("officer", "dpo"):
        fields, event = reveal_record(fresh, policy, _record(item, pins), "p", role, roles[role])
        assert fields == [] and event["action"] == "REVEAL_FAILED"


def test_local_role_keyring_refuses_wrong_secret(tmp_path):
    os.environ["VEIL_TEST_ROLE_X"] = secrets.token_hex(32)
    LocalRoleKey.create(tmp_path / "x.json", "x", "VEIL_TEST_ROLE_X")
    with pytest.raises(FileExistsError):
        LocalRoleKey.create(tmp_path / "x.json", "x", "VEIL_TEST_ROLE_X")
    assert oct(os.stat(tmp_path / "x.json").st_mode & 0o777) == "0o600"
    os.environ["VEIL_TEST_ROLE_X"] = secrets.token_hex(32)
    with pytest.raises(KmsError):
        LocalRoleKey(tmp_path / "x.json", "VEIL_TEST_ROLE_X")


def test_kek_rotation_leaves_role_keys_alone(tmp_path, roles):
    service = fresh_service(local_config(tmp_path))
    service.register_role("officer", roles["officer"].public_der)
    item = protect_item(service, _item([]), ("v1", "d" * 64, SECTION))
    service.rotate_kek(retire_old=True)
    service.clear_cache()
    assert service.role_public_key("officer") == roles["officer"].public_der
    policy = RevealPolicy.from_pins(("v1", "d" * 64, SECTION))
    fields, _ = reveal_record(
        service, policy, _record(item, ("v1",)), "p", "officer", roles["officer"]
    )
    assert fields == [("payload", b"John Smith")]
