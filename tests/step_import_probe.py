"""A handler the step-worker tests run in the child process to see what it imported
(importable there; apart from ``step_targets`` so the toy handler's children stay light)."""

from __future__ import annotations

import json
import sys

from veil.transforms.privacy_handler import StepResult
from veil.transforms.text import TextHandler

#: Modules a step-worker child has no use for (``ImportProbeHandler`` reports them);
#: typer stands for spaCy's command line (``veil.transforms.text.engine._import_spacy``).
HEAVY_MODULES = (
    "apache_beam",
    "presidio_analyzer",
    "jsonschema",
    "yaml",
    "typer",
    "cv2",
    "librosa",
    "av",
)


class ImportProbeHandler(TextHandler):
    """The text handler, reporting as its payload which modules its child process holds
    (after the model load and the record): ``{"sanitized": ..., "modules": {...}}``."""

    def process(self, model, item):
        result = super().process(model, item)
        loaded = {name: name in sys.modules for name in (*HEAVY_MODULES, "spacy")}
        report = {"sanitized": result.payload.decode("utf-8"), "modules": loaded}
        return StepResult(
            payload=json.dumps(report).encode(),
            content_type=result.content_type,
            entity_counts=result.entity_counts,
            classification=result.classification,
        )
