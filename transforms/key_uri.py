"""Key URIs: one way to name a key for every purpose (never a key value).

Every setting that names a key takes the same form: the policy's
``keys.pseudonym_key``, the voice key (``--veil_audio_key_file``,
``$VEIL_AUDIO_KEY_FILE``), the audit MAC key (``--veil_audit_key``), the record-id key
(``--veil_record_id_key``) and the whole key service (``--veil_key_store``):

==============================================  ======================================
URI                                             the key
==============================================  ======================================
``file:/etc/veil/pseudonym.key``                a key file from ``veil keys init``
                                                (``file:///etc/...`` too)
``env:VEIL_PSEUDONYM_KEY_FILE``                 the environment variable on the worker
                                                holds the key's URI or path (not a key)
``kms:local?store=PATH&keyring=PATH``           the key service (``KeyServiceConfig``:
                                                per-subject secrets erasure destroys)
``pkcs11:token=LABEL?module-path=LIB&store=P``  the key service with its KEKs in an HSM
                                                (RFC 7512 style; ``pin-source=env:NAME``,
                                                default ``env:VEIL_HSM_PIN``)
==============================================  ======================================

Aliases, kept for existing configurations: a bare path is ``file:PATH``; the policy's
``keys.pseudonym_key_file: PATH`` is ``keys.pseudonym_key: PATH`` and
``keys.pseudonym_key_env: NAME`` is ``env:NAME``; ``--veil_key_store PATH`` (a SQLite
file or ``kafka://TOPIC``) with the ``--veil_kms`` flags is the ``kms:`` URI spelled out.
A path whose first ``/`` comes after a ``:`` must be written ``file:PATH``.

Parsing is strict and happens where the setting is read (the policy, the pipeline
options), so an unknown scheme is a configuration error there, never a silently
missing key; resolving (``secret_keys``) happens on the worker and fails closed.

Example::

    parse_key_uri("env:VEIL_AUDIT_KEY_FILE")   # KeyUri(scheme='env', target='VEIL_AUDIT_KEY_FILE')
    secret_keys("file:/etc/veil/pseudonym.key").key_for("pseudonym")
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from urllib.parse import parse_qsl, urlencode

_LOGGER = logging.getLogger(__name__)

SCHEMES = ("file", "env", "kms", "pkcs11")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class KeyUriError(ValueError):
    """A key URI that cannot name a key (unknown scheme, empty target, a key value)."""


@dataclasses.dataclass(frozen=True)
class KeyUri:
    """A parsed key URI: ``scheme`` (one of ``SCHEMES``) and what it names (a path,
    a variable name, or the key service's settings for ``kms``/``pkcs11``)."""

    scheme: str
    target: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.target}"


def parse_key_uri(text: str) -> KeyUri:
    """Parses a key URI or one of its aliases (a bare path is ``file:``).

    Raises ``KeyUriError`` with a message that names the scheme (never the rest, which
    could be a key value pasted in the wrong place).
    """
    if not isinstance(text, str) or not text.strip():
        raise KeyUriError("a key URI must be a non-empty string")
    text = text.strip()
    match = _SCHEME.match(text)
    if not match or text.startswith(("/", ".")):
        return KeyUri("file", text)
    scheme, rest = match.group(1).lower(), text[match.end() :]
    if scheme not in SCHEMES:
        raise KeyUriError(
            f"unknown key URI scheme '{scheme}:' (known: "
            + ", ".join(f"{s}:" for s in SCHEMES)
            + ")"
        )
    if scheme == "file":
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise KeyUriError("a file: key URI needs a path (file:/etc/veil/NAME.key)")
        return KeyUri("file", path)
    if scheme == "env":
        if not _ENV_NAME.match(rest):
            raise KeyUriError("an env: key URI needs a variable name (env:NAME)")
        return KeyUri("env", rest)
    key_service_config(KeyUri(scheme, rest))  # checks the settings
    return KeyUri(scheme, rest)


