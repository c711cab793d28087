"""Re-identification and erasure requests: who may decrypt, and what each attempt leaves.

``reveal_record`` decrypts a sanitized record's ``protected`` fields only when the
principal's role is allowed by the policy's ``reidentification`` section for every
regime of the record, and returns one content-free audit event per attempt, allowed or
denied. ``erasure_audit_event`` is the audit event of a crypto-shredding.

Policy section (ignored by the anonymization policy parser)::

    reidentification:
      default: [privacy-officer]           # records under no regime
      regimes:
        HIPAA_PHI: [privacy-officer]       # every regime of a record must allow the role
        PCI: []                            # nobody
      role_keys:                           # optional: pin each role's public key
        privacy-officer: sha256:...        # (fingerprint `veil keys add-role` prints)

Once a role named here has a key (``veil keys add-role``), the protection stage seals
every protected field to the public keys of the roles allowed for the record's regimes
(``veil.transforms.crypto.aead.seal_for_roles``): opening one needs the subject's data
key AND the private key of a granted role, which lives on that role's PKCS#11 token
(or in its secret-sealed local role keyring). The role typed by the caller then opens
nothing by itself (``ROLE_NOT_AUTHENTICATED``), and neither does the pipeline's KEK.

A regime the section does not name allows nobody (fail closed).

The policy is the pipeline's, pinned: a record is revealed only under the policy whose
``version`` the record names, and each envelope's associated data binds that version,
the policy file's SHA-256 digest and the record's classification (sensitivity and
regimes; ``veil.transforms.crypto.service.protection_binding``). A caller's own policy
file, or a record whose ``regimes`` were edited, no longer decrypts. Envelopes sealed
before the binding existed (``SanitizedRecord/1``) are not revealed (fail closed).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
import time
from pathlib import Path

from veil.transforms.crypto.aead import DecryptionError, is_role_envelope
from veil.transforms.crypto.service import (
    BOUND_SCHEMA,
    EnvelopeContext,
    KeyService,
    protection_binding,
)
from veil.transforms.policy import load_yaml
from veil.transforms.version import __version__ as PIPELINE_VERSION

STAGE = "reveal"


@dataclasses.dataclass(frozen=True)
class RevealPolicy:
    """Roles allowed to re-identify, per regime."""

    version: str
    default: frozenset
    regimes: dict
    digest: str = ""
    key_pins: dict = dataclasses.field(default_factory=dict)  # role -> "sha256:..."

    @classmethod
    def load(cls, path) -> RevealPolicy:
        from veil.transforms.classification import default_policy_path

        data = Path(path or default_policy_path()).read_bytes()
        raw = load_yaml(data.decode("utf-8"))
        section = (raw or {}).get("reidentification") or {}
        if not isinstance(section, dict):
            raise ValueError("reidentification must be a mapping")
        regimes = section.get("regimes") or {}
        return cls(
            version=str(raw.get("version", "")),
            default=frozenset(section.get("default") or ()),
            regimes={k: frozenset(v or ()) for k, v in regimes.items()},
            digest=hashlib.sha256(data).hexdigest(),
            key_pins={str(k): str(v) for k, v in (section.get("role_keys") or {}).items()},
        )

    def allows(self, role: str, regimes) -> bool:
        regimes = list(regimes or ())
        if not regimes:
            return role in self.default
        return all(role in self.regimes.get(regime, frozenset()) for regime in regimes)

    @property
    def roles(self) -> frozenset:
        """Every role the section names."""
        return self.default.union(*self.regimes.values())

    def allowed_roles(self, regimes) -> list:
        """The roles that may reveal a record under ``regimes`` (sorted)."""
        return sorted(r for r in self.roles if self.allows(r, regimes))

    def pins(self) -> tuple:
        """(version, digest, roles per regime): what the protection stage binds and
        which roles' keys it grants; plain data, so it pickles into the job graph."""
        return (
            self.version,
            self.digest,
            {
                "default": sorted(self.default),
                "regimes": {k: sorted(v) for k, v in self.regimes.items()},
                "role_keys": dict(self.key_pins),
            },
        )

    @classmethod
    def from_pins(cls, pins) -> RevealPolicy:
        section = pins[2] if len(pins) > 2 and pins[2] else {"default": (), "regimes": {}}
        return cls(
            version=pins[0],
            default=frozenset(section["default"]),
            regimes={k: frozenset(v) for k, v in section["regimes"].items()},
            digest=pins[1],
            key_pins=dict(section.get("role_keys") or {}),
        )


def policy_digest(path=None) -> str:
    """SHA-256 (hex) of the policy file the pipeline runs with (packaged default: None)."""
    from veil.transforms.classification import default_policy_path

    return hashlib.sha256(Path(path or default_policy_path()).read_bytes()).hexdigest()


