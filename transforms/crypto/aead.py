"""The one module of Veil that touches ``cryptography.hazmat``.

Everything else sees ``seal``/``open_envelope`` (AES-256-GCM envelopes with key
commitment), ``wrap_key``/``unwrap_key`` (data keys under a key-encryption key), keyed
hashes, and one opaque error, ``DecryptionError``.

Envelope layout (format version 1, all integers big-endian)::

    offset  size  field
    0       1     magic 0x56 ("V")
    1       1     format version (1)
    2       1     key id length L (1..64)
    3       L     key id (ASCII)
    3+L     4     key version
    7+L     12    nonce (random, from os.urandom)
    19+L    32    key commitment: HMAC-SHA256(commit key, label | header | nonce)
    51+L    n+16  AES-256-GCM ciphertext and tag

``header`` is bytes 0..7+L. The DEK is never used directly: the GCM key and the
commitment key are both derived from it with HMAC-SHA256 under distinct labels, so the
commitment reveals nothing about the GCM key. The GCM associated data is
``header | context`` (the caller's record id, subject key id, field path and schema
version), so moving an envelope to another record, subject, field or key id fails.
The commitment is checked in constant time before any decryption is attempted: a
ciphertext crafted to decrypt under two keys (AES-GCM is not key-committing) is refused.

Example::

    dek = new_key()
    env = seal(dek, "s:1f2e", 1, b"Jane Doe", context=b"...")
    open_envelope(dek, env, context=b"...")   # b"Jane Doe"
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = 0x56
FORMAT_VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
COMMIT_BYTES = 32
MAX_KEY_ID = 64
_ENC_LABEL = b"veil-envelope-v1/enc"
_COMMIT_KEY_LABEL = b"veil-envelope-v1/commit-key"
_COMMIT_LABEL = b"veil-envelope-v1/commitment"
_WRAP_FORMAT = b"\x01"


class DecryptionError(Exception):
    """Any failure to open an envelope or unwrap a key. Deliberately says nothing more."""

    def __init__(self):
        super().__init__("decryption failed")


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def keyed_hash(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256(key, data)."""
    return hmac.digest(key, data, hashlib.sha256)


def derive_keys(dek: bytes) -> tuple[bytes, bytes]:
    """(GCM key, commitment key), both derived from ``dek``."""
    if len(dek) != KEY_BYTES:
        raise ValueError("data keys are 32 bytes")
    return keyed_hash(dek, _ENC_LABEL), keyed_hash(dek, _COMMIT_KEY_LABEL)


class PreparedKey:
    """A DEK with its derived keys and cipher set up once (what worker caches hold)."""

    __slots__ = ("_gcm", "_commit_key")

    def __init__(self, dek: bytes):
        enc_key, self._commit_key = derive_keys(dek)
        self._gcm = AESGCM(enc_key)


def prepare(dek) -> PreparedKey:
    """``dek`` (32 bytes) as a ``PreparedKey``; a ``PreparedKey`` is returned as is."""
    return dek if isinstance(dek, PreparedKey) else PreparedKey(dek)


def header(key_id: str, key_version: int) -> bytes:
    raw = key_id.encode("ascii")
    if not 1 <= len(raw) <= MAX_KEY_ID or not 0 <= key_version < 2**32:
        raise ValueError("bad key id or version")
    return bytes((MAGIC, FORMAT_VERSION, len(raw))) + raw + struct.pack(">I", key_version)


def parse_header(envelope: bytes) -> tuple[str, int, int]:
    """(key id, key version, header length); raises ``DecryptionError`` if malformed."""
    try:
        if envelope[0] != MAGIC or envelope[1] != FORMAT_VERSION:
            raise DecryptionError()
        length = envelope[2]
        if not 1 <= length <= MAX_KEY_ID:
            raise DecryptionError()
        end = 3 + length + 4
        if len(envelope) < end + NONCE_BYTES + COMMIT_BYTES + TAG_BYTES:
            raise DecryptionError()
        key_id = envelope[3 : 3 + length].decode("ascii")
        (version,) = struct.unpack(">I", envelope[3 + length : end])
        return key_id, version, end
    except (IndexError, UnicodeDecodeError, struct.error):
        raise DecryptionError() from None


def _commitment(commit_key: bytes, head: bytes, nonce: bytes) -> bytes:
    return keyed_hash(commit_key, _COMMIT_LABEL + head + nonce)


def seal(
    dek: bytes,
    key_id: str,
    key_version: int,
    plaintext: bytes,
    context: bytes,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypts ``plaintext`` into a versioned, key-committing envelope.

    Args:
        dek: the 32-byte data key (or its ``PreparedKey``).
        key_id: the key's id, written into the header (ASCII, at most 64 bytes).
        key_version: the key's version, written into the header.
        plaintext: what to protect.
        context: canonical associated data (see ``veil.transforms.crypto.context``).
        nonce: for tests only; by default 12 random bytes.
    """
    key = prepare(dek)
    head = header(key_id, key_version)
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    body = key._gcm.encrypt(nonce, plaintext, head + context)
    return head + nonce + _commitment(key._commit_key, head, nonce) + body


def open_envelope(dek: bytes, envelope: bytes, context: bytes) -> bytes:
    """Checks the commitment, then decrypts; any failure is ``DecryptionError``."""
    _, _, end = parse_header(envelope)
    try:
        key = prepare(dek)
    except ValueError:
        raise DecryptionError() from None
    head, nonce = envelope[:end], envelope[end : end + NONCE_BYTES]
    commitment = envelope[end + NONCE_BYTES : end + NONCE_BYTES + COMMIT_BYTES]
    if not hmac.compare_digest(commitment, _commitment(key._commit_key, head, nonce)):
        raise DecryptionError()
    try:
        return key._gcm.decrypt(nonce, envelope[end + NONCE_BYTES + COMMIT_BYTES :], head + context)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None


def envelope_nonce(envelope: bytes) -> bytes:
    """The nonce of a well-formed envelope (for tests and audits)."""
    _, _, end = parse_header(envelope)
    return envelope[end : end + NONCE_BYTES]


def wrap_key(kek: bytes, key: bytes, aad: bytes) -> bytes:
    """Wraps ``key`` under ``kek`` (AES-256-GCM, random nonce, ``aad`` bound)."""
    nonce = os.urandom(NONCE_BYTES)
    return _WRAP_FORMAT + nonce + AESGCM(kek).encrypt(nonce, key, aad)


def unwrap_key(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    """Inverse of ``wrap_key``; any failure is ``DecryptionError``."""
    if len(wrapped) < 1 + NONCE_BYTES + TAG_BYTES or wrapped[:1] != _WRAP_FORMAT:
        raise DecryptionError()
    try:
        return AESGCM(kek).decrypt(wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :], aad)
    except (InvalidTag, ValueError):
        raise DecryptionError() from None
