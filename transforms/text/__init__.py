"""The text branch: PII detection and anonymization, fully offline.

* ``handler``: ``TextHandler``, the branch's privacy handler (light: no detectors).
* ``engine``: ``detect(model, text)`` (the entry point the structured branch, OCR and
  audio transcripts share), span merging, anonymization.
* ``normalize``: the normalisation layer before detection (offsets mapped back).
* ``recognizers``: rule-based recognizers by family (contact, address, identity,
  secrets, names, categories).
* ``presidio``: the policy's Presidio recognizers run inside ``detect()``.

The names below are imported on first use (PEP 562): a driver that builds a graph with
a ``TextHandler``, or parses a policy (``presidio``), does not import the engine and
compile the recognizers' regular expressions, which only the workers run.

See ``docs/text-detection.md``.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "SPACY_MODEL_PACKAGE": "handler",
    "TextHandler": "handler",
    "DETECTOR_VERSION": "engine",
    "NER_MAX_CHARS": "engine",
    "TextModel": "engine",
    "anonymize_spans": "engine",
    "detect": "engine",
    "load_text_model": "engine",
    "merge_spans": "engine",
    "name_findings": "engine",
    "redact": "engine",
    "select_spans": "engine",
    "spacy_model_path": "engine",
    "Finding": "recognizers.base",
}

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


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once imported, an ordinary module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