def _event(record: dict, action: str, outcome: str, reason: str, policy_version: str, **extra):
    source = record.get("source") or {"topic": "", "partition": -1, "offset": -1}
    event = {
        "event_id": secrets.token_hex(16),
        "event_time": int(time.time() * 1000),
        "record_id": record.get("record_id"),
        "source": {k: source[k] for k in ("topic", "partition", "offset")},
        "stage": STAGE,
        "action": action,
        "reason_code": reason,
        "outcome": outcome,
        "modality": record.get("modality"),
        "detectors": {},
        "policy_version": policy_version,
        "pipeline_version": PIPELINE_VERSION,
        "entity_counts": {},
        "key_id": None,
        "key_version": None,
        "duration_ms": None,
        "chain": None,
    }
    event.update(extra)
    return event


def _envelope_bytes(value) -> bytes:
    return value if isinstance(value, (bytes, bytearray)) else base64.b64decode(value)


def reveal_record(
    service: KeyService,
    policy: RevealPolicy,
    record: dict,
    principal: str,
    role: str,
    role_key=None,
):
    """Decrypts ``record``'s protected fields for ``principal`` acting as ``role``.

    Args:
        service: the key service.
        policy: who may re-identify.
        record: a SanitizedRecord as a dict (envelopes as bytes or base64 text).
        principal: who asks (recorded in the audit event's reason code).
        role: the role they act in.
        role_key: the role's authenticated key (``veil.transforms.crypto.kms.RoleKey``:
            logged into the role's token, or its keyring opened with its secret), or
            None. Role-sealed envelopes open only with it; without it the record is
            denied (``ROLE_NOT_AUTHENTICATED``).

    Returns:
        (fields, audit event): ``fields`` is ``[(field_path, plaintext bytes)]`` (empty
        when denied); a field that no longer decrypts (erased or retired key, tampering,
        no grant for the role) is left out and counted in the event.
    """
    who = f"{principal}/{role}"
    classification = record.get("classification") or {}
    regimes = classification.get("regimes") or []
    if str(record.get("policy_version") or "") != policy.version:
        # Another policy than the one the record was protected under: never applied.
        return [], _event(
            record, "REVEAL_DENIED", "FAILED", f"POLICY_MISMATCH:{who}", policy.version
        )
    if not policy.allows(role, regimes):
        return [], _event(
            record, "REVEAL_DENIED", "FAILED", f"ROLE_NOT_ALLOWED:{who}", policy.version
        )
    try:
        envelopes = [
            (item["field_path"], _envelope_bytes(item["envelope"]))
            for item in record.get("protected") or []
        ]
    except (KeyError, TypeError, ValueError):
        envelopes = None
    authenticated = role_key is not None and role_key.role == role
    if envelopes and not authenticated and any(is_role_envelope(e) for _, e in envelopes):
        # Sealed to the roles' keys: typing a role opens nothing without its token.
        return [], _event(
            record, "REVEAL_DENIED", "FAILED", f"ROLE_NOT_AUTHENTICATED:{who}", policy.version
        )
    binding = protection_binding(
        str(classification.get("sensitivity") or ""), regimes, policy.version, policy.digest
    )
    fields, failed, key = [], 0 if envelopes is not None else 1, (None, None)
    for field_path, envelope in envelopes or ():
        try:
            key = service.envelope_key(envelope)
            context = EnvelopeContext(
                record["record_id"], key[0], field_path, BOUND_SCHEMA, binding
            )
            if is_role_envelope(envelope):
                fields.append((field_path, service.decrypt_for_role(envelope, context, role_key)))
            else:  # sealed before any role had a key: the key service alone opens it
                fields.append((field_path, service.decrypt(envelope, context)))
        except (DecryptionError, ValueError, KeyError, TypeError):
            failed += 1
    outcome = "OK" if not failed else "FAILED"
    return fields, _event(
        record,
        "REVEALED" if fields else "REVEAL_FAILED",
        outcome,
        who if authenticated else f"{who}:unauthenticated",
        policy.version,
        entity_counts={"revealed": len(fields), "undecryptable": failed},
        key_id=key[0],
        key_version=key[1],
    )


def erasure_audit_event(key_id: str, destroyed: int, requested_by: str) -> dict:
    """The audit event of a crypto-shredding (key id only; never the subject key)."""
    return _event(
        {"record_id": None, "source": {"topic": "", "partition": -1, "offset": -1}},
        "KEYS_DESTROYED",
        "OK",
        requested_by,
        "",
        stage="erasure",
        entity_counts={"dek_versions": destroyed},
        key_id=key_id,
    )
