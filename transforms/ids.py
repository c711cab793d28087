"""Opaque record ids: a producer-chosen id never leaves Veil in clear.

A ``record_id`` is chosen by the producer (``veil sanitize`` builds one from a file
name), so it is a channel around every detector: ``john.smith@example.com`` or
``id-123-45-6789`` would otherwise come out as the Kafka key, the ``veil-record-id``
header, the sanitized record's and the dead letter's ``record_id`` and in every audit
event. Decoding therefore replaces it, once, before anything else sees it:

* an id already in the opaque form (32 lower-case hex digits, or a canonical UUID) is
  kept as it is;
* any other id becomes ``HMAC-SHA256(id key, id)`` truncated to 128 bits, as 32 hex
  digits. Deterministic: a replay or a duplicate after a restart gets the same id, so
  keys still de-duplicate; and the output is itself in the opaque form, so replaying a
  dead letter's original keeps its id;
* with no id key configured, any other id is refused (dead letter ``INVALID_RECORD``):
  fail closed rather than publish it.

The id key is the ``record-id`` scope of ``veil.transforms.keys.SecretKeys``: from
``--veil_record_id_key`` (a key file or ``kms:`` URI), else ``$VEIL_RECORD_ID_KEY_FILE``,
else the pipeline's key service. Only a holder of that key can test whether an opaque
id stands for a given producer id (``veil keys record-id RECORD_ID`` computes it), so the
mapping is recoverable only through the key service.

Example::

    ids = RecordIds(resolve_id_key(None, key_service=None))
    ids.opaque("john.smith@example.com")   # '3f0c...' (32 hex digits)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import NamedTuple

_LOGGER = logging.getLogger(__name__)

ID_KEY_ENV = "VEIL_RECORD_ID_KEY_FILE"
ID_SCOPE = "record-id"
_OPAQUE = re.compile(r"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class IdKeyUnavailable(Exception):
    """An id key was configured but could not be read: fail closed."""


class IdKey(NamedTuple):
    key: bytes | None
    key_id: str


NO_ID_KEY = IdKey(None, "none")


def is_opaque(record_id) -> bool:
    """True for ids already in the opaque form (kept unchanged)."""
    return isinstance(record_id, str) and _OPAQUE.fullmatch(record_id) is not None


def resolve_id_key(key_ref: str | None = None, key_service=None, env: str = ID_KEY_ENV) -> IdKey:
    """The record-id key, resolved on the worker (``NO_ID_KEY`` when none is configured).

    Order: ``key_ref`` (key file or ``kms:`` URI), ``$VEIL_RECORD_ID_KEY_FILE``, the key
    service (a ``KeyServiceConfig``). Raises ``IdKeyUnavailable`` for a configured key
    that cannot be read.
    """
    from veil.transforms.keys import KeyNotConfigured, KeyUnavailable, resolve_scoped_key

    try:
        key, key_id = resolve_scoped_key(
            key_ref, key_service, env, ID_SCOPE, "RECORD_ID_KEY_UNAVAILABLE"
        )
    except KeyNotConfigured:
        return NO_ID_KEY
    except KeyUnavailable as exc:
        raise IdKeyUnavailable(*exc.args) from None
    return IdKey(key, key_id)


def opaque_id(key: bytes | None, record_id: str) -> str | None:
    """The opaque id of ``record_id`` (None: refused, no key and not already opaque)."""
    if is_opaque(record_id):
        return record_id
    if key is None:
        return None
    digest = hmac.new(key, b"veil-record-id|" + record_id.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:32]


class RecordIds:
    """Maps producer ids to opaque ids with one resolved key."""

    def __init__(self, key: IdKey):
        self._key = key

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def opaque(self, record_id: str) -> str | None:
        return opaque_id(self._key.key, record_id)
