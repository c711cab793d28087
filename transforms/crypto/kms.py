"""Key-encryption-key (KEK) backends behind one small interface.

A ``Kms`` wraps and unwraps data keys under its KEK and rotates the KEK; key material of
a KEK never leaves the backend object (for PKCS#11, never leaves the token). Two
backends ship:

* ``LocalKeyring``: KEKs in a JSON file (mode 0600), each KEK sealed under a master key
  read from an environment variable (hex) or a secret file on the worker. The embedded
  default for one machine, the demo and the tests.
* ``Pkcs11Kms``: KEKs are non-extractable AES-256 keys inside a PKCS#11 token (an HSM;
  SoftHSM2 in the tests); wrapping is AES-GCM computed by the token.

Vault transit or a cloud KMS plug in as a third class with the same four methods:
``wrap`` calls Vault's ``transit/encrypt/<name>`` (or AWS ``kms:Encrypt``, GCP
``cryptoKeys.encrypt``) with ``aad`` as the ``context``/``EncryptionContext``/
``additionalAuthenticatedData``; ``unwrap`` the matching decrypt; ``rotate`` is
``transit/keys/<name>/rotate`` (or a new key version); ``kek_version`` comes back in the
ciphertext (``vault:v3:...``) or key-version name. Nothing else in Veil changes.

Example::

    kms = LocalKeyring.create("/etc/veil/keyring.json", master_key_env="VEIL_MASTER_KEY")
    kek_version, wrapped = kms.wrap(dek, b"aad")
    kms.unwrap(kek_version, wrapped, b"aad") == dek
"""

from __future__ import annotations

import abc
import base64
import json
import os
import re
import stat
import threading
from pathlib import Path

from veil.transforms.crypto import aead
from veil.transforms.crypto.aead import DecryptionError


class KmsError(Exception):
    """The KMS is not configured, not reachable, or refused the operation."""


class Kms(abc.ABC):
    """Wraps data keys under a versioned key-encryption key."""

    kek_id: str = "kms"

    @abc.abstractmethod
    def primary_version(self) -> int:
        """The KEK version new wraps use."""

    @abc.abstractmethod
    def wrap(self, key: bytes, aad: bytes) -> tuple[int, bytes]:
        """(KEK version, wrapped key) under the primary KEK."""

    @abc.abstractmethod
    def unwrap(self, kek_version: int, wrapped: bytes, aad: bytes) -> bytes:
        """The key; ``DecryptionError`` on any failure (wrong KEK, tampering, retired)."""

    @abc.abstractmethod
    def rotate(self) -> int:
        """Creates a new primary KEK version; returns it. Old versions still unwrap."""

    @abc.abstractmethod
    def retire(self, kek_version: int) -> None:
        """Destroys an old KEK version (after every data key was rewrapped)."""

    @abc.abstractmethod
    def versions(self) -> list[int]:
        """KEK versions that can still unwrap."""


def _master_key(env: str | None, path: str | None) -> bytes:
    raw = None
    if env and os.environ.get(env):
        raw = os.environ[env].encode()
    elif path:
        p = Path(path)
        try:
            if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KmsError("master key file is readable by others; refusing it")
            raw = p.read_bytes()
        except OSError:
            raise KmsError("master key file cannot be read") from None
    if raw is None:
        raise KmsError("no master key: set the environment variable or secret file")
    text = raw.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text.decode())
    if len(raw) == aead.KEY_BYTES:
        return raw
    raise KmsError("the master key must be 32 bytes (64 hex digits)")


class LocalKeyring(Kms):
    """KEKs in a local file, each sealed under a master key from the environment."""

    kek_id = "local"

    def __init__(self, path, master_key_env: str | None = "VEIL_MASTER_KEY", master_key_file=None):
        self._path = Path(path)
        self._master = _master_key(master_key_env, master_key_file)
        self._keks: dict[int, bytes] = {}
        self._primary = 0
        self._load()

    @classmethod
    def create(cls, path, master_key_env="VEIL_MASTER_KEY", master_key_file=None) -> "LocalKeyring":
        """Creates a keyring with one KEK (refuses to overwrite an existing file)."""
        path = Path(path)
        master = _master_key(master_key_env, master_key_file)
        kek = aead.new_key()
        doc = {
            "format": 1,
            "primary": 1,
            "keks": {"1": _b64(aead.wrap_key(master, kek, _kek_aad(1)))},
        }
        _write_private(path, doc, exclusive=True)
        return cls(path, master_key_env, master_key_file)

    def _load(self):
        try:
            doc = json.loads(self._path.read_text())
        except (OSError, ValueError):
            raise KmsError("keyring file cannot be read") from None
        try:
            self._keks = {
                int(v): aead.unwrap_key(self._master, base64.b64decode(w), _kek_aad(int(v)))
                for v, w in doc["keks"].items()
            }
        except DecryptionError:
            raise KmsError("the master key does not open this keyring") from None
        self._primary = int(doc["primary"])
        self._doc = doc
        self._mtime = self._path.stat().st_mtime_ns

    def _refresh(self):
        """Reloads the keyring if another process rotated or retired a KEK."""
        try:
            if self._path.stat().st_mtime_ns != self._mtime:
                self._load()
        except OSError:
            raise KmsError("keyring file cannot be read") from None

    def _save(self):
        _write_private(self._path, self._doc, exclusive=False)

    def primary_version(self) -> int:
        return self._primary

    def wrap(self, key, aad):
        self._refresh()  # never wrap under a KEK another process retired
        return self._primary, aead.wrap_key(self._keks[self._primary], key, aad)

    def unwrap(self, kek_version, wrapped, aad):
        if kek_version not in self._keks:
            self._refresh()
        kek = self._keks.get(kek_version)
        if kek is None:
            raise DecryptionError()
        return aead.unwrap_key(kek, wrapped, aad)

    def rotate(self):
        self._load()  # another process may have rotated since
        version = max(self._keks) + 1
        kek = aead.new_key()
        self._doc["keks"][str(version)] = _b64(aead.wrap_key(self._master, kek, _kek_aad(version)))
        self._doc["primary"] = version
        self._save()
        self._keks[version], self._primary = kek, version
        return version

    def retire(self, kek_version):
        if kek_version == self._primary:
            raise KmsError("the primary KEK cannot be retired")
        self._doc["keks"].pop(str(kek_version), None)
        self._keks.pop(kek_version, None)
        self._save()

    def versions(self):
        return sorted(self._keks)


