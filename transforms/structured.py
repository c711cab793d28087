"""The structured branch: JSON records (nested objects and arrays), field by field.

Each value gets its entity type from, in order:

1. a schema hint on the record: ``attributes["veil.hints"]`` holds a JSON object of
   path -> entity type, paths written ``$.patient.name`` or ``$.visits[*].date``;
2. the policy's field-name rules (``structured.fields``: a regex on the field name,
   the last key on the path, or the key of the array holding the value);
3. the text detectors (``veil.transforms.text.detect``) on string values, and the
   pattern recognizers on numbers written out (a card or phone stored as a number).

A typed field's value goes through the policy's operator for that type (a container
under a typed field: every scalar in it). Untyped strings are anonymized span by span,
like text. Object keys are scanned too (an e-mail used as a key becomes its
replacement). The record is classified from all its entities before any operator runs,
so per-regime operators apply.

Types are kept where the operator allows: strings stay strings; a number or boolean
whose operator produces text becomes that text (``generalize`` age bands, ``mask``),
``redact`` gives ``null``, ``drop`` removes the field (array elements become ``null`` so
positions stay). The output is compact JSON, ``application/json``; ``x-ndjson``
payloads are handled line by line.

Example::

    structured = routed.branches["structured"] | ApplyPrivacyStep(StructuredHandler(policy))
"""

from __future__ import annotations

import json
import logging
import re

from veil.transforms.classification import Policy, classify
from veil.transforms.keys import (
    KeyUnavailable,
    SecretKeys,
    SubjectKeyErased,
    keys_from_config,
)
from veil.transforms.operators import DROP, OperatorContext, apply_operator
from veil.transforms.privacy_handler import PrivacyError, PrivacyHandler, StepResult
from veil.transforms.records import ErrorCode, WorkItem
from veil.transforms.text import TextHandler, TextModel, anonymize_spans, detect, select_spans
from veil.transforms.text.recognizers import pattern_findings

_LOGGER = logging.getLogger(__name__)

HINTS_ATTRIBUTE = "veil.hints"
_INDEX = re.compile(r"\[\d+\]")
_ENTITY_NAME = re.compile(r"[A-Z][A-Z0-9_]{1,63}")


class _TooDeep(Exception):
    pass


