"""Routing by modality: declared by the producer, or sniffed from magic bytes and MIME type.

What each modality looks like comes from its registration (``ModalitySpec`` in
``veil.transforms.modality``): signatures first, then MIME types, then content checks.

A declared modality that contradicts the payload's magic bytes is a dead letter
(``MODALITY_MISMATCH``), not a guess: a hostile producer must not steer an image past
face anonymization by calling it text.

Example::

    routed = records | RouteByModality(supported={"text"})
    routed.branches["text"]   # WorkItems with item.modality == "text"
    routed.dead_letters       # UNKNOWN_MODALITY, UNSUPPORTED_MODALITY, MODALITY_MISMATCH
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from veil.transforms.modality import MODALITIES, Modalities, by_content, by_content_type, sniff
from veil.transforms.records import AuditStep, ErrorCode, Failure, WorkItem

DEAD_LETTER = "dead_letter"
STAGE = "route"


def sniff_magic(payload: bytes, specs=None) -> str | None:
    """The modality that a payload's leading bytes prove, or None."""
    return sniff(MODALITIES.specs() if specs is None else specs, payload)


def detect_modality(
    declared: str | None, content_type: str, payload: bytes, specs=None
) -> tuple[str | None, str | None]:
    """Returns ``(modality, error_code)``; exactly one of them is None.

    ``specs``: the ``ModalitySpec``s to recognize (default: every registered one).
    """
    specs = MODALITIES.specs() if specs is None else tuple(specs)
    magic = sniff(specs, payload)
    if declared is not None:
        declared = declared.strip().lower()
        if declared not in {spec.name for spec in specs}:
            return None, ErrorCode.UNKNOWN_MODALITY
        if magic is not None and magic != declared:
            return None, ErrorCode.MODALITY_MISMATCH
        return declared, None
    if magic is not None:
        return magic, None
    # A known MIME type but no known signature: that modality's branch decides (a media
    # decoder dead-letters what it cannot read).
    named = by_content_type(specs, content_type)
    if named is not None:
        return named, None
    found = by_content(specs, payload)
    if found is not None:
        return found, None
    return None, ErrorCode.UNKNOWN_MODALITY


class RouteFn(beam.DoFn):
    def __init__(self, supported: frozenset, specs: tuple):
        self._supported = supported
        self._specs = specs  # pickled with the DoFn: workers route as the driver does

    def process(self, item: WorkItem):
        record = item.record
        modality, error = detect_modality(
            record.get("modality"), record.get("content_type", ""), record["payload"], self._specs
        )
        if error is not None:
            Metrics.counter("veil.route", f"dead_letter_{error}").inc()
            yield pvalue.TaggedOutput(DEAD_LETTER, Failure.of(item, STAGE, error))
            return
        item.modality = modality
        Metrics.counter("veil.route", f"records_{modality}").inc()
        if modality not in self._supported:
            Metrics.counter("veil.route", f"dead_letter_{ErrorCode.UNSUPPORTED_MODALITY}").inc()
            yield pvalue.TaggedOutput(
                DEAD_LETTER, Failure.of(item, STAGE, ErrorCode.UNSUPPORTED_MODALITY)
            )
            return
        item.trail.append(AuditStep(stage=STAGE, action="ROUTED"))
        yield pvalue.TaggedOutput(modality, item)


class Routed(NamedTuple):
    branches: dict
    dead_letters: beam.PCollection


class RouteByModality(beam.PTransform):
    """Splits ``WorkItem``s into one branch per supported modality plus dead letters.

    ``supported`` names registered modalities that get a branch; a record of another
    registered modality is dead-lettered ``UNSUPPORTED_MODALITY``, one of none
    ``UNKNOWN_MODALITY``. ``registry`` defaults to ``veil.transforms.modality.MODALITIES``.
    """

    def __init__(self, supported, registry: Modalities | None = None):
        super().__init__()
        self._supported = frozenset(supported)
        self._specs = (registry or MODALITIES).specs()
        unknown = self._supported - {spec.name for spec in self._specs}
        if unknown:
            raise ValueError(f"unregistered modalities: {sorted(unknown)}")

    def expand(self, items):
        tags = sorted(self._supported)
        out = items | "SniffAndRoute" >> beam.ParDo(
            RouteFn(self._supported, self._specs)
        ).with_outputs(DEAD_LETTER, *tags)
        return Routed({tag: out[tag] for tag in tags}, out[DEAD_LETTER])