def _kek_aad(version: int) -> bytes:
    return f"veil-kek|local|{version}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _write_private(path: Path, doc: dict, exclusive: bool):
    path.parent.mkdir(parents=True, exist_ok=True)
    if exclusive and path.exists():
        raise FileExistsError(str(path))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


_SESSIONS: dict = {}
_SESSIONS_LOCK = threading.Lock()


SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"  # Debian's softhsm2 package


def init_softhsm_token(directory, label: str, pin: str, so_pin: str = "12345678") -> bool:
    """Creates a SoftHSM2 token under ``directory`` for tests, benchmarks and demos.

    Points ``SOFTHSM2_CONF`` at a config in ``directory`` (the library reads it once,
    when first loaded in a process) and runs ``softhsm2-util --init-token``. Returns
    False when SoftHSM2 is not installed (``deploy/setup-hsm.sh`` installs it).
    """
    import shutil
    import subprocess

    if not (os.path.exists(SOFTHSM_MODULE) and shutil.which("softhsm2-util")):
        return False
    base = Path(directory)
    (base / "tokens").mkdir(parents=True, exist_ok=True)
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--so-pin", so_pin, "--pin", pin],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return True


class Pkcs11Kms(Kms):
    """KEKs inside a PKCS#11 token; the token computes every wrap and unwrap.

    KEK version ``n`` is the AES-256 secret key labelled ``<label>-v<n>`` (sensitive,
    non-extractable). The PIN is read from an environment variable on the worker.

    Args:
        module: path of the PKCS#11 library (e.g. ``/usr/lib/softhsm/libsofthsm2.so``).
        token_label: the token to use.
        pin_env: environment variable holding the user PIN.
        label: KEK label prefix.
    """

    kek_id = "pkcs11"

    def __init__(
        self, module: str, token_label: str, pin_env: str = "VEIL_HSM_PIN", label="veil-kek"
    ):
        try:
            import pkcs11
            from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
            from pkcs11.mechanisms import GCMParams
        except ImportError:
            raise KmsError("python-pkcs11 is not installed") from None
        self._p = (pkcs11, Attribute, KeyType, Mechanism, ObjectClass, GCMParams)
        pin = os.environ.get(pin_env or "")
        if not pin:
            raise KmsError("no HSM PIN in the environment")
        try:
            # PKCS#11 logins are per process: one session per token, shared.
            with _SESSIONS_LOCK:
                session = _SESSIONS.get((module, token_label))
                if session is None:
                    token = pkcs11.lib(module).get_token(token_label=token_label)
                    session = _SESSIONS[(module, token_label)] = token.open(user_pin=pin, rw=True)
            self._session = session
        except Exception as exc:  # the binding's errors carry no secrets, but keep the class
            raise KmsError(f"PKCS#11 token unavailable ({type(exc).__name__})") from None
        self._label = label
        self._keys: dict[int, object] = {}
        self._scan()

    def _scan(self):
        pkcs11, Attribute, KeyType, Mechanism, ObjectClass, _ = self._p
        self._keys = {}
        for obj in self._session.get_objects(
            {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
        ):
            m = re.fullmatch(re.escape(self._label) + r"-v(\d+)", obj.label or "")
            if m:
                self._keys[int(m.group(1))] = obj

    def _generate(self, version: int):
        pkcs11, Attribute, KeyType, *_ = self._p
        return self._session.generate_key(
            KeyType.AES,
            256,
            label=f"{self._label}-v{version}",
            store=True,
            template={
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
            },
        )

    def primary_version(self):
        if not self._keys:
            self._scan()
            if not self._keys:
                self._keys[1] = self._generate(1)
        return max(self._keys)

    def wrap(self, key, aad):
        *_, Mechanism, _, GCMParams = self._p
        self._scan()  # wraps are rare (new data keys): always use the token's newest KEK
        version = self.primary_version()
        nonce = os.urandom(aead.NONCE_BYTES)
        body = self._keys[version].encrypt(
            key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad, 128)
        )
        return version, b"\x01" + nonce + bytes(body)

    def unwrap(self, kek_version, wrapped, aad):
        *_, Mechanism, _, GCMParams = self._p
        if kek_version not in self._keys:
            self._scan()
        kek = self._keys.get(kek_version)
        if kek is None or len(wrapped) < 29 or wrapped[:1] != b"\x01":
            raise DecryptionError()
        try:
            return bytes(
                kek.decrypt(
                    wrapped[13:],
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(wrapped[1:13], aad, 128),
                )
            )
        except Exception:
            raise DecryptionError() from None

    def rotate(self):
        self._scan()
        version = max(self._keys, default=0) + 1
        self._keys[version] = self._generate(version)
        return version

    def retire(self, kek_version):
        if kek_version == self.primary_version():
            raise KmsError("the primary KEK cannot be retired")
        key = self._keys.pop(kek_version, None)
        if key is not None:
            key.destroy()

    def versions(self):
        self._scan()
        return sorted(self._keys)