class StructuredHandler(PrivacyHandler[TextModel]):
    """Classifies and anonymizes JSON records field by field (shares the text model).

    Example::

        out = items | ApplyPrivacyStep(StructuredHandler(load_policy()))
    """

    stage = "structured"

    def __init__(self, policy: Policy):
        self._policy = policy
        self._text = TextHandler(policy)  # same share_key: one model per process
        self._keys: SecretKeys | None = None

    def share_key(self) -> str:
        return self._text.share_key()

    def load(self) -> TextModel:
        return self._text.load()

    def keys(self) -> SecretKeys:
        if self._keys is None:
            self._keys = keys_from_config(self._policy.key_file, self._policy.key_env)
        return self._keys

    def process(self, model: TextModel, item: WorkItem) -> StepResult:
        record = item.record
        ndjson = "ndjson" in (record.get("content_type") or "").lower()
        if len(record["payload"]) > 4 * self._policy.text.max_chars:
            raise PrivacyError(ErrorCode.PAYLOAD_TOO_LARGE)  # before parsing it
        try:
            text = record["payload"].decode("utf-8")
            if ndjson:
                # NDJSON lines end at "\n" only: splitlines() would also cut at U+2028,
                # U+0085 and others, which JSON strings may hold raw.
                docs = [_strict_json(line) for line in text.split("\n") if line.strip()]
            else:
                docs = [_strict_json(text)]
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise PrivacyError(ErrorCode.STRUCTURED_DECODE_ERROR) from None
        if len(text) > self._policy.text.max_chars:
            raise PrivacyError(ErrorCode.PAYLOAD_TOO_LARGE)
        hints = _hints(record.get("attributes") or {})
        known = self._known_entities()
        if any(entity not in known for entity in hints.values()):
            # A producer hint may only name an entity type the policy knows: anything
            # else would be written into the payload and the audit counts verbatim.
            raise PrivacyError(ErrorCode.INVALID_RECORD)
        sites: list = []
        try:
            for index in range(len(docs)):
                root = f"$[{index}]" if ndjson else "$"
                self._collect(model, docs, index, root, None, hints, sites, 0)
        except _TooDeep:
            raise PrivacyError(ErrorCode.STRUCTURED_DECODE_ERROR) from None
        counts: dict[str, int] = {}
        for site in sites:
            for entity in site.entities():
                counts[entity] = counts.get(entity, 0) + 1
        counts = dict(sorted(counts.items()))
        classification = classify(counts, self._policy)
        ctx = OperatorContext(record["subject_key"], self.keys())
        try:
            # Deepest first: values change in place before a key above them is renamed.
            for site in sorted(sites, key=lambda s: -s.depth):
                site.apply(self._policy, classification.regimes, ctx)
        except SubjectKeyErased:  # the key service destroyed this subject's keys
            raise PrivacyError(ErrorCode.SUBJECT_ERASED) from None
        except KeyUnavailable:
            raise PrivacyError(ErrorCode.PSEUDONYM_KEY_UNAVAILABLE) from None
        if ndjson:
            out = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
            content_type = "application/x-ndjson"
        else:
            out = json.dumps(docs[0], ensure_ascii=False)
            content_type = "application/json"
        return StepResult(
            payload=out.encode("utf-8"),
            content_type=content_type,
            entity_counts=counts,
            classification=classification,
            pending_protection=tuple(ctx.pending_protection),
        )

    def _known_entities(self) -> frozenset:
        """Entity types the policy names (regimes, operators, field rules, text)."""
        known = getattr(self, "_known", None)
        if known is None:
            policy = self._policy
            names = set()
            for members in policy.regimes.values():
                names |= set(members)
            for members in policy.regime_requires.values():
                names |= set(members)
            for _, table in policy.operators.values():
                names |= set(table)
            for _, table in policy.regime_operators:
                names |= set(table)
            names |= {entity for _, entity in policy.structured.field_rules}
            names |= set(policy.text.entities)
            known = self._known = frozenset(n for n in names if _ENTITY_NAME.fullmatch(n))
        return known

    # --- pass 1: find what to change --------------------------------------------------

    def _field_entity(self, path: str, name, hints: dict) -> str | None:
        generic = _INDEX.sub("[*]", path)
        for candidate in (path, generic):
            if candidate in hints:
                return hints[candidate]
        if isinstance(name, str):
            for pattern, entity in self._policy.structured.field_rules:
                if pattern.search(name):
                    return entity
        return None

    def _collect(self, model, parent, slot, path, name, hints, sites, depth, entity=None):
        """Walks ``parent[slot]``; appends the sites to change (with their container)."""
        if depth > self._policy.structured.max_depth:
            raise _TooDeep()
        value = parent[slot]
        if entity is None:
            entity = self._field_entity(path, name, hints)
        if isinstance(value, dict):
            for key in list(value):
                child = f"{path}.{key}"
                self._collect(model, value, key, child, key, hints, sites, depth + 1, entity)
                # Under a typed field a key is part of the typed value ({"email":
                # {"john@example.com": "primary"}}): the whole key is that entity.
                if entity:
                    spans = [(0, len(key), entity)] if key else []
                else:
                    spans = self._scan(model, key)
                if spans:
                    sites.append(_KeySite(value, key, spans, child, depth))
            return
        if isinstance(value, list):
            for index in range(len(value)):
                self._collect(
                    model,
                    value,
                    index,
                    f"{path}[{index}]",
                    name,
                    hints,
                    sites,
                    depth + 1,
                    entity,
                )
            return
        if value is None:
            return
        if entity:
            sites.append(_FieldSite(parent, slot, path, entity, value, depth))
            return
        if isinstance(value, str):
            if self._policy.structured.scan_values:
                spans = self._scan(model, value)
                if spans:
                    sites.append(_TextSite(parent, slot, path, value, spans, depth))
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            whole = [
                f
                for written in _number_texts(value)
                for f in pattern_findings(written)
                if f.start == 0
                and f.end == len(written)
                and f.score >= self._policy.text.score_threshold
            ]
            if whole:
                best = max(whole, key=lambda f: f.score)
                sites.append(_FieldSite(parent, slot, path, best.entity_type, value, depth))

    def _scan(self, model, text: str) -> list:
        findings = detect(model, text, self._policy.text)
        return select_spans(findings, self._policy.text.score_threshold)


