"""What the driver imports to build a text-only graph (``veil sanitize`` of text files):
the text handler, not the detectors it runs in the step worker, and no other modality's
decoders. Checked in a fresh interpreter (this one has imported everything)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from veil.pipelines.sanitize import build

pipeline = beam.Pipeline(options=PipelineOptions(["--veil_schema_registry=none"]))
build(pipeline, pipeline.options, source=beam.Create([]), sink=beam.Map(print),
      modalities=["text"])
labels = {t.full_label for t in pipeline.transforms_stack[0].parts}
assert "Text" in labels, sorted(labels)
heavy = ("veil.transforms.text.engine", "veil.transforms.text.recognizers", "spacy",
         "presidio_analyzer", "cv2", "librosa", "av", "veil.transforms.image")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_a_text_only_graph_imports_no_detectors_and_no_media_decoders():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
