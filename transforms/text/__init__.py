"""The text branch: PII detection and anonymization, fully offline.

* ``engine``: ``detect(model, text)`` (the entry point the structured branch, OCR and
  audio transcripts share), span merging, anonymization and ``TextHandler``.
* ``normalize``: the normalisation layer before detection (offsets mapped back).
* ``recognizers``: rule-based recognizers by family (contact, address, identity,
  secrets, names, categories).
* ``presidio``: the policy's Presidio recognizers run inside ``detect()``.

See ``docs/text-detection.md``.
"""

from veil.transforms.text.engine import (  # noqa: F401
    DETECTOR_VERSION,
    NER_MAX_CHARS,
    SPACY_MODEL_PACKAGE,
    TextHandler,
    TextModel,
    anonymize_spans,
    detect,
    load_text_model,
    merge_spans,
    name_findings,
    redact,
    select_spans,
    spacy_model_path,
)
from veil.transforms.text.recognizers import Finding  # noqa: F401

__all__ = [
    "DETECTOR_VERSION",
    "Finding",
    "TextHandler",
    "TextModel",
    "anonymize_spans",
    "detect",
    "load_text_model",
    "merge_spans",
    "redact",
    "select_spans",
    "spacy_model_path",
]