def _no_constant(name: str):
    raise ValueError("NaN and Infinity are not JSON")


class _JsonFloat(float):
    """A JSON number with a fraction or exponent, remembering how it was written (a
    card number sent as ``5555555555554444.0`` loses digits as a float)."""

    written: str = ""


def _finite_float(written: str) -> float:
    value = _JsonFloat(written)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")  # 1e999: would be written back as Infinity
    value.written = written
    return value


def _number_texts(value) -> list:
    """The ways a number's digits may be read: as written, and as an integer when the
    number is integral (``4111111111111111.0``, ``4.111111111111111e15``)."""
    from decimal import Decimal, InvalidOperation

    written = getattr(value, "written", "") or str(value)
    texts = [written]
    if isinstance(value, float):
        try:
            exact = Decimal(written)
            if exact == exact.to_integral_value() and abs(exact) < Decimal(10) ** 30:
                texts.append(str(int(exact)))
        except (InvalidOperation, ValueError, OverflowError):
            pass
    return list(dict.fromkeys(texts))


def _strict_json(text: str):
    """RFC 8259 JSON only: Python's extensions (NaN, Infinity, overflowing floats, lone
    surrogates) would come back out as invalid JSON or fail half-way through the
    operators, so they are decode errors up front (found by the fuzz tests)."""
    doc = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    if "\\u" in text and ("\\ud" in text or "\\uD" in text):
        # Escaped surrogates must pair up; a lone one cannot be encoded (UnicodeError).
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    return doc


def _hints(attributes: dict) -> dict:
    raw = attributes.get(HINTS_ATTRIBUTE)
    if not raw:
        return {}
    try:
        hints = json.loads(raw)
    except (ValueError, RecursionError):
        raise PrivacyError(ErrorCode.STRUCTURED_DECODE_ERROR) from None
    if not isinstance(hints, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in hints.items()
    ):
        raise PrivacyError(ErrorCode.STRUCTURED_DECODE_ERROR)
    return hints


# --- pass 2: apply the operators --------------------------------------------------------


class _FieldSite:
    """A scalar whose whole value is one entity (by hint, field name or pattern)."""

    def __init__(self, parent, slot, path, entity, value, depth):
        self.parent, self.slot, self.path = parent, slot, path
        self.entity, self.value, self.depth = entity, value, depth

    def entities(self):
        return [self.entity]

    def apply(self, policy, regimes, ctx):
        spec = policy.operator_for("structured", self.entity, regimes)
        parent, key = self.parent, self.slot
        text = self.value if isinstance(self.value, str) else json.dumps(self.value)
        out = apply_operator(spec, text, self.entity, ctx, self.path)
        if out is DROP:
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent[key] = None
        elif spec.name == "redact" and not isinstance(self.value, str):
            parent[key] = None
        else:
            parent[key] = out


class _TextSite:
    """A free-text string value with detected spans."""

    def __init__(self, parent, slot, path, value, spans, depth):
        self.parent, self.slot, self.path = parent, slot, path
        self.value, self.spans, self.depth = value, spans, depth

    def entities(self):
        return [t for _, _, t in self.spans]

    def apply(self, policy, regimes, ctx):
        self.parent[self.slot] = anonymize_spans(
            self.value, self.spans, policy, "structured", regimes, ctx, self.path
        )


class _KeySite:
    """An object key that holds PII: renamed to its anonymized form (kept unique)."""

    def __init__(self, obj, key, spans, path, depth):
        self.obj, self.key, self.spans, self.path, self.depth = obj, key, spans, path, depth

    def entities(self):
        return [t for _, _, t in self.spans]

    def apply(self, policy, regimes, ctx):
        new = anonymize_spans(
            self.key, self.spans, policy, "structured", regimes, ctx, self.path + "#key"
        )
        candidate, n = new, 1
        while candidate in self.obj and candidate != self.key:
            n += 1
            candidate = f"{new}#{n}"
        items = [(candidate if k == self.key else k, v) for k, v in self.obj.items()]
        self.obj.clear()
        self.obj.update(items)


__all__ = ["HINTS_ATTRIBUTE", "StructuredHandler"]
