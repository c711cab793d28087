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
    def create(cls, path, master_key_env="VEIL_MASTER_KEY", master_key_file=None) -> LocalKeyring:
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
_SOFTHSM_CONF: str | None = None


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
    global _SOFTHSM_CONF
    if _SOFTHSM_CONF and os.environ.get("SOFTHSM2_CONF") == _SOFTHSM_CONF:
        # This process already pointed SoftHSM2 at a token directory (and may have
        # loaded the library, which reads its config once): add the token there.
        pass
    else:
        base = Path(directory)
        (base / "tokens").mkdir(parents=True, exist_ok=True)
        conf = base / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n")
        _SOFTHSM_CONF = os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--so-pin", so_pin, "--pin", pin],
        check=True,
        capture_output=True,
    )  # fmt: skip
    import sys

    if "pkcs11" in sys.modules:  # loaded before this token existed: make it visible
        with _SESSIONS_LOCK:
            sys.modules["pkcs11"].lib(SOFTHSM_MODULE).reinitialize()
            _SESSIONS.clear()  # their sessions died with the old initialisation
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


# --- reveal roles: one private key per role, on that role's token (issue 18) ----------
#
# The pipeline encrypts each protected field's role secret to the public key of every
# role the policy allows (``aead.seal_for_roles``); only a principal who can use the
# role's private key opens it. PKCS#11: an RSA key pair generated on the role's own
# token (private key sensitive, non-extractable; the token decrypts), used after a login
# with the role's PIN. Local: the private key in a per-role keyring file, sealed
# (AES-256-GCM) under the role's own secret (64 hex digits in a 0600 file or a variable).

ROLE_LABEL_PREFIX = "veil-role-"


class RoleKey(abc.ABC):
    """An authenticated reveal role: its name, public key, and the private-key operation."""

    role: str
    public_der: bytes

    @abc.abstractmethod
    def unwrap(self, wrapped: bytes) -> bytes:
        """The role secret of one grant; ``DecryptionError`` on any failure."""


def _role_aad(role: str) -> bytes:
    return f"veil-role-key|{role}".encode()


def _secret(env: str | None, path: str | None) -> bytes:
    try:
        return _master_key(env, path)
    except KmsError:
        raise KmsError("the role secret cannot be read") from None


class LocalRoleKey(RoleKey):
    """A role's private key in a keyring file sealed under the role's own secret."""

    def __init__(self, path, secret_env: str | None = None, secret_file: str | None = None):
        try:
            doc = json.loads(Path(path).read_text())
            self.role = str(doc["role"])
            self.public_der = base64.b64decode(doc["public"])
            sealed = base64.b64decode(doc["private"])
        except (OSError, ValueError, KeyError, TypeError):
            raise KmsError("role keyring cannot be read") from None
        secret = _secret(secret_env, secret_file)
        try:
            private = aead.unwrap_key(secret, sealed, _role_aad(self.role) + self.public_der)
            self._private = aead.RolePrivateKey(private)
        except DecryptionError:
            raise KmsError("the role secret does not open this role keyring") from None

    @classmethod
    def create(cls, path, role: str, secret_env=None, secret_file=None) -> LocalRoleKey:
        """A new key pair for ``role`` (refuses to overwrite an existing file)."""
        secret = _secret(secret_env, secret_file)
        public, private = aead.new_role_keypair()
        doc = {
            "format": 1,
            "role": role,
            "public": _b64(public),
            "private": _b64(aead.wrap_key(secret, private, _role_aad(role) + public)),
        }
        _write_private(Path(path), doc, exclusive=True)
        return cls(path, secret_env, secret_file)

    def unwrap(self, wrapped):
        return self._private.unwrap(wrapped)


def read_pin(pin_env: str | None, pin_file: str | None) -> str:
    """A PIN from a 0600 file or an environment variable (never from the command line)."""
    if pin_file:
        p = Path(pin_file)
        try:
            if p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KmsError("PIN file is readable by others; refusing it")
            pin = p.read_text().strip()
        except OSError:
            raise KmsError("PIN file cannot be read") from None
    else:
        pin = os.environ.get(pin_env or "", "")
    if not pin:
        raise KmsError("no PIN: set the environment variable or PIN file")
    return pin


class Pkcs11RoleKey(RoleKey):
    """A role's RSA key pair on the role's own PKCS#11 token (login with its PIN).

    Args:
        module: PKCS#11 library; token_label: the role's token; role: the role name
            (the key pair is labelled ``veil-role-<role>``); pin_env / pin_file: where
            the role's user PIN is.
        create: generate the key pair on the token if it has none.
    """

    def __init__(self, module, token_label, role, pin_env=None, pin_file=None, create=False):
        try:
            import pkcs11
            from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
        except ImportError:
            raise KmsError("python-pkcs11 is not installed") from None
        pin = read_pin(pin_env, pin_file)
        self.role, self._mechanism = role, Mechanism
        label = ROLE_LABEL_PREFIX + role
        try:
            # A fresh session per role key (not shared): the login is the authentication.
            token = pkcs11.lib(module).get_token(token_label=token_label)
            self._session = token.open(user_pin=pin, rw=create)
        except Exception as exc:  # wrong PIN, no such token: the class name only
            raise KmsError(f"role token login failed ({type(exc).__name__})") from None
        try:
            found = list(
                self._session.get_objects(
                    {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}
                )
            )
            if not found and create:
                public, private = self._session.generate_keypair(
                    KeyType.RSA,
                    aead.RSA_BITS,
                    label=label,
                    store=True,
                    private_template={
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.DECRYPT: True,
                    },
                )
                found = [private]
            if not found:
                raise KmsError("the role token holds no key for this role")
            self._private = found[0]
            (public,) = self._session.get_objects(
                {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: label}
            )
            self.public_der = aead.rsa_public_der(
                public[Attribute.MODULUS], public[Attribute.PUBLIC_EXPONENT]
            )
        except Exception as exc:
            self.close()  # log out: the login must not outlive a refused key
            if isinstance(exc, KmsError):
                raise
            raise KmsError(f"role key unavailable ({type(exc).__name__})") from None

    def unwrap(self, wrapped):
        from pkcs11 import MGF

        try:
            return bytes(
                self._private.decrypt(
                    wrapped,
                    mechanism=self._mechanism.RSA_PKCS_OAEP,
                    mechanism_param=(self._mechanism.SHA_1, MGF.SHA1, None),
                )
            )
        except Exception:
            raise DecryptionError() from None

    def close(self):
        try:
            self._session.close()
        except Exception:  # already closed
            pass
