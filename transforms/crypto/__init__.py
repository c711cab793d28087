"""Per-subject envelope encryption, key management and crypto-shredding.

Only ``veil.transforms.crypto.aead`` touches ``cryptography.hazmat``. Callers use
``KeyServiceConfig(...).open()`` and ``KeyService.encrypt(plaintext, context)`` /
``decrypt(envelope, context)``; every decryption failure is ``DecryptionError``.
"""

from veil.transforms.crypto.aead import DecryptionError
from veil.transforms.crypto.kafka_store import KafkaKeyStore
from veil.transforms.crypto.kms import Kms, KmsError, LocalKeyring, Pkcs11Kms
from veil.transforms.crypto.service import (
    EnvelopeContext,
    KeyService,
    KeyServiceConfig,
    KmsSecretKeys,
)
from veil.transforms.crypto.store import SqliteKeyStore, SubjectErased

__all__ = [
    "DecryptionError",
    "EnvelopeContext",
    "KafkaKeyStore",
    "KeyService",
    "KeyServiceConfig",
    "Kms",
    "KmsError",
    "KmsSecretKeys",
    "LocalKeyring",
    "Pkcs11Kms",
    "SqliteKeyStore",
    "SubjectErased",
]
