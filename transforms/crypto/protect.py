"""The protection stage: originals set aside by ``encrypt`` operators become envelopes.

``ProtectOriginals`` runs after a modality's ``ApplyPrivacyStep`` and before
``PublishSanitized``. For each ``WorkItem`` with ``pending_protection`` it encrypts every
``(field_path, original)`` under the subject's current data key into a ``ProtectedField``
(``{"field_path", "envelope"}``), clears ``pending_protection`` and adds a ``protect``
audit step with the key id and version. Any failure dead-letters the record without its
originals (fail closed): ``SUBJECT_ERASED`` for a crypto-shredded subject,
``PROTECTION_FAILED`` otherwise. Records with nothing to protect pass unchanged.

Example::

    config = KeyServiceConfig(store="keys.db", keyring="keyring.json")
    branch = items | ApplyPrivacyStep(TextHandler(policy))
    protected = branch.records | ProtectOriginals(config)
    protected.records | PublishSanitized(topics, version)
    protected.dead_letters | PublishDeadLetters(topics, version)
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from veil.transforms.crypto.service import (
    BOUND_SCHEMA,
    EnvelopeContext,
    KeyServiceConfig,
    protection_binding,
)
from veil.transforms.crypto.store import SubjectErased
from veil.transforms.records import AuditStep, ErrorCode, Failure, WorkItem

_LOGGER = logging.getLogger(__name__)

STAGE = "protect"
DEAD_LETTER = "dead_letters"


def protect_item(service, item: WorkItem, policy=("", "")) -> WorkItem:
    """Encrypts ``item.pending_protection`` into ``item.protected`` (in place).

    ``policy`` is the pipeline policy's (version, digest[, roles]) (``RevealPolicy.pins``):
    each envelope's associated data binds version, digest and the record's
    classification (``protection_binding``). When any role the policy names has a key
    registered in the key service (``veil keys add-role``), every envelope is
    role-sealed to the roles the policy allows for the record's regimes (none allowed:
    nobody can open it); else it opens with the key service alone.

    Raises ``SubjectErased`` or the key service's errors; on error ``item`` keeps its
    pending originals and gets no envelopes.
    """
    if not item.pending_protection:
        return item
    if item.classification is None:
        raise ValueError("no classification to bind")
    binding = protection_binding(
        item.classification.sensitivity, item.classification.regimes, policy[0], policy[1]
    )
    subject_key_id = service.subject_key_id(item.record["subject_key"])
    grants = None
    if len(policy) > 2 and policy[2]:
        from veil.transforms.crypto.reveal import RevealPolicy

        roles = RevealPolicy.from_pins(policy)
        grants = service.role_grants(roles.roles, roles.allowed_roles(item.classification.regimes))
        if grants and roles.key_pins:  # a substituted public key gets no grant
            from veil.transforms.crypto.aead import public_key_fingerprint

            grants = {
                r: k
                for r, k in grants.items()
                if roles.key_pins.get(r, public_key_fingerprint(k)) == public_key_fingerprint(k)
            }
    fields, key_id, version = [], None, None
    for field_path, original in item.pending_protection:
        context = EnvelopeContext(item.record_id, subject_key_id, field_path, BOUND_SCHEMA, binding)
        envelope, key_id, used = service.encrypt_with_key(original, context, grants)
        version = used if version is None else max(version, used)
        fields.append({"field_path": field_path, "envelope": envelope})
    item.protected.extend(fields)
    item.pending_protection = []
    item.trail.append(
        AuditStep(
            stage=STAGE,
            action="PROTECTED",
            entity_counts={"protected_fields": len(fields)}
            | ({} if grants is None else {"role_grants": len(grants)}),
            key_id=key_id,
            key_version=version,
        )
    )
    return item


class ProtectOriginalsFn(beam.DoFn):
    """Encrypts pending originals; the key service opens once per process in ``setup``."""

    def __init__(self, config: KeyServiceConfig, policy=("", "")):
        self._config = config
        self._policy = tuple(policy)
        self._protected = Metrics.counter("veil.protect", "fields_protected")
        self._failed = Metrics.counter("veil.protect", "dead_letters")

    def setup(self):
        try:
            self._service = self._config.open()
        except Exception as exc:  # no KMS on this worker: every record fails closed
            _LOGGER.error("Key service unavailable: %s", type(exc).__name__)
            self._service = None

    def process(self, item: WorkItem):
        listener = getattr(self._service, "erasure_listener", None)
        if listener is not None:  # 0 pages someone: erasures then wait for the key cache TTL
            Metrics.gauge("veil.keys", "erasure_listener_connected").set(int(listener.connected))
        if not item.pending_protection:
            yield item
            return
        count = len(item.pending_protection)
        code, error_class = None, None
        if self._service is None:
            code = ErrorCode.PROTECTION_FAILED
        else:
            try:
                protect_item(self._service, item, self._policy)
            except SubjectErased:
                code = ErrorCode.SUBJECT_ERASED
            except Exception as exc:  # fail closed; the class name only
                code, error_class = ErrorCode.PROTECTION_FAILED, type(exc).__name__
        if code:
            self._failed.inc()
            item.pending_protection = []  # originals never leave, not even in dead letters
            yield pvalue.TaggedOutput(DEAD_LETTER, Failure.of(item, STAGE, code, error_class))
            return
        self._protected.inc(count)
        yield item


class ProtectResult(NamedTuple):
    records: beam.PCollection
    dead_letters: beam.PCollection


class ProtectOriginals(beam.PTransform):
    """``WorkItem``s with pending originals to ``WorkItem``s with envelopes; returns
    ``ProtectResult(records, dead_letters)``."""

    def __init__(self, config: KeyServiceConfig, policy=("", "")):
        super().__init__()
        self._config = config
        self._policy = tuple(policy)  # the pipeline policy's (version, digest)

    def expand(self, items):
        out = items | "Protect" >> beam.ParDo(
            ProtectOriginalsFn(self._config, self._policy)
        ).with_outputs(DEAD_LETTER, main="records")
        return ProtectResult(out.records, out[DEAD_LETTER])
