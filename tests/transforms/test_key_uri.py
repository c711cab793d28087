"""Key URIs (``veil.transforms.key_uri``): each scheme, the old forms as aliases, and a
clear error for anything else; resolved keys are the real key sources (key file, local
keyring, SoftHSM2 token)."""

from __future__ import annotations

import pytest

from veil.transforms.key_uri import (
    KeyUri,
    KeyUriError,
    is_key_service_uri,
    key_service_config,
    parse_key_uri,
    resolve,
    secret_keys,
)
from veil.transforms.keys import FileKeys, KeyUnavailable, NoKeys, keys_from_config, write_key_file


@pytest.mark.parametrize(
    "text, scheme, target",
    [
        ("file:/etc/veil/p.key", "file", "/etc/veil/p.key"),
        ("file:///etc/veil/p.key", "file", "/etc/veil/p.key"),
        ("FILE:/etc/veil/p.key", "file", "/etc/veil/p.key"),
        ("/etc/veil/p.key", "file", "/etc/veil/p.key"),  # alias: a bare path
        ("keys/p.key", "file", "keys/p.key"),
        ("./a:b.key", "file", "./a:b.key"),
        ("  env:VEIL_PSEUDONYM_KEY_FILE ", "env", "VEIL_PSEUDONYM_KEY_FILE"),
        ("kms:local?store=/s.db&keyring=/k.json", "kms", "local?store=/s.db&keyring=/k.json"),
        ("pkcs11:token=veil?module-path=/lib/x.so&store=/s.db", "pkcs11",
         "token=veil?module-path=/lib/x.so&store=/s.db"),
    ],
)  # fmt: skip
def test_each_scheme_parses(text, scheme, target):
    assert parse_key_uri(text) == KeyUri(scheme, target)


@pytest.mark.parametrize(
    "text, message",
    [
        ("s3:bucket/key", "unknown key URI scheme 's3:' (known: file:, env:, kms:, pkcs11:)"),
        ("kafka://keys", "unknown key URI scheme 'kafka:'"),
        ("vault:secret/0011223344", "unknown key URI scheme 'vault:'"),
        ("", "non-empty"),
        ("file:", "needs a path"),
        ("env:", "needs a variable name"),
        ("env:1BAD", "needs a variable name"),
        ("kms:local?keyring=/k.json", "needs store=PATH"),
        ("kms:local?store=/s.db&bogus=1", "unknown key-service setting 'bogus'"),
        ("pkcs11:token=veil", "needs token=LABEL and ?module-path=LIBRARY"),
        ("pkcs11:token=veil?module-path=/x.so&store=/s&pin-value=1234", "never pin-value"),
        ("pkcs11:token=veil?module-path=/x.so&store=/s&pin-source=file:/pin", "env:NAME"),
    ],
)
def test_unknown_or_malformed_uris_are_clear_errors(text, message):
    with pytest.raises(KeyUriError) as caught:
        parse_key_uri(text)
    assert message in str(caught.value)
    assert "0011223344" not in str(caught.value) and "1234" not in str(caught.value)


def test_env_is_followed_once(tmp_path):
    path = str(tmp_path / "p.key")
    assert resolve("env:K", {"K": path}) == KeyUri("file", path)
    assert resolve("env:K", {"K": f"file:{path}"}) == KeyUri("file", path)
    assert resolve("env:K", {}) is None and resolve(None) is None
    with pytest.raises(KeyUriError, match=r"\$K names another variable"):
        resolve("env:K", {"K": "env:OTHER"})


def test_file_and_env_give_the_key_file(tmp_path, monkeypatch):
    path = write_key_file(tmp_path / "p.key")
    want = FileKeys(path).key_for("pseudonym")
    monkeypatch.setenv("VEIL_TEST_URI_KEY", f"file:{path}")
    for ref in (f"file:{path}", f"file://{path}", str(path), "env:VEIL_TEST_URI_KEY"):
        assert secret_keys(ref).key_for("pseudonym") == want
    # the old two-setting form (file, else the variable) goes through the same door
    assert keys_from_config(None, "VEIL_TEST_URI_KEY").key_for("pseudonym") == want
    assert keys_from_config(f"file:{path}", "UNSET_VAR").key_for("pseudonym") == want


@pytest.mark.parametrize("ref", [None, "env:VEIL_TEST_UNSET_KEY", "s3:bucket/key"])
def test_nothing_or_a_bad_uri_fails_closed_on_the_worker(ref, monkeypatch):
    monkeypatch.delenv("VEIL_TEST_UNSET_KEY", raising=False)
    keys = secret_keys(ref)
    assert isinstance(keys, NoKeys)
    with pytest.raises(KeyUnavailable):
        keys.key_for("pseudonym")


def test_kms_uri_opens_the_key_service(tmp_path, monkeypatch):
    from veil.transforms.crypto import LocalKeyring

    monkeypatch.setenv("VEIL_TEST_URI_MASTER", "22" * 32)
    LocalKeyring.create(tmp_path / "keyring.json", "VEIL_TEST_URI_MASTER")
    uri = (
        f"kms:local?store={tmp_path / 'keys.db'}&keyring={tmp_path / 'keyring.json'}"
        "&master_key_env=VEIL_TEST_URI_MASTER"
    )
    assert is_key_service_uri(uri) and not is_key_service_uri(str(tmp_path / "keys.db"))
    config = key_service_config(uri)
    assert (config.backend, config.store) == ("local", str(tmp_path / "keys.db"))
    keys = secret_keys(uri)
    assert keys.key_id.startswith("kms:") and len(keys.key_for("pseudonym")) == 32
    assert keys.key_for_subject("pseudonym", "a") != keys.key_for_subject("pseudonym", "b")


_PKCS11_CHECK = """
import os, sys
from veil.transforms.crypto.kms import SOFTHSM_MODULE, init_softhsm_token
from veil.transforms.key_uri import key_service_config, secret_keys

if not init_softhsm_token(sys.argv[1] + "/softhsm", "veil-uri", "24681357"):
    sys.exit(3)
os.environ["VEIL_TEST_URI_PIN"] = "24681357"
uri = (f"pkcs11:token=veil-uri?module-path={SOFTHSM_MODULE}"
       f"&pin-source=env:VEIL_TEST_URI_PIN&store={sys.argv[1]}/keys.db")
config = key_service_config(uri)
assert (config.backend, config.pkcs11_token, config.pkcs11_pin_env) == (
    "pkcs11", "veil-uri", "VEIL_TEST_URI_PIN"), config
assert config.pkcs11_module == SOFTHSM_MODULE and "24681357" not in repr(config)
keys = secret_keys(uri)
assert keys.key_id.startswith("kms:"), keys.key_id
assert len(keys.key_for_subject("pseudonym", "s")) == 32
print("ok")
"""


def test_pkcs11_uri_is_the_key_service_on_the_hsm(tmp_path):
    """In a fresh process: SoftHSM2 reads its token directory once per process."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PKCS11_CHECK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode == 3:
        pytest.fail("SoftHSM2 is missing: run deploy/setup-hsm.sh (make test does)")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
