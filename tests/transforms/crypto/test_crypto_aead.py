"""The envelope: round trip, associated data, header and ciphertext tampering, commitment."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.transforms.crypto import aead
from veil.transforms.crypto.aead import DecryptionError

CTX = b"record-1|s:abc|$.name|SanitizedRecord/1"


@pytest.fixture(scope="module")
def dek():
    return aead.new_key()


@pytest.mark.parametrize("plaintext", [b"", b"x", b"Jane Doe", os.urandom(100_000)])
def test_round_trip(dek, plaintext):
    env = aead.seal(dek, "s:abc", 3, plaintext, CTX)
    assert aead.parse_header(env)[:2] == ("s:abc", 3)
    assert aead.open_envelope(dek, env, CTX) == plaintext
    if len(plaintext) >= 8:  # a 1-byte plaintext may occur in random bytes by chance
        assert plaintext not in env


@pytest.mark.parametrize(
    "other",
    [b"", CTX + b"x", CTX.replace(b"record-1", b"record-2"), CTX.replace(b"$.name", b"$.ssn")],
)
def test_wrong_associated_data(dek, other):
    env = aead.seal(dek, "s:abc", 1, b"secret", CTX)
    with pytest.raises(DecryptionError):
        aead.open_envelope(dek, env, other)


def _with_header(env: bytes, key_id: str, version: int) -> bytes:
    _, _, end = aead.parse_header(env)
    return aead.header(key_id, version) + env[end:]


@pytest.mark.parametrize("key_id,version", [("s:abd", 1), ("s:abc", 2), ("veil:dead-letter", 1)])
def test_swapped_key_id_or_version(dek, key_id, version):
    env = aead.seal(dek, "s:abc", 1, b"secret", CTX)
    with pytest.raises(DecryptionError):
        aead.open_envelope(dek, _with_header(env, key_id, version), CTX)


def test_truncated_and_flipped(dek):
    env = aead.seal(dek, "s:abc", 1, b"secret value", CTX)
    for cut in range(len(env)):
        with pytest.raises(DecryptionError):
            aead.open_envelope(dek, env[:cut], CTX)
    for i in range(len(env)):
        for bit in (0x01, 0x80):
            flipped = bytearray(env)
            flipped[i] ^= bit
            with pytest.raises(DecryptionError):
                aead.open_envelope(dek, bytes(flipped), CTX)


def test_wrong_key(dek):
    env = aead.seal(dek, "s:abc", 1, b"secret", CTX)
    with pytest.raises(DecryptionError):
        aead.open_envelope(aead.new_key(), env, CTX)
    with pytest.raises(DecryptionError):
        aead.open_envelope(b"short", env, CTX)


def test_one_opaque_error(dek):
    env = aead.seal(dek, "s:abc", 1, b"secret", CTX)
    messages = set()
    for bad in (env[:5], env + b"x", b"", b"\x00" * 80):
        with pytest.raises(DecryptionError) as info:
            aead.open_envelope(dek, bad, CTX)
        messages.add(str(info.value))
    assert messages == {"decryption failed"}


# --- key commitment: a GCM ciphertext valid under two keys --------------------------------

_R = 0xE1000000000000000000000000000000


def _gmul(x: int, y: int) -> int:
    z, v = 0, x
    for i in range(127, -1, -1):
        if (y >> i) & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


def _ginv(x: int) -> int:
    result, power, e = 1 << 127, x, 2**128 - 2  # 1 << 127 is the field's one
    while e:
        if e & 1:
            result = _gmul(result, power)
        power = _gmul(power, power)
        e >>= 1
    return result


def _aes_block(key: bytes, block: bytes) -> int:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return int.from_bytes(enc.update(block) + enc.finalize(), "big")


def _ghash(h: int, aad: bytes, blocks: list[int], ct_len: int) -> int:
    def pad(b):
        return b + b"\x00" * (-len(b) % 16)

    y = 0
    a = pad(aad)
    for i in range(0, len(a), 16):
        y = _gmul(y ^ int.from_bytes(a[i : i + 16], "big"), h)
    for c in blocks:
        y = _gmul(y ^ c, h)
    lengths = ((len(aad) * 8) << 64) | (ct_len * 8)
    return _gmul(y ^ lengths, h)


def _two_key_ciphertext(k1: bytes, k2: bytes, nonce: bytes, aad: bytes) -> bytes:
    """A 2-block ciphertext + tag that AES-GCM accepts under both k1 and k2."""
    h1, h2 = (_aes_block(k, b"\x00" * 16) for k in (k1, k2))
    j0 = nonce + b"\x00\x00\x00\x01"
    s1, s2 = _aes_block(k1, j0), _aes_block(k2, j0)
    c1 = int.from_bytes(b"invisible-salamr", "big")
    # With C2 = 0: tag_k = G_k(C1, 0) ^ S_k; C2 enters as C2 * H_k^2. Solve tag1 == tag2.
    g1, g2 = _ghash(h1, aad, [c1, 0], 32), _ghash(h2, aad, [c1, 0], 32)
    coeff = _gmul(h1, h1) ^ _gmul(h2, h2)
    c2 = _gmul(g1 ^ g2 ^ s1 ^ s2, _ginv(coeff))
    tag = _ghash(h1, aad, [c1, c2], 32) ^ s1
    return c1.to_bytes(16, "big") + c2.to_bytes(16, "big") + tag.to_bytes(16, "big")


def test_commitment_rejects_a_ciphertext_valid_under_two_keys():
    dek1, dek2 = aead.new_key(), aead.new_key()
    (enc1, commit1), (enc2, _) = aead.derive_keys(dek1), aead.derive_keys(dek2)
    head, nonce = aead.header("s:abc", 1), os.urandom(12)
    body = _two_key_ciphertext(enc1, enc2, nonce, head + CTX)
    # Bare AES-GCM (not key-committing) accepts it under both keys ...
    p1 = AESGCM(enc1).decrypt(nonce, body, head + CTX)
    p2 = AESGCM(enc2).decrypt(nonce, body, head + CTX)
    assert p1 != p2
    # ... the envelope's commitment binds it to dek1 only.
    env = head + nonce + aead._commitment(commit1, head, nonce) + body
    assert aead.open_envelope(dek1, env, CTX) == p1
    with pytest.raises(DecryptionError):
        aead.open_envelope(dek2, env, CTX)


# --- nonces -------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=2, max_size=300))
def test_nonces_never_repeat_under_one_key(plaintexts):
    dek = aead.new_key()
    nonces = [aead.envelope_nonce(aead.seal(dek, "s:k", 1, p, CTX)) for p in plaintexts]
    assert len(set(nonces)) == len(nonces)


def test_wrap_unwrap():
    kek, dek = aead.new_key(), aead.new_key()
    wrapped = aead.wrap_key(kek, dek, b"veil-dek|s:a|1")
    assert aead.unwrap_key(kek, wrapped, b"veil-dek|s:a|1") == dek
    with pytest.raises(DecryptionError):
        aead.unwrap_key(kek, wrapped, b"veil-dek|s:b|1")
    with pytest.raises(DecryptionError):
        aead.unwrap_key(aead.new_key(), wrapped, b"veil-dek|s:a|1")
