"""The key service: per-subject envelope encryption over a KMS and a data-key store.

Key hierarchy::

    KEK (in the KMS / HSM, versioned)  ──wraps──►  DEKs (data-key store, per key id, versioned)
                                                    ├── s:<subject key id>   one per subject
                                                    ├── p:<subject key id>   its pseudonym secret
                                                    ├── veil:dead-letter     dead-letter originals
                                                    ├── veil:index           keys subject key ids
                                                    └── veil:scope:<scope>   SecretKeys scopes

A subject's key id is ``s:`` + HMAC-SHA256(index key, subject key) (128 bits, hex): the
raw subject key never appears in a header, an audit event or the store. Unwrapped DEKs
live only in this process's memory, for ``cache_ttl_s`` (default 60 s, shorter than the
erasure deadline in docs/keys.md "Erasure"). An erasure seen by the store's index (Kafka
store) or on the ``veil.erasure`` topic (``ErasureListener``, when ``erasure_topic`` is
set) evicts the subject at once and makes every later use re-check the store for one
TTL, so the deadline is sub-second in practice and the TTL at worst.

Keyed pseudonyms and date shifts (``KmsSecretKeys.key_for_subject``) use a per-subject
secret ``p:<subject key id>`` held in the store like a data key and destroyed with the
subject's data keys: after erasure nobody can recompute the erased subject's
pseudonyms, and the subject's new records are dead-lettered ``SUBJECT_ERASED``.

Nonce budget: envelopes use random 96-bit nonces, safe for 2^32 messages per key.
Every process leases encryptions in blocks (``lease``) from the store's atomic usage
counter; once a version's total passes ``max_uses`` (default 2^30, a quarter of the
limit, counting whole leases even if unused) a new DEK version becomes primary.

Example::

    service = KeyServiceConfig(keyring="keyring.json", store="keys.db").open()
    ctx = service.context("rec-1", "patient-7", "$.name")
    env = service.encrypt(b"Jane Doe", ctx)
    service.decrypt(env, ctx)   # b"Jane Doe"
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from typing import NamedTuple

from veil.transforms.crypto import aead
from veil.transforms.crypto.aead import DecryptionError
from veil.transforms.crypto.kms import Kms, KmsError, LocalKeyring, Pkcs11Kms
from veil.transforms.crypto.store import ACTIVE, RETIRED, SqliteKeyStore, StoredKey, SubjectErased
from veil.transforms.keys import KeyUnavailable, SecretKeys, SubjectKeyErased

PROTECTED_SCHEMA = "SanitizedRecord/1"
# Envelopes bound to the record's classification and the pipeline's policy (version and
# digest): ``protection_binding``. Re-identification rebuilds it from the record and the
# policy it was given; a changed ``regimes`` or sensitivity, or another policy, no longer
# decrypts.
BOUND_SCHEMA = "SanitizedRecord/2"
DEAD_LETTER_SCHEMA = "DeadLetter/1"
DEAD_LETTER_KEY_ID = "veil:dead-letter"
INDEX_KEY_ID = "veil:index"
SCOPE_PREFIX = "veil:scope:"
SUBJECT_PREFIX = "s:"
# Reveal roles' public keys (not secret): rows ``veil:role:<role>`` whose ``wrapped``
# column holds the role's public key (SubjectPublicKeyInfo DER), ``kek_id`` below.
ROLE_PREFIX = "veil:role:"
ROLE_PUBLIC = "role-public"
PSEUDONYM_PREFIX = "p:"
NONCE_LIMIT = 2**32


class EnvelopeContext(NamedTuple):
    """What an envelope is bound to (its associated data)."""

    record_id: str
    subject_key_id: str
    field_path: str
    schema_version: str = PROTECTED_SCHEMA
    binding: str = ""  # ``protection_binding`` (BOUND_SCHEMA envelopes only)

    def aad(self) -> bytes:
        """Canonical, unambiguous encoding: each field length-prefixed (the binding
        only when set, so envelopes sealed before it existed keep their AAD)."""
        out = bytearray(b"veil-aad-v1")
        for part in self if self.binding else self[:4]:
            raw = part.encode("utf-8")
            out += len(raw).to_bytes(4, "big") + raw
        return bytes(out)


def protection_binding(sensitivity: str, regimes, policy_version: str, policy_digest: str) -> str:
    """What a protected field is bound to besides its record, subject and path: the
    record's classification and the pipeline policy that decides who may reveal it."""
    import json

    return json.dumps(
        {
            "sensitivity": sensitivity,
            "regimes": sorted(regimes or ()),
            "policy_version": policy_version,
            "policy_digest": policy_digest,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


@dataclasses.dataclass(frozen=True)
class KeyServiceConfig:
    """Where the key service's parts are; names of secrets, never secret values.

    Attributes:
        store: the data-key store: a SQLite file (one machine), or
            ``kafka://HOST:PORT/TOPIC`` / ``kafka://TOPIC`` (a compacted topic, for a
            cluster; see ``veil.transforms.crypto.kafka_store``).
        backend: ``local`` (keyring file) or ``pkcs11`` (HSM).
        keyring: the local keyring file.
        master_key_env: environment variable holding the keyring's master key (hex).
        master_key_file: or a secret file holding it.
        pkcs11_module: PKCS#11 library path; ``pkcs11_token``: token label;
            ``pkcs11_pin_env``: environment variable holding the PIN.
        cache_ttl_s: how long an unwrapped key stays in worker memory.
        max_uses: encryptions per DEK version before a new version is made.
        lease: encryptions reserved from the shared counter at a time.
        bootstrap: Kafka bootstrap servers for ``kafka://TOPIC`` stores and the erasure
            listener; ``kafka_client``: further kafka-python settings as (name, value)
            pairs (security; a SASL password by ``sasl_password_env`` only).
        erasure_topic: when set (with ``bootstrap``), every opened service follows it
            and evicts erased subjects at once.
    """

    store: str
    backend: str = "local"
    keyring: str | None = None
    master_key_env: str | None = "VEIL_MASTER_KEY"
    master_key_file: str | None = None
    pkcs11_module: str | None = None
    pkcs11_token: str | None = None
    pkcs11_pin_env: str = "VEIL_HSM_PIN"
    cache_ttl_s: float = 60.0
    max_uses: int = 2**30
    lease: int = 4096
    bootstrap: str | None = None
    kafka_client: tuple = ()
    erasure_topic: str | None = None

    @classmethod
    def from_uri(cls, uri: str) -> KeyServiceConfig:
        """``kms:<backend>?store=PATH&keyring=PATH&master_key_env=NAME&...`` (names only).

        The form ``veil.transforms.keys.keys_from_config`` accepts in place of a key file
        path, so keyed pseudonyms, date shifts and voices can use the key service.
        """
        from urllib.parse import parse_qsl, urlsplit

        parts = urlsplit(uri)
        if parts.scheme != "kms":
            raise KmsError("a key-service URI starts with kms:")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        settings = {"backend": parts.path or "local"}
        for name, value in parse_qsl(parts.query, keep_blank_values=False):
            if name not in fields or name in ("backend", "kafka_client"):
                raise KmsError(f"unknown key-service setting {name!r}")
            kind = fields[name].type
            settings[name] = (
                float(value) if "float" in kind else int(value) if kind == "int" else value
            )
        if "store" not in settings:
            raise KmsError("a key-service URI needs store=PATH")
        return cls(**settings)

    def kms(self) -> Kms:
        if self.backend == "local":
            if not self.keyring:
                raise KmsError("the local backend needs a keyring file")
            return LocalKeyring(self.keyring, self.master_key_env, self.master_key_file)
        if self.backend == "pkcs11":
            if not (self.pkcs11_module and self.pkcs11_token):
                raise KmsError("the pkcs11 backend needs a module and a token label")
            return Pkcs11Kms(self.pkcs11_module, self.pkcs11_token, self.pkcs11_pin_env)
        raise KmsError(f"unknown KMS backend {self.backend!r}")

    def open_store(self):
        """The data-key store this configuration names (SQLite file or Kafka topic)."""
        from veil.transforms.crypto.kafka_store import KafkaKeyStore, is_kafka_url

        if is_kafka_url(self.store):
            return KafkaKeyStore.open_url(
                self.store, self.bootstrap, dict(self.kafka_client), self.cache_ttl_s
            )
        return SqliteKeyStore(self.store)

    def open(self) -> KeyService:
        """This process's key service for this configuration (opened once).

        One instance per process and configuration: every DoFn instance of a worker
        process shares its cache, its store index and its erasure listener.
        """
        with _SERVICES_LOCK:
            service = _SERVICES.get(self)
            if service is None:
                service = KeyService(self.kms(), self.open_store(), self)
                if self.erasure_topic and self.bootstrap:
                    from veil.transforms.crypto.erasure import ErasureListener

                    ErasureListener.start(service, self)
                _SERVICES[self] = service
            return service


_SERVICES: dict = {}
_SERVICES_LOCK = threading.Lock()


class KeyService:
    """Envelope encryption per key id, with caching, rotation and erasure."""

    def __init__(
        self, kms: Kms, store: SqliteKeyStore, config: KeyServiceConfig, clock=time.monotonic
    ):
        self._kms, self._store, self._config, self._clock = kms, store, config, clock
        self._lock = threading.RLock()
        self._cache: dict = {}  # (key_id, version) -> (dek, expires, wrapped)
        self._hold: dict = {}  # key_id -> until: re-check the store on every use
        self._prepared: dict = {}  # (key_id, version) -> aead.PreparedKey (same lifetime)
        self._primary: dict = {}  # key_id -> (version, expires)
        self._leases: dict = {}  # (key_id, version) -> remaining uses
        self.kms_unwraps = 0
        self.evictions = 0
        self.erasure_listener = None  # set by ErasureListener.start
        if hasattr(store, "add_erasure_listener"):
            store.add_erasure_listener(self.evict)

    # --- ids and contexts -----------------------------------------------------------

    def subject_key_id(self, subject_key: str) -> str:
        now = self._clock()
        with self._lock:
            cached = self._primary.get(INDEX_KEY_ID)
            if cached and cached[1] > now:
                version = cached[0]
            else:
                version = self._ensure(INDEX_KEY_ID).version
                self._primary[INDEX_KEY_ID] = (version, now + self._config.cache_ttl_s)
            index = self._dek(INDEX_KEY_ID, version)
        return SUBJECT_PREFIX + aead.keyed_hash(index, subject_key.encode("utf-8")).hex()[:32]

    def context(self, record_id: str, subject_key: str, field_path: str, schema=PROTECTED_SCHEMA):
        return EnvelopeContext(record_id, self.subject_key_id(subject_key), field_path, schema)

    # --- encrypt / decrypt ----------------------------------------------------------

    def encrypt(self, plaintext: bytes, context: EnvelopeContext) -> bytes:
        """An envelope under the primary DEK of ``context.subject_key_id``.

        Raises ``SubjectErased`` for a crypto-shredded subject, ``KmsError`` when no key
        can be had.
        """
        return self.encrypt_with_key(plaintext, context)[0]

    def encrypt_with_key(self, plaintext: bytes, context: EnvelopeContext, grants=None):
        """(envelope, key id, key version).

        With ``grants`` (role -> public key DER, from ``role_grants``) the envelope is
        role-sealed: opening it needs the subject's key and a granted role's private key.
        """
        key_id = context.subject_key_id
        version, dek = self._use_primary(key_id)
        if grants is not None:
            envelope = aead.seal_for_roles(dek, key_id, version, plaintext, context.aad(), grants)
        else:
            envelope = aead.seal(dek, key_id, version, plaintext, context.aad())
        return envelope, key_id, version

    # --- reveal roles ---------------------------------------------------------------

    def register_role(self, role: str, public_der: bytes) -> StoredKey:
        """Publishes ``role``'s public key to every worker (a new version if it changed)."""
        key_id = ROLE_PREFIX + role
        with self._lock:
            row = self._store.primary(key_id)
            if row is not None and row.wrapped == public_der:
                return row
            version = self._store.latest_version(key_id) + 1
            now = int(time.time() * 1000)
            row = self._store.insert_if_absent(
                StoredKey(key_id, version, ROLE_PUBLIC, 0, public_der, ACTIVE, 0, now)
            )
            self._primary.pop(("roles",), None)
            return row

    def role_public_key(self, role: str) -> bytes | None:
        row = self._store.primary(ROLE_PREFIX + role)
        return row.wrapped if row is not None and row.kek_id == ROLE_PUBLIC else None

    def role_grants(self, roles, allowed) -> dict | None:
        """Public keys of the ``allowed`` roles, or None when none of ``roles`` (every
        role the policy names) has a registered key (reveal then stays key-service only).

        Cached for the cache TTL: a newly registered role reaches workers within it.
        """
        now = self._clock()
        names = tuple(sorted(set(roles)))
        with self._lock:
            cached = self._primary.get(("roles",))
            if not cached or cached[1] <= now or cached[0][0] != names:
                keys = {r: k for r in names if (k := self.role_public_key(r)) is not None}
                expires = now + self._config.cache_ttl_s
                cached = self._primary[("roles",)] = ((names, keys), expires)
            keys = cached[0][1]
        if not keys:
            return None
        return {r: keys[r] for r in allowed if r in keys}

    def decrypt_for_role(self, envelope: bytes, context: EnvelopeContext, role_key) -> bytes:
        """Opens a role-sealed envelope with the subject's key and ``role_key`` (an
        authenticated ``RoleKey``); ``DecryptionError`` if the role holds no grant."""
        key_id, version, grants, _ = aead.parse_role_envelope(envelope)
        wrapped = grants.get(role_key.role)
        if key_id != context.subject_key_id or wrapped is None:
            raise DecryptionError()
        secret = role_key.unwrap(wrapped)
        try:
            dek = self._prepared_key(key_id, version)
        except (KmsError, KeyError):
            raise DecryptionError() from None
        return aead.open_role_envelope(dek, envelope, context.aad(), secret)

    def decrypt(self, envelope: bytes, context: EnvelopeContext) -> bytes:
        """The plaintext; ``DecryptionError`` on any failure, erased keys included."""
        key_id, version, _ = aead.parse_header(envelope)
        if key_id != context.subject_key_id:
            raise DecryptionError()
        try:
            dek = self._prepared_key(key_id, version)
        except (KmsError, KeyError):
            raise DecryptionError() from None
        return aead.open_envelope(dek, envelope, context.aad())

    @staticmethod
    def envelope_key(envelope: bytes) -> tuple[str, int]:
        """(key id, key version) from an envelope header (plain or role-sealed)."""
        if aead.is_role_envelope(envelope):
            return aead.parse_role_envelope(envelope)[:2]
        key_id, version, _ = aead.parse_header(envelope)
        return key_id, version

    def dead_letter_context(self, dedup_key: str, subject_key: str | None = None):
        """The context of a dead letter's original: under the subject's own data key
        when the record was decoded (so ``forget`` shreds it too), else (decode-stage
        failures: no trustworthy subject) under the dead-letter key."""
        key_id = self.subject_key_id(subject_key) if subject_key else DEAD_LETTER_KEY_ID
        return EnvelopeContext(dedup_key, key_id, "original", DEAD_LETTER_SCHEMA)

    def open_dead_letter(self, envelope: bytes, dedup_key: str) -> bytes:
        """A dead letter's original, whichever key it was sealed under."""
        key_id, _ = self.envelope_key(envelope)
        context = EnvelopeContext(dedup_key, key_id, "original", DEAD_LETTER_SCHEMA)
        if key_id != DEAD_LETTER_KEY_ID and not key_id.startswith(SUBJECT_PREFIX):
            raise DecryptionError()
        return self.decrypt(envelope, context)

    # --- keys -----------------------------------------------------------------------

    def _new_row(self, key_id: str, version: int) -> StoredKey:
        kek_version, wrapped = self._kms.wrap(aead.new_key(), _dek_aad(key_id, version))
        now = int(time.time() * 1000)
        return StoredKey(key_id, version, self._kms.kek_id, kek_version, wrapped, ACTIVE, 0, now)

    def _ensure(self, key_id: str) -> StoredKey:
        with self._lock:
            row = self._store.primary(key_id)
            if row is None:
                latest = self._store.latest_version(key_id)
                # Re-read: another process's first use may have landed in between (its
                # row is then version ``latest``, active); only if none is active (never
                # used, or every version retired) propose ``latest + 1``: one wins.
                row = self._store.primary(key_id)
                if row is None:
                    self._store.insert_if_absent(self._new_row(key_id, latest + 1))
                    row = self._store.primary(key_id)
                if row is None:
                    raise KmsError("no active data key")
            return row

    def create(self, key_id: str) -> StoredKey:
        """The primary DEK of ``key_id``, created on first use (one winner)."""
        return self._ensure(key_id)

    def _held(self, key_id: str, now: float) -> bool:
        """True while ``key_id`` must be re-checked in the store on every use."""
        until = self._hold.get(key_id)
        if until is not None and until <= now:
            del self._hold[key_id]
            return False
        return until is not None

    def _dek(self, key_id: str, version: int) -> bytes:
        now = self._clock()
        with self._lock:
            hit = self._cache.get((key_id, version))
            held = self._held(key_id, now)
            if hit and hit[1] > now and not held:
                return hit[0]
            row = self._store.get(key_id, version)
            if row is None or row.state != ACTIVE:
                self._cache.pop((key_id, version), None)
                self._prepared.pop((key_id, version), None)
                raise KeyError(key_id)
            if hit and hit[1] > now and hit[2] == row.wrapped:
                return hit[0]  # held, and the store still has this very key
            dek = self._kms.unwrap(row.kek_version, row.wrapped, _dek_aad(key_id, version))
            self.kms_unwraps += 1
            self._cache[(key_id, version)] = (dek, now + self._config.cache_ttl_s, row.wrapped)
            self._prepared[(key_id, version)] = aead.prepare(dek)
            return dek

    def _prepared_key(self, key_id: str, version: int):
        dek = self._dek(key_id, version)  # checks the TTL and the store on a miss
        prepared = self._prepared.get((key_id, version))
        if prepared is None:
            prepared = self._prepared[(key_id, version)] = aead.prepare(dek)
        return prepared

    def _primary_version(self, key_id: str, now: float) -> int:
        """The primary version of ``key_id`` (cached for the TTL, created on first use)."""
        cached = self._primary.get(key_id)
        if cached and cached[1] > now and not self._held(key_id, now):
            return cached[0]
        version = self._ensure(key_id).version
        self._primary[key_id] = (version, now + self._config.cache_ttl_s)
        return version

    def _use_primary(self, key_id: str) -> tuple[int, bytes]:
        now = self._clock()
        with self._lock:
            for _ in range(4):
                version = self._primary_version(key_id, now)
                left = self._leases.get((key_id, version), 0)
                if left <= 0:
                    lease = self._config.lease
                    total = self._store.reserve(key_id, version, lease)
                    if total < 0 or total > self._config.max_uses:
                        if total > self._config.max_uses:
                            self._rotate_from(key_id, version)
                        self._primary.pop(key_id, None)
                        continue
                    left = lease
                self._leases[(key_id, version)] = left - 1
                try:
                    return version, self._prepared_key(key_id, version)
                except KeyError:
                    self._primary.pop(key_id, None)
            raise KmsError("no usable data key")

    def _rotate_from(self, key_id: str, version: int) -> StoredKey:
        row = self._store.insert_if_absent(self._new_row(key_id, version + 1))
        self._primary.pop(key_id, None)
        return row

    def rotate(self, key_id: str) -> StoredKey:
        """A new primary DEK version for ``key_id``; old versions still decrypt."""
        with self._lock:
            return self._rotate_from(key_id, self._ensure(key_id).version)

    def retire(self, key_id: str, version: int) -> None:
        """Stops ``version`` from decrypting (and encrypting)."""
        with self._lock:
            self._store.set_state(key_id, version, RETIRED)
            self._cache.pop((key_id, version), None)
            self._prepared.pop((key_id, version), None)
            self._primary.pop(key_id, None)

    def rotate_kek(self, retire_old: bool = False) -> dict:
        """New KEK version; every stored DEK is rewrapped under it (no data touched)."""
        with self._lock:
            new = self._kms.rotate()
            rewrapped = self._rewrap_all(new)
            retired = []
            if retire_old:
                # A second pass catches keys another process wrapped under the old KEK
                # while the first pass ran; see docs/keys.md "Rotation" for the remaining window.
                rewrapped += self._rewrap_all(new)
                for version in self._kms.versions():
                    if version != new:
                        self._kms.retire(version)
                        retired.append(version)
            return {"kek_version": new, "rewrapped": rewrapped, "retired": retired}

    def _rewrap_all(self, kek_version: int) -> int:
        count = 0
        for row in self._store.all_keys():
            if row.kek_version == kek_version or row.kek_id == ROLE_PUBLIC:
                continue  # role public keys are not wrapped
            aad = _dek_aad(row.key_id, row.version)
            dek = self._kms.unwrap(row.kek_version, row.wrapped, aad)
            _, wrapped = self._kms.wrap(dek, aad)
            count += self._store.rewrap(row, kek_version, wrapped)
        return count

    def forget(self, subject_key: str) -> tuple[str, int]:
        """Crypto-shreds a subject: (key id, number of DEK versions destroyed)."""
        key_id = self.subject_key_id(subject_key)
        return key_id, self.forget_key_id(key_id)

    def forget_key_id(self, key_id: str) -> int:
        """Erases ``key_id`` (and, for a subject, its pseudonym secret); returns the
        number of data-key versions destroyed."""
        with self._lock:
            count = 0
            for doomed in _with_partner(key_id):
                count += self._store.erase(doomed)
            self.evict(key_id)
            return count

    def evict(self, key_id: str, hold: bool = True) -> None:
        """Drops ``key_id`` (and its partner id) from this process's caches at once.

        With ``hold``, every use for one TTL re-checks the store: an erasure request
        seen before the store applied it still takes effect as soon as it is applied.
        Called by the Kafka store's index and by ``ErasureListener``.
        """
        now = self._clock()
        with self._lock:
            for doomed in _with_partner(key_id):
                for k in [k for k in self._cache if k[0] == doomed]:
                    del self._cache[k]
                    self._prepared.pop(k, None)
                for k in [k for k in self._leases if k[0] == doomed]:
                    del self._leases[k]
                self._primary.pop(doomed, None)
                if hold:
                    self._hold[doomed] = now + self._config.cache_ttl_s
            self.evictions += 1

    def subject_secret(self, subject_key: str, scope: str) -> bytes:
        """A per-subject secret for ``scope`` (keyed pseudonyms, date shifts).

        Derived from the subject's pseudonym key ``p:<subject key id>`` (created on first
        use, one winner across the cluster, destroyed by ``forget``). Raises
        ``SubjectErased`` once the subject is forgotten.
        """
        key_id = PSEUDONYM_PREFIX + self.subject_key_id(subject_key)[len(SUBJECT_PREFIX) :]
        now = self._clock()
        with self._lock:
            for _ in range(2):
                version = self._primary_version(key_id, now)
                try:
                    dek = self._dek(key_id, version)
                    break
                except KeyError:
                    self._primary.pop(key_id, None)
            else:
                raise KmsError("no usable pseudonym key")
        return aead.keyed_hash(dek, f"veil-subject-key:{scope}".encode())

    def list_keys(self) -> list[dict]:
        """Key ids, versions, states and KEK versions; never key material."""
        with self._lock:
            rows, erased = self._store.all_keys(), self._store.erased_ids()
        return [
            {
                "key_id": k.key_id,
                "version": k.version,
                "state": k.state,
                "kek": f"{k.kek_id}/{k.kek_version}",
                "uses": k.uses,
            }
            | (
                {"fingerprint": aead.public_key_fingerprint(k.wrapped)}
                if k.kek_id == ROLE_PUBLIC
                else {}
            )
            for k in rows
        ] + [{"key_id": e, "state": "erased"} for e in erased]

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._prepared.clear()
            self._primary.clear()

    def secret_keys(self) -> KmsSecretKeys:
        return KmsSecretKeys(self)


def _with_partner(key_id: str) -> tuple:
    """A subject's key id and its pseudonym key id (``s:X`` <-> ``p:X``); others alone."""
    for prefix, partner in ((SUBJECT_PREFIX, PSEUDONYM_PREFIX), (PSEUDONYM_PREFIX, SUBJECT_PREFIX)):
        if key_id.startswith(prefix):
            return (key_id, partner + key_id[len(prefix) :])
    return (key_id,)


def _dek_aad(key_id: str, version: int) -> bytes:
    return f"veil-dek|{key_id}|{version}".encode()


class KmsSecretKeys(SecretKeys):
    """``SecretKeys`` served by the key service.

    The production implementation of ``veil.transforms.keys.SecretKeys``. Keyed
    pseudonyms and date shifts ask ``key_for_subject``: a secret per subject, so erasing
    the subject makes its pseudonyms impossible to recompute (and unlinkable to new
    data). ``key_for(scope)`` (voices, anything not per subject) is one stored key per
    scope. Both are data keys wrapped by the KEK, created once for the whole cluster
    (one winner), unwrapped on the worker.
    """

    def __init__(self, service: KeyService):
        self._service = service

    def key_for_subject(self, scope: str, subject_key: str) -> bytes:
        """Per-subject: destroyed with the subject's keys (``SubjectKeyErased`` after)."""
        try:
            return self._service.subject_secret(subject_key, scope)
        except SubjectErased:
            raise SubjectKeyErased() from None
        except (KmsError, KeyError, DecryptionError):
            raise KeyUnavailable() from None

    def key_for(self, scope: str) -> bytes:
        key_id = SCOPE_PREFIX + scope
        try:
            dek = self._service._dek(key_id, self._service.create(key_id).version)
        except (KmsError, KeyError, DecryptionError, SubjectErased):
            raise KeyUnavailable() from None
        return aead.keyed_hash(dek, f"veil-key:{scope}".encode())

    @property
    def key_id(self) -> str:
        return "kms:" + hashlib.sha256(self._service._config.store.encode()).hexdigest()[:12]
