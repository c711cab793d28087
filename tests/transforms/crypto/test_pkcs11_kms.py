"""The PKCS#11 backend against a SoftHSM2 token created in a temp dir.

``make test`` installs SoftHSM2 through deploy/setup-hsm.sh.
"""

from __future__ import annotations

import os

import pytest
from crypto_testing import fresh_service

from veil.transforms.crypto import DecryptionError, KeyServiceConfig, Pkcs11Kms
from veil.transforms.crypto.kms import SOFTHSM_MODULE as MODULE
from veil.transforms.crypto.kms import init_softhsm_token

PIN_ENV = "VEIL_TEST_HSM_PIN"


@pytest.fixture(scope="module")
def token(tmp_path_factory):
    if not init_softhsm_token(tmp_path_factory.mktemp("softhsm"), "veil-test", "87654321"):
        pytest.fail("SoftHSM2 is missing: run deploy/setup-hsm.sh (make test does)")
    os.environ[PIN_ENV] = "87654321"
    return "veil-test"


def test_wrap_unwrap_rotate_retire(token):
    kms = Pkcs11Kms(MODULE, token, PIN_ENV)
    dek = os.urandom(32)
    version, wrapped = kms.wrap(dek, b"aad")
    assert version == 1 and dek not in wrapped
    assert kms.unwrap(version, wrapped, b"aad") == dek
    with pytest.raises(DecryptionError):
        kms.unwrap(version, wrapped, b"other aad")
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(DecryptionError):
        kms.unwrap(version, tampered, b"aad")
    assert kms.rotate() == 2 and kms.primary_version() == 2
    assert kms.unwrap(1, wrapped, b"aad") == dek  # old versions still unwrap
    kms.retire(1)
    with pytest.raises(DecryptionError):
        kms.unwrap(1, wrapped, b"aad")


def test_key_service_on_the_hsm(token, tmp_path):
    config = KeyServiceConfig(
        store=str(tmp_path / "keys.db"),
        backend="pkcs11",
        pkcs11_module=MODULE,
        pkcs11_token=token,
        pkcs11_pin_env=PIN_ENV,
    )
    service = fresh_service(config)
    ctx = service.context("r1", "patient-9", "$.name")
    env = service.encrypt(b"Jane Doe", ctx)
    assert service.decrypt(env, ctx) == b"Jane Doe"
    result = service.rotate_kek()
    service.clear_cache()
    assert result["rewrapped"] >= 2 and service.decrypt(env, ctx) == b"Jane Doe"
    service.forget("patient-9")
    with pytest.raises(DecryptionError):
        service.decrypt(env, ctx)
