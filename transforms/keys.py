"""The one door to secret key material for Veil's keyed transforms.

Keyed pseudonyms, per-subject date shifts and per-subject pseudo-voices all need a
secret: without one, anyone could recompute the mapping from a subject key or a value.
``SecretKeys.key_for(scope)`` is the whole interface (the shape of the key service's
client). ``FileKeys`` is the local implementation: a key file on the worker (at least 32
random bytes, hex or raw, no group or other permissions), named by a path or by an
environment variable and read on the worker, never carried in pipeline options. Each
scope gets its own key, HMAC-SHA256(file key, "veil-key:" + scope), so one file never
reuses the same key for two purposes. ``key_id`` identifies a key in audit events
without revealing it. With no key, callers fail closed.

Example::

    write_key_file("/etc/veil/pseudonym.key")           # 0600, once, at set-up
    keys = keys_from_config(None, "VEIL_PSEUDONYM_KEY_FILE")
    key = keys.key_for("pseudonym")
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

KEY_BYTES = 32


class KeyUnavailable(Exception):
    """No usable key: not configured, unreadable, too short or too widely readable."""


class SubjectKeyErased(KeyUnavailable):
    """The subject's keys were crypto-shredded: its records are dead-lettered."""


class SecretKeys(abc.ABC):
    """Where keyed transforms get their secret keys."""

    @abc.abstractmethod
    def key_for(self, scope: str) -> bytes:
        """The secret key for ``scope``; raises ``KeyUnavailable``."""

    def key_for_subject(self, scope: str, subject_key: str) -> bytes:
        """The key for ``scope`` when processing ``subject_key``'s record.

        By default one key for every subject (``key_for``): pseudonyms link the same
        value across subjects. The key service overrides it with a per-subject secret
        that erasure destroys (raises ``SubjectKeyErased`` then).
        """
        return self.key_for(scope)

    @property
    def key_id(self) -> str:
        """A non-secret identifier of the key, for audit events."""
        return "none"


class NoKeys(SecretKeys):
    """No key configured: every keyed transform fails closed."""

    def key_for(self, scope: str) -> bytes:
        raise KeyUnavailable()


class FileKeys(SecretKeys):
    """A local key file with owner-only permissions; one derived key per scope."""

    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._master: bytes | None = None

    def _load(self) -> bytes:
        if self._master is None:
            try:
                info = self._path.stat()
                if not stat.S_ISREG(info.st_mode):
                    raise KeyUnavailable()
                if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                    _LOGGER.error("Key file is readable by others; refusing it")
                    raise KeyUnavailable()
                raw = self._path.read_bytes()
            except OSError:
                raise KeyUnavailable() from None
            text = raw.strip()
            if re.fullmatch(rb"(?:[0-9a-fA-F]{2})+", text):  # hex text (what write_key_file writes)
                raw = bytes.fromhex(text.decode())
            if len(raw) < KEY_BYTES:
                _LOGGER.error("Key file holds fewer than %d bytes; refusing it", KEY_BYTES)
                raise KeyUnavailable()
            self._master = raw
        return self._master

    def key_for(self, scope: str) -> bytes:
        return hmac.new(self._load(), f"veil-key:{scope}".encode(), hashlib.sha256).digest()

    @property
    def key_id(self) -> str:
        return "file:" + hashlib.sha256(b"veil-key-id" + self._load()).hexdigest()[:12]


class KeyNotConfigured(Exception):
    """No source names the key: neither a reference, its variable, nor a key service."""


def resolve_scoped_key(key_ref: str | None, key_service, env: str | None, scope: str, code: str):
    """``(key bytes, key id)`` of ``scope`` from the first source that names one:
    ``key_ref`` (a key URI, ``veil.transforms.key_uri``), then ``env:env``, then the pipeline's key
    service (a ``KeyServiceConfig``). Raises ``KeyNotConfigured`` when none does, and
    ``KeyUnavailable`` when the configured source cannot give the key, its reason the
    key service's error class or ``code`` (never key material): callers fail closed.
    """
    from veil.transforms.key_uri import resolve

    try:
        ref = resolve(key_ref or (f"env:{env}" if env else None))
    except ValueError:  # a malformed URI (the options check it before the graph is built)
        raise KeyUnavailable(code) from None
    if ref:
        keys = keys_from_config(str(ref), None)
    elif key_service is not None:
        try:
            keys = key_service.open().secret_keys()
        except Exception as exc:  # the key service could not be opened
            raise KeyUnavailable(type(exc).__name__) from None
    else:
        raise KeyNotConfigured(scope)
    try:
        return keys.key_for(scope), f"{keys.key_id}/{scope}"
    except KeyUnavailable:
        raise KeyUnavailable(code) from None


def keys_from_config(key_file: str | None, key_env: str | None) -> SecretKeys:
    """The configured key source, resolved on the worker (``NoKeys`` if none).

    ``key_file`` is a key URI (``veil.transforms.key_uri``: ``file:``, ``env:``,
    ``kms:``, ``pkcs11:``; a bare path is ``file:``); without one, ``env:key_env``.
    If the named source cannot be opened, every key request fails closed.
    """
    from veil.transforms.key_uri import secret_keys

    return secret_keys(key_file or (f"env:{key_env}" if key_env else None))


def write_key_file(path: str | Path, overwrite: bool = False) -> Path:
    """Creates a new random key file (hex, mode 0600); returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, secrets.token_hex(KEY_BYTES).encode() + b"\n")
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return path
