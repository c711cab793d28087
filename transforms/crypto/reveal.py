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

import yaml

from veil.transforms.crypto.aead import DecryptionError
from veil.transforms.crypto.service import (
    BOUND_SCHEMA,
    EnvelopeContext,
    KeyService,
    protection_binding,
)
from veil.transforms.version import __version__ as PIPELINE_VERSION

STAGE = "reveal"


@dataclasses.dataclass(frozen=True)
class RevealPolicy:
    """Roles allowed to re-identify, per regime."""

    version: str
    default: frozenset
    regimes: dict
    digest: str = ""

    @classmethod
    def load(cls, path) -> "RevealPolicy":
        from veil.transforms.classification import default_policy_path

        data = Path(path or default_policy_path()).read_bytes()
        raw = yaml.safe_load(data.decode("utf-8"))
        section = (raw or {}).get("reidentification") or {}
        if not isinstance(section, dict):
            raise ValueError("reidentification must be a mapping")
        regimes = section.get("regimes") or {}
        return cls(
            version=str(raw.get("version", "")),
            default=frozenset(section.get("default") or ()),
            regimes={k: frozenset(v or ()) for k, v in regimes.items()},
            digest=hashlib.sha256(data).hexdigest(),
        )

    def allows(self, role: str, regimes) -> bool:
        regimes = list(regimes or ())
        if not regimes:
            return role in self.default
        return all(role in self.regimes.get(regime, frozenset()) for regime in regimes)


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
    service: KeyService, policy: RevealPolicy, record: dict, principal: str, role: str
):
    """Decrypts ``record``'s protected fields for ``principal`` acting as ``role``.

    Args:
        service: the key service.
        policy: who may re-identify.
        record: a SanitizedRecord as a dict (envelopes as bytes or base64 text).
        principal: who asks (recorded in the audit event's reason code).
        role: the role they act in.

    Returns:
        (fields, audit event): ``fields`` is ``[(field_path, plaintext bytes)]`` (empty
        when denied); a field that no longer decrypts (erased or retired key, tampering)
        is left out and counted in the event.
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
    binding = protection_binding(
        str(classification.get("sensitivity") or ""), regimes, policy.version, policy.digest
    )
    fields, failed, key = [], 0, (None, None)
    for item in record.get("protected") or []:
        try:
            envelope = _envelope_bytes(item["envelope"])
            key = service.envelope_key(envelope)
            context = EnvelopeContext(
                record["record_id"], key[0], item["field_path"], BOUND_SCHEMA, binding
            )
            fields.append((item["field_path"], service.decrypt(envelope, context)))
        except (DecryptionError, ValueError, KeyError, TypeError):
            failed += 1
    outcome = "OK" if not failed else "FAILED"
    return fields, _event(
        record,
        "REVEALED" if fields else "REVEAL_FAILED",
        outcome,
        who,
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
