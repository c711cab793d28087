"""The one module of Veil that touches ``cryptography.hazmat``.

Everything else sees ``seal``/``open_envelope`` (AES-256-GCM envelopes with key
commitment), ``wrap_key``/``unwrap_key`` (data keys under a key-encryption key), keyed
hashes, role-sealed envelopes (``seal_for_roles``/``open_role_envelope``: format 2,
opened only with a granted reveal role's RSA private key as well; layout further down),
and one opaque error, ``DecryptionError``.

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

import functools
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
    return _open_body(key, envelope, end, context)


def _open_body(key: PreparedKey, envelope: bytes, end: int, context: bytes) -> bytes:
    """Checks the key commitment of the envelope whose header ends at ``end``, then
    decrypts its body (AAD: header + context); any failure is ``DecryptionError``."""
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


# --- role-sealed envelopes (reveal enforced by the role's key, issue 18) ---------------
#
# Format version 2 adds role grants to the header:
#
#     0       1     magic 0x56
#     1       1     format version (2)
#     2       1     key id length L, then key id, then 4-byte key version (as in v1)
#     7+L     1     number of grants G (0..32)
#     then G times: 1-byte role length, role (ASCII), 2-byte length W, W bytes: a fresh
#                   256-bit role secret R, RSA-OAEP (SHA-1, MGF1-SHA-1) encrypted to
#                   the role's public key
#     then          nonce, key commitment, AES-256-GCM ciphertext and tag (as in v1)
#
# The field key is HMAC(role-seal key of the subject's DEK, R): opening needs the
# subject's DEK (held by the key service, destroyed by erasure) AND R (only a principal
# holding a granted role's private key, on that role's token, can decrypt it). The whole
# header, grants included, is GCM associated data.

ROLE_FORMAT_VERSION = 2
_ROLE_SEAL_LABEL = b"veil-envelope-v2/role-seal"
MAX_GRANTS = 32
RSA_BITS = 3072


def _role_seal_base(dek) -> bytes:
    if isinstance(dek, PreparedKey):
        return keyed_hash(dek._commit_key, _ROLE_SEAL_LABEL)
    return keyed_hash(derive_keys(dek)[1], _ROLE_SEAL_LABEL)


def _oaep():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    # SHA-1 OAEP: the mode SoftHSM2 2.6 (and many HSMs) implement; OAEP's security does
    # not rest on SHA-1's collision resistance.
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def new_role_keypair() -> tuple[bytes, bytes]:
    """(public key as SubjectPublicKeyInfo DER, private key as PKCS#8 DER): local roles."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return public, private


def rsa_public_der(modulus: bytes, exponent: bytes) -> bytes:
    """SubjectPublicKeyInfo DER of an RSA key given as big-endian integers (a token's)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big"))
    return numbers.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_fingerprint(public_der: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_der).hexdigest()[:32]


class RolePrivateKey:
    """A local role's private key, loaded once (loading checks the key: ~0.5 s)."""

    __slots__ = ("_key",)

    def __init__(self, private_der: bytes):
        from cryptography.hazmat.primitives import serialization

        try:
            self._key = serialization.load_der_private_key(private_der, password=None)
        except (ValueError, TypeError):
            raise DecryptionError() from None

    def unwrap(self, wrapped: bytes) -> bytes:
        """R from a grant; ``DecryptionError`` on failure."""
        try:
            return self._key.decrypt(wrapped, _oaep())
        except (ValueError, TypeError):
            raise DecryptionError() from None


def rsa_unwrap_local(private_der: bytes, wrapped: bytes) -> bytes:
    """R from a grant, with a local role's private key; ``DecryptionError`` on failure."""
    return RolePrivateKey(private_der).unwrap(wrapped)


@functools.lru_cache(maxsize=64)
def _public_key(public_der: bytes):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_public_key(public_der)


def _grant_block(grants: dict, secret: bytes) -> bytes:
    if len(grants) > MAX_GRANTS:
        raise ValueError("too many role grants")
    out = bytearray((len(grants),))
    for role in sorted(grants):
        raw = role.encode("ascii")
        if not 1 <= len(raw) <= 255:
            raise ValueError("bad role name")
        wrapped = _public_key(grants[role]).encrypt(secret, _oaep())
        out += bytes((len(raw),)) + raw + struct.pack(">H", len(wrapped)) + wrapped
    return bytes(out)


def seal_for_roles(
    dek, key_id: str, key_version: int, plaintext: bytes, context: bytes, grants: dict
) -> bytes:
    """A format-2 envelope: opening needs ``dek`` and one granted role's private key.

    Args:
        grants: role name -> the role's public key (SubjectPublicKeyInfo DER). Empty:
            nobody can open the envelope (no role may reveal it).
    """
    secret = new_key()
    head = (
        bytes((MAGIC, ROLE_FORMAT_VERSION))
        + header(key_id, key_version)[2:]
        + _grant_block(grants, secret)
    )
    key = PreparedKey(keyed_hash(_role_seal_base(dek), secret))
    nonce = os.urandom(NONCE_BYTES)
    body = key._gcm.encrypt(nonce, plaintext, head + context)
    return head + nonce + _commitment(key._commit_key, head, nonce) + body


def parse_role_envelope(envelope: bytes) -> tuple[str, int, dict, int]:
    """(key id, key version, {role: wrapped secret}, header length) of a format-2
    envelope; ``DecryptionError`` if it is not one or is malformed."""
    try:
        if envelope[0] != MAGIC or envelope[1] != ROLE_FORMAT_VERSION:
            raise DecryptionError()
        length = envelope[2]
        if not 1 <= length <= MAX_KEY_ID:
            raise DecryptionError()
        key_id = envelope[3 : 3 + length].decode("ascii")
        (version,) = struct.unpack(">I", envelope[3 + length : 7 + length])
        pos = 7 + length
        count = envelope[pos]
        pos += 1
        grants = {}
        for _ in range(count):
            rlen = envelope[pos]
            role = envelope[pos + 1 : pos + 1 + rlen].decode("ascii")
            (wlen,) = struct.unpack(">H", envelope[pos + 1 + rlen : pos + 3 + rlen])
            start = pos + 3 + rlen
            grants[role] = envelope[start : start + wlen]
            if len(grants[role]) != wlen:
                raise DecryptionError()
            pos = start + wlen
        if count > MAX_GRANTS or len(envelope) < pos + NONCE_BYTES + COMMIT_BYTES + TAG_BYTES:
            raise DecryptionError()
        return key_id, version, grants, pos
    except (IndexError, UnicodeDecodeError, struct.error):
        raise DecryptionError() from None


def is_role_envelope(envelope: bytes) -> bool:
    return len(envelope) > 2 and envelope[0] == MAGIC and envelope[1] == ROLE_FORMAT_VERSION


def open_role_envelope(dek, envelope: bytes, context: bytes, secret: bytes) -> bytes:
    """Opens a format-2 envelope with the subject's ``dek`` and the role secret R."""
    _, _, _, end = parse_role_envelope(envelope)
    try:
        key = PreparedKey(keyed_hash(_role_seal_base(dek), secret))
    except ValueError:
        raise DecryptionError() from None
    return _open_body(key, envelope, end, context)