def resolve(ref: str | None, environ=None) -> KeyUri | None:
    """The key ``ref`` names after following ``env:`` once (None: nothing configured).

    The variable may hold a path or a ``file:``/``kms:``/``pkcs11:`` URI, not another
    ``env:`` (no chains).
    """
    if not ref:
        return None
    uri = parse_key_uri(ref)
    if uri.scheme != "env":
        return uri
    value = (os.environ if environ is None else environ).get(uri.target, "")
    if not value.strip():
        return None
    named = parse_key_uri(value)
    if named.scheme == "env":
        raise KeyUriError(f"${uri.target} names another variable; it must name the key")
    return named


def key_service_config(uri: KeyUri | str):
    """The ``KeyServiceConfig`` of a ``kms:`` or ``pkcs11:`` URI."""
    from veil.transforms.crypto.kms import KmsError
    from veil.transforms.crypto.service import KeyServiceConfig

    uri = parse_key_uri(uri) if isinstance(uri, str) else uri
    if uri.scheme == "kms":
        text = f"kms:{uri.target}"
    elif uri.scheme == "pkcs11":
        text = _pkcs11_as_kms(uri.target)
    else:
        raise KeyUriError(f"a {uri.scheme}: URI names a key, not the key service")
    try:
        return KeyServiceConfig.from_uri(text)
    except (KmsError, ValueError) as exc:
        raise KeyUriError(f"{uri.scheme}: {_safe(exc)}") from None


def is_key_service_uri(text: str | None) -> bool:
    """Whether ``text`` is a ``kms:`` or ``pkcs11:`` URI (vs a key-store path or URL)."""
    match = _SCHEME.match((text or "").strip())
    return bool(match) and match.group(1).lower() in ("kms", "pkcs11")


def secret_keys(ref: str | None, environ=None):
    """The ``SecretKeys`` that ``ref`` names, resolved on the worker (``NoKeys`` when
    nothing is configured or the key service cannot be opened: fail closed)."""
    from veil.transforms.keys import FileKeys, NoKeys

    try:
        uri = resolve(ref, environ)
    except KeyUriError as exc:
        _LOGGER.error("Key URI refused: %s", _safe(exc))
        return NoKeys()
    if uri is None:
        return NoKeys()
    if uri.scheme == "file":
        return FileKeys(uri.target)
    try:
        return key_service_config(uri).open().secret_keys()
    except Exception as exc:  # not configured or unreachable: fail closed
        _LOGGER.error("Key service unavailable: %s", type(exc).__name__)
        return NoKeys()


def _pkcs11_as_kms(target: str) -> str:
    """``token=T;object=O?module-path=M&pin-source=env:N&store=S&...`` -> ``kms:pkcs11?...``."""
    path, _, query = target.partition("?")
    attrs = dict(part.split("=", 1) for part in path.split(";") if "=" in part)
    extra = [part for part in path.split(";") if part and "=" not in part]
    if extra or set(attrs) - {"token"}:
        raise KeyUriError("pkcs11: takes the path attribute token= only (KEKs: veil-kek-vN)")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if "pin-value" in params:
        raise KeyUriError("pkcs11: name the PIN with pin-source=env:NAME, never pin-value")
    settings = {
        "pkcs11_token": attrs.get("token", ""),
        "pkcs11_module": params.pop("module-path", ""),
    }
    if not (settings["pkcs11_token"] and settings["pkcs11_module"]):
        raise KeyUriError("pkcs11: needs token=LABEL and ?module-path=LIBRARY")
    pin = params.pop("pin-source", "env:VEIL_HSM_PIN")
    if not pin.startswith("env:") or not _ENV_NAME.match(pin[4:]):
        raise KeyUriError("pkcs11: pin-source must be env:NAME")
    settings["pkcs11_pin_env"] = pin[4:]
    return "kms:pkcs11?" + urlencode({**settings, **params})


def _safe(exc: Exception) -> str:
    """An error's message, which Veil's own parsers build from names only."""
    return str(exc)
