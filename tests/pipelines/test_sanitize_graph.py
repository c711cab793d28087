"""The whole graph from ``build`` with an in-memory source and sink (no broker):
conservation, fail-closed routing and the metrics a runner dashboard shows."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import framed, media_record

from veil.pipelines.options import LOCAL_RUNNER
from veil.pipelines.sanitize import build
from veil.schemas import catalog
from veil.transforms.records import KafkaMessage


class _Collect(beam.PTransform):
    """The sink: decodes each KafkaWrite to (topic, record_id or source, code/action)."""

    def expand(self, writes):
        return writes | beam.Map(lambda w: (w.topic, catalog().decode(w.value)))


def _inputs():
    good = [
        media_record("t1", "alice", b"Call John Smith at 212-555-0175."),
        media_record("t2", "bob", b"Nothing to see."),
    ]
    msgs = [
        KafkaMessage("raw", 0, i, 0, r["subject_key"].encode(), framed(r))
        for i, r in enumerate(good)
    ]
    msgs.append(KafkaMessage("raw", 0, 2, 0, None, b"junk"))
    video = media_record("v1", "carol", b"\x00\x00\x00\x18ftypmp42....")
    msgs.append(KafkaMessage("raw", 0, 3, 0, b"carol", framed(video)))
    img = media_record("i1", "carol", b"\x89PNG\r\n\x1a\n....")  # no IHDR: corrupt
    msgs.append(KafkaMessage("raw", 0, 4, 0, b"carol", framed(img)))
    return msgs


def _run_graph(modalities=None):
    """Runs ``build`` over ``_inputs()``, asserting the outcomes per topic (two text
    records sanitized, three dead letters); returns ``(graph, result, counters)``."""
    options = PipelineOptions([f"--runner={LOCAL_RUNNER}", "--veil_topic_prefix=unit"])
    pipeline = beam.Pipeline(options=options)
    graph = build(
        pipeline, options, source=beam.Create(_inputs()), sink=_Collect(), modalities=modalities
    )
    terminal = (
        [graph.writes[label] for label in sorted(graph.writes)]
        | beam.Flatten()  # fine here: the test pipeline has no source offsets to commit
        | beam.Map(lambda w: w.topic)
        | beam.combiners.Count.PerElement()
    )
    assert_that(
        terminal | beam.Filter(lambda kv: not kv[0].endswith(".audit")),
        equal_to([("unit.sanitized.text", 2), ("unit.dead-letter", 3)]),
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        (r.key.metric.namespace, r.key.metric.name): r.committed
        for r in result.metrics().query(MetricsFilter())["counters"]
    }
    return graph, result, counters


def test_graph_conserves_records_and_reports_metrics():
    _, result, counters = _run_graph()
    assert counters[("veil.decode", "records_in")] == 5
    assert counters[("veil.decode", "records_out")] == 4
    assert counters[("veil.decode", "dead_letter_BAD_FRAMING")] == 1
    assert ("veil.route", "dead_letter_UNSUPPORTED_MODALITY") not in counters
    assert counters[("veil.video", "dead_letter_VIDEO_CORRUPT")] == 1  # not a real MP4
    assert counters[("veil.text", "records_in")] == 2
    assert counters[("veil.text", "records_out")] == 2
    assert counters[("veil.text", "entities_PERSON")] >= 1
    assert counters[("veil.text", "sanitized")] == 2
    # Dead-letter counters are per step, and every code's exists from the start (at 0).
    assert counters[("veil.dead_letter.video", "VIDEO_CORRUPT")] == 1
    assert counters[("veil.dead_letter.decode", "BAD_FRAMING")] == 1
    assert counters[("veil.dead_letter.decode", "EMPTY_PAYLOAD")] == 0
    assert counters[("veil.image", "dead_letter_IMAGE_DECODE_ERROR")] == 1
    dists = {
        (r.key.metric.namespace, r.key.metric.name): r.committed
        for r in result.metrics().query(MetricsFilter())["distributions"]
    }
    assert dists[("veil.text", "latency_ms")].count == 2


def test_build_fails_fast_on_a_bad_policy(tmp_path):
    from veil.transforms.classification import PolicyError

    bad = tmp_path / "policy.yaml"
    bad.write_text("version: ''\n")
    options = PipelineOptions([f"--runner={LOCAL_RUNNER}", f"--veil_policy={bad}"])
    with pytest.raises(PolicyError, match="version"):
        build(beam.Pipeline(options=options), options, source=beam.Create([]), sink=_Collect())


def test_graph_with_only_the_text_branch_dead_letters_the_others():
    """``build(..., modalities=["text"])`` (what ``veil sanitize`` does for text files):
    only the text branch exists; records of another modality still get their one
    outcome, ``UNSUPPORTED_MODALITY`` from the route step, never lost."""
    graph, _, counters = _run_graph(modalities=["text"])
    assert {label for label in graph.writes if "Image" in label or "Video" in label} == set()
    assert counters[("veil.route", "dead_letter_UNSUPPORTED_MODALITY")] == 2  # video, image
    assert ("veil.video", "records_in") not in counters
