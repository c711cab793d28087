"""Presidio recognizers named by the policy run inside Veil's detect() and end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from veil.transforms.classification import PolicyError, default_policy_path, load_policy
from veil.transforms.text import detect, load_text_model, redact, select_spans

# Written the way Presidio's docs show a recognizer file (conf/example_recognizers.yaml):
# a regex recognizer with context words, and a deny-list recognizer.
RECOGNIZERS_YAML = textwrap.dedent(
    """
    recognizers:
      - name: "Employee id recognizer"
        supported_language: "en"
        supported_entity: "EMPLOYEE_ID"
        patterns:
          - name: "acme employee id"
            regex: "\\\\bACME-[0-9]{6}\\\\b"
            score: 0.9
      - name: "Project code recognizer"
        supported_language: "en"
        supported_entity: "PROJECT_CODE"
        patterns:
          - name: "project code (weak)"
            regex: "\\\\b[A-Z]{3}[0-9]{3}\\\\b"
            score: 0.01
        context:
          - project
          - codename
      - name: "Titles recognizer"
        supported_language: "en"
        supported_entity: "CODENAME"
        deny_list:
          - Bluebird
          - Nightjar
    """
)


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("policy")
    (folder / "acme-recognizers.yaml").write_text(RECOGNIZERS_YAML, encoding="utf-8")
    raw = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    raw["text"]["recognizers"] = [{"presidio_yaml": "acme-recognizers.yaml"}]
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def policy(policy_file):
    return load_policy(policy_file)


@pytest.fixture(scope="module")
def model(policy):
    return load_text_model(ner=False, recognizers=policy.text.recognizers)


def _out(model, policy, text):
    spans = select_spans(detect(model, text, policy.text), policy.text.score_threshold)
    return redact(text, spans)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("badge ACME-123456 at the gate", "badge <EMPLOYEE_ID> at the gate"),
        ("the project is XYZ123 now", "the project is <PROJECT_CODE> now"),  # context
        ("shelf XYZ123 now", "shelf XYZ123 now"),  # weak pattern, no context: kept
        ("plans for bluebird ship", "plans for <CODENAME> ship"),  # deny list
        # On the normalised text: a zero-width space does not hide the id.
        ("badge ACME-\u200b123456", "badge <EMPLOYEE_ID>"),
    ],
)
def test_presidio_recognizers_run_inside_detect(model, policy, text, expected):
    assert _out(model, policy, text) == expected


def test_policy_carries_the_recognizers_not_the_path(policy):
    entries = [json.loads(e) for e in policy.text.recognizers]
    assert [e["config"]["name"] for e in entries] == [
        "Employee id recognizer",
        "Project code recognizer",
        "Titles recognizer",
    ]


def test_custom_entity_recognizer_by_import_path(tmp_path):
    module = tmp_path / "acme_recognizers.py"
    module.write_text(
        textwrap.dedent(
            """
            from presidio_analyzer import EntityRecognizer, RecognizerResult

            class BadgeRecognizer(EntityRecognizer):
                def load(self):
                    pass

                def analyze(self, text, entities, nlp_artifacts=None):
                    start = text.find("badge#")
                    if start < 0:
                        return []
                    return [RecognizerResult("BADGE", start, start + 10, 0.8)]
            """
        ),
        encoding="utf-8",
    )
    sys.path.insert(0, str(tmp_path))
    try:
        raw = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
        raw["text"]["recognizers"] = [
            {"class": "acme_recognizers:BadgeRecognizer",
             "args": {"supported_entities": ["BADGE"]}}
        ]  # fmt: skip
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        policy = load_policy(path)
        model = load_text_model(ner=False, recognizers=policy.text.recognizers)
        assert _out(model, policy, "see badge#1234 today") == "see <BADGE> today"
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"presidio_yaml": "missing.yaml"}, "cannot be read"),
        ({"class": "no_such_module_xyz:Thing"}, "cannot be imported"),
        ({"something": 1}, "must name presidio_yaml or class"),
    ],
)
def test_bad_recognizer_entries_are_policy_errors(tmp_path, entry, message):
    raw = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
    raw["text"]["recognizers"] = [entry]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


def test_veil_sanitize_with_a_presidio_recognizer_file(policy_file, tmp_path):
    """End to end: the console script, a policy naming the Presidio YAML file."""
    veil = str(Path(sys.executable).with_name("veil"))
    note = tmp_path / "note.txt"
    note.write_text("Badge ACME-654321 was used on project QRS789 by Nightjar.\n", encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run(
        [veil, "sanitize", str(note), "--out", str(out), "--policy", str(policy_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    text = (out / "note.txt").read_text(encoding="utf-8")
    for value in ("ACME-654321", "QRS789", "Nightjar"):
        assert value not in text
    assert "<EMPLOYEE_ID>" in text and "<PROJECT_CODE>" in text and "<CODENAME>" in text
    audit = (out / "audit.jsonl").read_text(encoding="utf-8")
    assert "ACME-654321" not in audit and "Nightjar" not in audit


def test_a_recognizer_that_needs_nlp_gets_presidio_artifacts(tmp_path):
    module = tmp_path / "acme_nlp_recognizers.py"
    module.write_text(
        textwrap.dedent(
            """
            from presidio_analyzer import EntityRecognizer, RecognizerResult

            class TokenRecognizer(EntityRecognizer):
                def load(self):
                    pass

                def analyze(self, text, entities, nlp_artifacts=None):
                    assert nlp_artifacts is not None  # Presidio's NLP pass ran
                    return [
                        RecognizerResult("SHIP", t.idx, t.idx + len(t.text), 0.9)
                        for t in nlp_artifacts.tokens
                        if t.text.startswith("HMS")
                    ]
            """
        ),
        encoding="utf-8",
    )
    sys.path.insert(0, str(tmp_path))
    try:
        raw = yaml.safe_load(default_policy_path().read_text(encoding="utf-8"))
        raw["text"]["recognizers"] = [
            {"class": "acme_nlp_recognizers:TokenRecognizer",
             "args": {"supported_entities": ["SHIP"]}, "needs_nlp": True}
        ]  # fmt: skip
        path = tmp_path / "policy.yaml"
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        policy = load_policy(path)
        model = load_text_model(ner=False, recognizers=policy.text.recognizers)
        assert _out(model, policy, "aboard HMSVictory today") == "aboard <SHIP> today"
    finally:
        sys.path.remove(str(tmp_path))
