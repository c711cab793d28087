"""Presidio as Veil's plug-in interface for text detection.

A policy extends detection with Presidio recognizers, named under ``text.recognizers``::

    text:
      recognizers:
        # Presidio's YAML recognizer format (regex patterns with scores and context
        # words, deny lists), the file Presidio's docs show; a relative path is read
        # from the policy file's folder when the policy is loaded.
        - presidio_yaml: recognizers/acme.yaml
        # A custom EntityRecognizer class by import path, with its constructor
        # arguments; ``needs_nlp: true`` gives it Presidio's spaCy NLP artifacts.
        - class: acme_privacy.recognizers:EmployeeIdRecognizer
          args: {supported_entities: [EMPLOYEE_ID]}
          needs_nlp: false

Veil runs them inside its own ``detect()`` (on the normalised text, next to its own
recognizers): pattern and deny-list recognizers are ``PatternRecognizer.from_dict`` of
each YAML entry and run without Presidio's NLP pass; context words raise a match's score
the way Presidio's ``LemmaContextAwareEnhancer`` does by default (+0.35, at least 0.4)
when one of them is among the five words before it. Only a class declared
``needs_nlp: true`` makes Veil build Presidio's spaCy NLP engine (the packaged model,
once per worker). The recognizer definitions travel inside the policy object (the YAML
is read when the policy is parsed), so workers on other hosts need no file.

Example::

    plugins = load_plugins(policy.text.recognizers)
    plugins[0].findings("my zip code is 90210")
    # [Finding("ZIP", 0.4, 15, 20, "presidio:Zip code Recognizer")]
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from veil.transforms.policy import load_yaml

if TYPE_CHECKING:
    from veil.transforms.text.recognizers.base import Finding


_LOGGER = logging.getLogger(__name__)

#: Presidio's default context enhancement (LemmaContextAwareEnhancer).
CONTEXT_FACTOR = 0.35
MIN_SCORE_WITH_CONTEXT = 0.4
CONTEXT_PREFIX_WORDS = 5
_WORDS = re.compile(r"\w+")


def _policy_error(message: str):
    from veil.transforms.classification import PolicyError

    return PolicyError(message)


def parse_recognizer_entries(raw, where: str, base_dir: Path | None) -> tuple:
    """Validates ``text.recognizers`` and returns canonical JSON entries (hashable)."""
    if raw in (None, []):
        return ()
    if not isinstance(raw, list):
        raise _policy_error(f"{where}: text.recognizers must be a list")
    out = []
    for index, entry in enumerate(raw):
        at = f"{where}: text.recognizers[{index}]"
        if not isinstance(entry, dict):
            raise _policy_error(f"{at} must be a mapping")
        if "presidio_yaml" in entry:
            path = Path(str(entry["presidio_yaml"]))
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            try:
                loaded = load_yaml(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise _policy_error(f"{at}: {path} cannot be read: {exc.strerror}") from None
            except yaml.YAMLError:
                raise _policy_error(f"{at}: {path} is not valid YAML") from None
            items = loaded.get("recognizers") if isinstance(loaded, dict) else None
            if not isinstance(items, list) or not items:
                raise _policy_error(f"{at}: {path} has no 'recognizers' list")
            for item in items:
                if not isinstance(item, dict):
                    raise _policy_error(f"{at}: {path}: each recognizer must be a mapping")
                config = {k: v for k, v in item.items() if k != "score_thresholds"}
                try:
                    _pattern_recognizer(config)
                except Exception as exc:  # Presidio's own validation, any error type
                    raise _policy_error(
                        f"{at}: {path}: recognizer {item.get('name')!r} is not a valid "
                        f"Presidio pattern recognizer ({type(exc).__name__})"
                    ) from None
                out.append(json.dumps({"kind": "pattern", "config": config}, sort_keys=True))
        elif "class" in entry:
            path = entry["class"]
            args = entry.get("args", {}) or {}
            needs_nlp = entry.get("needs_nlp", False)
            if not isinstance(path, str) or not re.fullmatch(r"[\w.]+[:.]\w+", path):
                raise _policy_error(f"{at}: class must be 'package.module:ClassName'")
            if not isinstance(args, dict) or not isinstance(needs_nlp, bool):
                raise _policy_error(f"{at}: args must be a mapping, needs_nlp true or false")
            try:
                _import_class(path)
            except (ImportError, AttributeError):
                raise _policy_error(f"{at}: class {path} cannot be imported") from None
            out.append(
                json.dumps(
                    {"kind": "class", "path": path, "args": args, "needs_nlp": needs_nlp},
                    sort_keys=True,
                )
            )
        else:
            raise _policy_error(f"{at} must name presidio_yaml or class")
    return tuple(out)


def _pattern_recognizer(config: dict):
    from presidio_analyzer import PatternRecognizer

    return PatternRecognizer.from_dict(dict(config))


def _import_class(path: str):
    if ":" in path:
        module, _, name = path.partition(":")
    else:
        module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


class PresidioPlugin:
    """One Presidio recognizer run inside Veil's ``detect()``."""

    def __init__(self, recognizer, nlp_engine=None):
        self.recognizer = recognizer
        self.name = getattr(recognizer, "name", type(recognizer).__name__)
        self.context = tuple(w.lower() for w in (getattr(recognizer, "context", None) or ()))
        self._nlp_engine = nlp_engine

    def findings(self, text: str) -> list[Finding]:
        # Here, not at import: the recognizers package compiles its patterns at import,
        # and a driver parsing a policy (``parse_recognizer_entries``) has no use for them.
        from veil.transforms.text.recognizers.base import Finding

        artifacts = None
        if self._nlp_engine is not None:
            artifacts = self._nlp_engine.process_text(text, "en")
        results = self.recognizer.analyze(
            text, entities=list(self.recognizer.supported_entities), nlp_artifacts=artifacts
        )
        out = []
        lowered = None
        for result in results or ():
            score = float(result.score)
            if self.context:
                lowered = lowered if lowered is not None else text.lower()
                before = _WORDS.findall(lowered[max(0, result.start - 200) : result.start])
                if any(w in self.context for w in before[-CONTEXT_PREFIX_WORDS:]):
                    score = max(MIN_SCORE_WITH_CONTEXT, min(1.0, score + CONTEXT_FACTOR))
            out.append(
                Finding(
                    result.entity_type, score, result.start, result.end, f"presidio:{self.name}"
                )
            )
        return out


_NLP_ENGINE = None


def _nlp_engine():
    """Presidio's spaCy NLP engine on the packaged model (only for ``needs_nlp``)."""
    global _NLP_ENGINE
    if _NLP_ENGINE is None:
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        from veil.transforms.text.engine import spacy_model_path

        _NLP_ENGINE = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": str(spacy_model_path())}],
            }
        ).create_engine()
    return _NLP_ENGINE


def load_plugins(entries: tuple) -> tuple:
    """Builds the recognizers of a policy's ``text.recognizers`` (once per worker)."""
    plugins = []
    for raw in entries:
        entry = json.loads(raw)
        if entry["kind"] == "pattern":
            plugins.append(PresidioPlugin(_pattern_recognizer(entry["config"])))
        else:
            cls = _import_class(entry["path"])
            args = dict(entry["args"])
            args.setdefault("supported_language", "en")
            recognizer = cls(**args)
            engine = _nlp_engine() if entry["needs_nlp"] else None
            plugins.append(PresidioPlugin(recognizer, engine))
    _LOGGER.info("Presidio recognizers loaded: %d", len(plugins))
    return tuple(plugins)
