"""Helpers for the crypto tests: a local key service in a temp dir."""

from __future__ import annotations

import os

from veil.transforms.crypto import KeyServiceConfig, LocalKeyring

MASTER_ENV = "VEIL_TEST_MASTER_KEY"
MASTER_HEX = "11" * 32


def local_config(tmp_path, **overrides) -> KeyServiceConfig:
    """A fresh keyring + store under ``tmp_path`` (master key in an env variable)."""
    os.environ[MASTER_ENV] = MASTER_HEX
    keyring = tmp_path / "keyring.json"
    if not keyring.exists():
        LocalKeyring.create(keyring, MASTER_ENV)
    settings = {
        "store": str(tmp_path / "keys.db"),
        "keyring": str(keyring),
        "master_key_env": MASTER_ENV,
    }
    settings.update(overrides)
    return KeyServiceConfig(**settings)


def fresh_service(config: KeyServiceConfig):
    """A new ``KeyService`` (not the per-process shared one) for ``config``."""
    from veil.transforms.crypto.service import KeyService

    return KeyService(config.kms(), config.open_store(), config)
