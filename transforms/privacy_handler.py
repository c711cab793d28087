"""The privacy-handler interface, without Apache Beam: what a modality implements
(``PrivacyHandler``), what it returns (``StepResult``) and how a result lands on a
record (``settle``).

``veil.transforms.privacy`` builds the Beam transform on top of it and re-exports every
name here. Handlers import from this module, so the step-worker child
(``veil.transforms.step_worker``), which unpickles a handler and runs it, never imports
Beam (about a CPU-second of start-up per child; see docs/performance.md).

Example::

    class UpperHandler(PrivacyHandler[None]):
        def process(self, model, item):
            text = item.record["payload"].decode().upper()
            return StepResult(text.encode(), "text/plain", {}, classify({}, policy))
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Generic, TypeVar

from veil.transforms.records import Classification, PrivacyError, WorkItem

ModelT = TypeVar("ModelT")


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What a handler's ``process`` returns: the sanitized record, never the original.

    Attributes:
        payload: the sanitized payload.
        content_type: its MIME type (it may differ from the input's, e.g. NDJSON).
        entity_counts: detected entities by type (counts only, never values).
        classification: sensitivity and regimes (``classify(entity_counts, policy)``).
        pending_protection: ``(field path, original bytes)`` pairs that ``encrypt``
            operators set aside for the protection stage.
        audit_steps: content-free ``AuditStep``s of sub-steps (e.g. OCR found no text),
            recorded before the step's own ``ANONYMIZED`` entry.
    """

    payload: bytes
    content_type: str
    entity_counts: dict
    classification: Classification
    pending_protection: tuple = ()
    audit_steps: tuple = ()


def settle(item: WorkItem, result: StepResult) -> dict:
    """Records a handler's ``StepResult`` on ``item``; returns the entity counts.

    Anything else from ``process`` is a handler bug: ``TypeError``, so the record is
    dead-lettered ``PRIVACY_STEP_FAILED`` (fail closed).
    """
    if not isinstance(result, StepResult):
        raise TypeError("PrivacyHandler.process must return a StepResult")
    item.sanitized_payload = result.payload
    item.sanitized_content_type = result.content_type
    item.classification = result.classification
    item.pending_protection.extend(result.pending_protection)
    item.trail.extend(result.audit_steps)
    return dict(result.entity_counts)


class PrivacyHandler(abc.ABC, Generic[ModelT]):
    """What a modality plugs into ``ApplyPrivacyStep`` (see ``docs/extending.md``).

    Only ``process`` is required; the defaults suit a handler without a model.

    Example::

        class UpperHandler(PrivacyHandler[None]):
            version = "upper-1"

            def process(self, model, item):
                text = item.record["payload"].decode().upper()
                return StepResult(text.encode(), "text/plain", {}, classify({}, policy))
    """

    #: Stage name in audit events, metrics and dead letters (e.g. ``"text"``); a
    #: ``ModalitySpec`` sets it to the modality's name when left at the default.
    stage: str = "privacy"
    #: The detector version the default ``detectors`` reports.
    version: str = "1"

    def load(self) -> ModelT:
        """Loads detectors and models; called once per worker process, on the step's
        first record (so a modality that never occurs costs nothing). Default: none."""
        return None

    def share_key(self) -> str:
        """Identifies what ``load`` builds, so equal handlers share one model.

        Default: the handler's class; override when ``load`` depends on configuration.
        """
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def detectors(self, model: ModelT) -> dict:
        """Detector or model name to version, for audit events.

        Default: the model's ``versions`` mapping when it has one, else
        ``{stage: version}``.
        """
        versions = getattr(model, "versions", None)
        if versions is not None:
            return dict(versions)
        return {self.stage: self.version}

    @abc.abstractmethod
    def process(self, model: ModelT, item: WorkItem) -> StepResult:
        """Classifies and anonymizes ``item``'s record; returns a ``StepResult``.

        Reads ``item`` (its ``record``, ``modality``, ``source``) without changing it.
        Raises ``PrivacyError`` for known failures.
        """


def entity_counts(types: list[str]) -> dict:
    counts: dict[str, int] = {}
    for entity_type in types:
        counts[entity_type] = counts.get(entity_type, 0) + 1
    return dict(sorted(counts.items()))


__all__ = [
    "ModelT",
    "PrivacyError",
    "PrivacyHandler",
    "StepResult",
    "entity_counts",
    "settle",
]
