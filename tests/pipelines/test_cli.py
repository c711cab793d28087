"""The ``veil`` command line, in process through ``main(argv)`` (issue 19).

Each case asserts the exit code, the message, and that no input or earlier output was
overwritten or lost. No subprocess per usage error; no path of one machine.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from veil_testing import opaque

from veil.pipelines.cli import main
from veil.transforms.classification import default_policy_path

PII = ("John Smith", "john.smith@example.com", "212-555-0175", "4111 1111 1111 1111")
OPAQUE_ID = re.compile(r"^[0-9a-f]{32}$")


def veil(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def veil_captured(*args) -> tuple[int, str, str]:
    """``veil`` for module-scoped fixtures (capsys is per test)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def tree(root: Path) -> dict:
    """Every file under ``root`` with its bytes (to prove nothing changed or vanished)."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- help ---------------------------------------------------------------------------


def test_top_level_help(capsys):
    code, out, _ = veil(capsys, "--help")
    assert code == 0
    for command in ("run", "produce", "consume", "sanitize", "topics", "demo"):
        assert command in out
    assert "3 `veil sanitize` dead-lettered a record" in " ".join(out.split())


def test_run_help_lists_veil_flags_with_their_environment_variables(capsys):
    code, out, _ = veil(capsys, "run", "--help")
    assert code == 0
    assert "--veil_bootstrap_servers" in out and "--veil_policy" in out
    assert "DirectRunner is refused" in out
    assert "$VEIL_TOPIC_PREFIX" in out and "$VEIL_AUDIT_REQUIRE_KEY" in out
    assert "--veil_audio_key_file" in out


def test_every_argument_has_help(capsys):
    """Every flag and positional of every command says what it is for."""
    from veil.pipelines.cli import parser

    def walk(p, name):
        for action in p._actions:
            if hasattr(action, "choices") and isinstance(action.choices, dict):
                for sub, child in action.choices.items():
                    yield from walk(child, f"{name} {sub}")
            elif action.dest != "help":
                yield name, action

    missing = [
        f"{name}: {'/'.join(a.option_strings) or a.dest}"
        for name, a in walk(parser(), "veil")
        if not a.help
    ]
    assert missing == []


def test_sanitize_help_explains_out_and_the_pass_through(capsys):
    code, out, _ = veil(capsys, "sanitize", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "--out DIR output directory" in text
    assert "Every `veil run` flag that applies to local work passes through" in text
    assert "3 a record was dead-lettered" in text


def test_one_name_per_setting_across_commands(capsys, tmp_path):
    """`veil run`'s --veil_* names work in the other commands too (short forms alias)."""
    from veil.pipelines.cli import parser

    args = parser().parse_args(
        ["keys", "list", "--veil_key_store", "s.db", "--veil_keyring", "k.json"]
    )
    assert (args.store, args.keyring) == ("s.db", "k.json")
    args = parser().parse_args(
        [
            "topics",
            "create",
            "--veil_bootstrap_servers",
            "h:1",
            "--veil_topic_prefix",
            "p",
            "--veil_security_protocol",
            "SSL",
        ]
    )
    assert (args.bootstrap, args.prefix, args.security_protocol) == ("h:1", "p", "SSL")
    args = parser().parse_args(["topics", "create", "--bootstrap", "h:2", "--prefix", "q"])
    assert (args.bootstrap, args.prefix) == ("h:2", "q")


# --- usage and configuration errors: exit 2, one line, nothing written --------------------


@pytest.fixture
def inputs(tmp_path):
    """``in/a.txt``, ``in/b/c.txt`` and an earlier output ``done/a.txt``."""
    (tmp_path / "in" / "b").mkdir(parents=True)
    (tmp_path / "in" / "a.txt").write_text("Mail john.smith@example.com\n")
    (tmp_path / "in" / "b" / "c.txt").write_text("Call 212-555-0175\n")
    (tmp_path / "in" / "audit.jsonl").write_text("")  # collides only when named itself
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "a.txt").write_text("an earlier output\n")
    policy = yaml.safe_load(default_policy_path().read_text())
    policy["text"]["language"] = "de"
    (tmp_path / "de.yaml").write_text(yaml.safe_dump(policy))
    policy["text"]["language"] = "en"
    policy["anonymise"] = policy.pop("anonymize")
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "threshold.yaml").write_text(
        default_policy_path().read_text().replace("score_threshold", "score_treshold")
    )
    return tmp_path


USAGE_ERRORS = [
    # (argv, message)
    (["run", "--runner", "DirectRunner"], "Prism"),
    (["run", "--runner=DirectRunner"], "Prism"),
    (["run", "--veil_bootstrap_servers=nohostport"], "--veil_bootstrap_servers"),
    (["run", "--veil_max_payload_bytes=0"], "--veil_max_payload_bytes"),
    (
        ["run", "--veil_audit_requre_key"],
        "unknown flag --veil_audit_requre_key; did you mean --veil_audit_require_key?",
    ),
    (["run", "--bogus-flag"], "unknown flag --bogus-flag"),
    (["run", "--veil_audit_require_key"], "--veil_audit_require_key: no audit MAC key"),
    (["run", "--veil-read-mode=bounded"], "did you mean --veil_read_mode?"),
    (["sanitize", "missing.txt", "--out", "o"], "missing.txt: no such file or directory"),
    (
        ["sanitize", "in/a.txt", "--out", "o", "--veil_audit_requre_key"],
        "unknown flag --veil_audit_requre_key; did you mean --veil_audit_require_key?",
    ),
    (["sanitize", "in/a.txt", "--out", "o", "--bogus-flag"], "unknown flag --bogus-flag"),
    (
        ["sanitize", "in/a.txt", "--out", "o", "--allow-dead-letter"],
        "did you mean --allow-dead-letters?",
    ),
    (
        ["sanitize", "in/a.txt", "--out", "o", "--policy", "nope.yaml"],
        "--policy nope.yaml: no such file",
    ),
    (
        ["sanitize", "in/a.txt", "--out", "o", "--policy", "de.yaml"],
        "text.language: 'de' is not supported",
    ),
    (
        ["sanitize", "in/a.txt", "--out", "o", "--policy", "typo.yaml"],
        "unknown key 'anonymise'; did you mean 'anonymize'?",
    ),
    (
        ["sanitize", "in/a.txt", "--out", "o", "--policy", "threshold.yaml"],
        "did you mean 'text.score_threshold'?",
    ),
    (
        ["sanitize", "in/a.txt", "--out", "o", "--veil_audit_require_key"],
        "--veil_audit_require_key: no audit MAC key configured",
    ),
    (["sanitize", "in/a.txt", "--out", "in"], "--out in holds the input in/a.txt"),
    (["sanitize", "in", "--out", "in"], "--out in holds the input"),
    (["sanitize", "in", "--out", "in/b/sub"], "--out in/b/sub is inside the input directory in"),
    (["sanitize", "in/a.txt", "in/a.txt", "--out", "o"], "in/a.txt: given twice"),
    (
        ["sanitize", "in/audit.jsonl", "--out", "o"],
        "would be written to o/audit.jsonl, which Veil's own log also writes",
    ),
    (["sanitize", "in/a.txt", "--out", "done"], "done/a.txt exists"),
    (["sanitize", "in/a.txt", "--out", "done/a.txt"], "--out done/a.txt is a file"),
    (["consume", "--topic", "t", "--maxx", "3"], "unknown flag --maxx; did you mean --max?"),
    (["consume", "--topc", "t"], "unknown flag --topc; did you mean --topic?"),
    (["keys", "list", "--stor", "x"], "unknown flag --stor; did you mean --store?"),
    (["produce", "nothing", "--topic", "t"], "nothing: no such file or directory"),
    (["sanitiz", "in/a.txt"], "COMMAND: unknown 'sanitiz'; did you mean 'sanitize'?"),
    (["topics", "craete"], "unknown 'craete'; did you mean 'create'?"),
]


@pytest.mark.parametrize("argv, message", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_exit_2_with_one_line_and_write_nothing(
    argv, message, inputs, capsys, monkeypatch
):
    monkeypatch.chdir(inputs)
    monkeypatch.delenv("VEIL_AUDIT_KEY_FILE", raising=False)
    before = tree(inputs)
    code, out, err = veil(capsys, *argv)
    assert code == 2, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("veil: error: ")
    assert message in lines[0]
    assert tree(inputs) == before  # nothing overwritten, lost or added
    assert not (inputs / "o").exists()


def test_a_bad_setting_from_the_environment_is_named(capsys, monkeypatch):
    monkeypatch.setenv("VEIL_READ_MODE", "sometimes")
    code, _, err = veil(capsys, "run")
    assert code == 2
    assert "--veil_read_mode (or $VEIL_READ_MODE) 'sometimes'" in err


def test_verbose_shows_veils_lines_not_beams(capsys):
    from veil.pipelines.cli import _configure_logging

    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.WARNING)  # as `veil` starts; earlier tests may have raised it
    try:
        _configure_logging(True)
        assert logging.getLogger("veil.transforms.text").getEffectiveLevel() == logging.INFO
        assert logging.getLogger("apache_beam.typehints").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("kafka.producer").getEffectiveLevel() == logging.WARNING
        logging.getLogger("veil").setLevel(logging.NOTSET)
        _configure_logging(False)
        assert logging.getLogger("veil.transforms.text").getEffectiveLevel() == logging.WARNING
        logging.getLogger("veil").setLevel(logging.DEBUG)  # set up by an embedding process
        _configure_logging(True)
        assert logging.getLogger("veil").getEffectiveLevel() == logging.DEBUG  # kept
    finally:
        logging.getLogger("veil").setLevel(logging.NOTSET)
        root.setLevel(root_level)


# --- veil sanitize on real files ------------------------------------------------------

TEXT_FILE = "Contact John Smith at john.smith@example.com or 212-555-0175.\n"
PII_NAME = "John_Smith_SSN_123-45-6789.txt"
JSONL_LINES = [
    json.dumps(
        {
            "record_id": "j1",
            "subject_key": "alice",
            "payload": "Card 4111 1111 1111 1111, ask for John Smith.",
            "attributes": {"channel": "chat"},
        }
    ),
    '{"record_id": "j2", "subject_key": "bob", "payload": "broken',
    json.dumps(
        {
            "record_id": "j3",
            "subject_key": "carol",
            "content_type": "application/json",
            "payload": json.dumps({"name": "Carol", "email": "carol@example.com"}),
        }
    ),
]
INPUT_NAMES = ("notes.txt", "records.jsonl", "dupA", "dupB", "msg.txt", "John_Smith", "123-45-6789")


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory):
    """One in-process ``veil sanitize`` of a directory holding a .txt, a 3-line .jsonl
    (one line broken), two ``msg.txt`` in different folders and a file named with PII."""
    work = tmp_path_factory.mktemp("sanitize")
    src = work / "in"
    (src / "dupA").mkdir(parents=True)
    (src / "dupB").mkdir()
    (src / "notes.txt").write_text(TEXT_FILE, encoding="utf-8")
    (src / "records.jsonl").write_text("\n".join(JSONL_LINES) + "\n", encoding="utf-8")
    (src / "dupA" / "msg.txt").write_text("Mail john.smith@example.com today.\n")
    (src / "dupB" / "msg.txt").write_text("Call 212-555-0175 tomorrow.\n")
    (src / PII_NAME).write_text("Nothing personal here.\n")
    before = tree(src)
    out = work / "out"
    result = veil_captured("sanitize", src, "--out", out, "--id-map", work / "ids.jsonl")
    return work, src, out, result, before


def test_sanitize_exits_3_when_a_record_was_dead_lettered(sanitized):
    work, src, out, (code, stdout, stderr), _ = sanitized
    assert code == 3, stderr
    assert stdout.splitlines()[0] == (
        f"7 record(s): 6 sanitized, 1 dead-lettered (BAD_FRAMING 1); outputs in {out}"
    )
    assert f"input error: {src / 'records.jsonl'}:2: JSONDecodeError" in stderr
    assert f"dead-lettered: {src / 'records.jsonl'}:2 (BAD_FRAMING)" in stderr
    assert "1 record(s) dead-lettered" in stderr and "--allow-dead-letters" in stderr


def test_sanitize_keeps_relative_paths_and_loses_nothing(sanitized):
    work, src, out, _, before = sanitized
    assert tree(src) == before  # inputs untouched
    assert sorted(tree(out)) == sorted(
        [
            "audit.jsonl",
            "dead-letter.jsonl",
            "notes.txt",
            "notes.txt.veil.json",
            "records.jsonl",
            "dupA/msg.txt",
            "dupA/msg.txt.veil.json",
            "dupB/msg.txt",
            "dupB/msg.txt.veil.json",
            PII_NAME,
            PII_NAME + ".veil.json",
        ]
    )
    assert (out / "dupA" / "msg.txt").read_text() == "Mail <EMAIL_ADDRESS> today.\n"
    assert (out / "dupB" / "msg.txt").read_text() == "Call <PHONE_NUMBER> tomorrow.\n"


def test_sanitize_plain_file_and_its_sidecar(sanitized):
    _, _, out, _, _ = sanitized
    text = (out / "notes.txt").read_text(encoding="utf-8")
    assert [raw for raw in PII if raw in text] == []
    assert "<EMAIL_ADDRESS>" in text and "<PERSON>" in text
    (sidecar,) = _jsonl(out / "notes.txt.veil.json")  # one JSON line: `veil reveal` reads it
    assert OPAQUE_ID.match(sidecar["record_id"])
    assert sidecar["source"] == {"topic": sidecar["record_id"], "partition": 0, "offset": 0}
    assert sidecar["classification"]["sensitivity"] == "CONFIDENTIAL"
    assert sidecar["classification"]["entity_counts"]["EMAIL_ADDRESS"] == 1
    assert sidecar["protected"] == [] and "payload" not in sidecar


def test_sanitize_jsonl(sanitized):
    _, _, out, _, _ = sanitized
    records = _jsonl(out / "records.jsonl")
    assert [r["record_id"] for r in records] == [opaque("j1"), opaque("j3")]
    record = records[0]
    assert [raw for raw in PII if raw in record["payload"]] == []
    assert "<CREDIT_CARD>" in record["payload"]
    assert record["classification"]["sensitivity"] == "RESTRICTED"
    assert OPAQUE_ID.match(record["source"]["topic"])
    assert json.loads(records[1]["payload"]) == {"name": "<PERSON>", "email": "<EMAIL_ADDRESS>"}


def test_sanitize_never_writes_a_file_name(sanitized):
    """Issue 18 item 1: ids and source.topic built from file names are opaque."""
    work, _, out, _, _ = sanitized
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json"):
            content = path.read_text(encoding="utf-8")
            leaked = [name for name in INPUT_NAMES if name in content]
            assert leaked == [], f"{path.name} carries {leaked}"
            assert str(work) not in content


def test_sanitize_id_map_is_private_and_complete(sanitized):
    work, src, out, _, _ = sanitized
    id_map = work / "ids.jsonl"
    assert stat.S_IMODE(id_map.stat().st_mode) == 0o600
    mapping = {row["input_id"]: row["path"] for row in _jsonl(id_map)}
    assert len(mapping) == 5 and all(OPAQUE_ID.match(i) for i in mapping)
    audit_ids = {e["source"]["topic"] for e in _jsonl(out / "audit.jsonl")}
    assert audit_ids == set(mapping)
    (sidecar,) = _jsonl(out / "dupB" / "msg.txt.veil.json")
    assert mapping[sidecar["record_id"]] == str(src / "dupB" / "msg.txt")


def test_sanitize_every_input_is_accounted_for(sanitized):
    """sanitized + dead letters == inputs, one terminal audit event per input record."""
    work, _, out, _, _ = sanitized
    ids = {row["path"]: row["input_id"] for row in _jsonl(work / "ids.jsonl")}
    dead = _jsonl(out / "dead-letter.jsonl")
    assert [(d["source"]["offset"], d["stage"], d["error_code"]) for d in dead] == [
        (1, "decode", "BAD_FRAMING")
    ]
    final = {}
    for event in _jsonl(out / "audit.jsonl"):
        source = (event["source"]["topic"], event["source"]["offset"])
        if event["action"] in ("PUBLISHED", "DEAD_LETTERED"):
            assert source not in final, f"two terminal events for {source}"
            final[source] = event["action"]
    jsonl = ids[str(work / "in" / "records.jsonl")]
    expected = {(i, 0): "PUBLISHED" for p, i in ids.items() if not p.endswith(".jsonl")}
    expected.update({(jsonl, 0): "PUBLISHED", (jsonl, 1): "DEAD_LETTERED", (jsonl, 2): "PUBLISHED"})
    assert final == expected
    audit_text = (out / "audit.jsonl").read_text(encoding="utf-8")
    assert [raw for raw in PII if raw in audit_text] == []


def test_sanitize_audit_log_verifies(sanitized, capsys):
    _, _, out, _, _ = sanitized
    code, stdout, _ = veil(capsys, "audit", "verify", "--file", out / "audit.jsonl")
    assert code == 0, stdout


def test_sanitize_prints_chain_heads_that_catch_a_cut_audit_log(tmp_path, capsys):
    """Issue 18: without the heads, a whole file's audit trail could vanish unnoticed."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("Mail ann@example.com\n")
    (tmp_path / "in" / "b.txt").write_text("Call 415-555-0132\n")
    code, stdout, err = veil(capsys, "sanitize", tmp_path / "in", "--out", tmp_path / "o")
    assert code == 0, err
    (line,) = [x for x in stdout.splitlines() if x.startswith("audit chain heads: ")]
    command = line.split(": ", 1)[1].split()
    assert command[:4] == ["veil", "audit", "verify", "--file"]
    assert command.count("--expect-head") == 2  # one chain per input file
    assert veil(capsys, *command[1:])[0] == 0
    log = tmp_path / "o" / "audit.jsonl"
    topic = command[6].split("=")[0].rsplit("/", 1)[0]  # the chain of one input file
    kept = [x for x in log.read_text().splitlines() if topic not in x]
    assert 0 < len(kept) < len(log.read_text().splitlines())
    log.write_text("\n".join(kept) + "\n")  # one input's whole trail removed
    assert veil(capsys, "audit", "verify", "--file", log)[0] == 0  # unnoticed without heads
    assert veil(capsys, *command[1:])[0] != 0


def test_sanitize_again_refuses_then_overwrites_only_its_outputs(sanitized, capsys):
    work, src, out, _, before = sanitized
    earlier = tree(out)
    code, stdout, err = veil(capsys, "sanitize", src, "--out", out)
    assert code == 2 and "exists" in err and "--overwrite" in err and stdout == ""
    assert tree(out) == earlier
    code, stdout, err = veil(
        capsys, "sanitize", src / "dupA", "--out", out, "--overwrite", "--allow-dead-letters"
    )
    assert code == 0, err
    assert stdout.startswith("1 record(s): 1 sanitized, 0 dead-lettered")
    assert (out / "msg.txt").read_text() == "Mail <EMAIL_ADDRESS> today.\n"
    assert tree(src) == before


def test_overwrite_leaves_no_stale_output_of_a_now_dead_lettered_input(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("Mail ann@example.com\n")
    assert veil(capsys, "sanitize", tmp_path / "in", "--out", tmp_path / "o")[0] == 0
    assert (tmp_path / "o" / "a.txt.veil.json").is_file()
    (tmp_path / "in" / "a.txt").write_bytes(b"\xff\xfe not text")  # now dead-lettered
    code, _, err = veil(capsys, "sanitize", tmp_path / "in", "--out", tmp_path / "o",
                        "--overwrite")  # fmt: skip
    assert code == 3 and f"dead-lettered: {tmp_path / 'in' / 'a.txt'} (" in err
    assert sorted(tree(tmp_path / "o")) == ["audit.jsonl", "dead-letter.jsonl"]


def test_sanitize_everything_dead_lettered_is_not_success(tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('not json\n{"payload": 3}\n')
    code, stdout, err = veil(capsys, "sanitize", tmp_path / "bad.jsonl", "--out", tmp_path / "o")
    assert code == 3
    assert stdout.startswith("2 record(s): 0 sanitized, 2 dead-lettered")
    assert len(_jsonl(tmp_path / "o" / "dead-letter.jsonl")) == 2
    code, _, _ = veil(
        capsys,
        "sanitize",
        tmp_path / "bad.jsonl",
        "--out",
        tmp_path / "o2",
        "--allow-dead-letters",
    )
    assert code == 0


def test_sanitize_ids_are_stable_under_an_id_key(tmp_path, capsys):
    from veil.transforms.keys import write_key_file

    key = write_key_file(tmp_path / "id.key")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_text("hello\n")
    ids = []
    for out in ("o1", "o2"):
        code, _, err = veil(
            capsys, "sanitize", tmp_path / "in", "--out", tmp_path / out, "--id-key", key
        )
        assert code == 0, err
        ids.append(_jsonl(tmp_path / out / "x.txt.veil.json")[0]["record_id"])
    assert ids[0] == ids[1] and OPAQUE_ID.match(ids[0])


def test_sidecar_envelopes_reveal(tmp_path, capsys, monkeypatch):
    """With an `encrypt` policy the plain file's envelopes land in its sidecar, and
    `veil reveal` recovers them from it."""
    from veil.transforms.crypto import KeyServiceConfig, LocalKeyring

    monkeypatch.setenv("VEIL_TEST_CLI_MASTER", os.urandom(32).hex())
    MASTER_ENV = "VEIL_TEST_CLI_MASTER"
    LocalKeyring.create(tmp_path / "keyring.json", MASTER_ENV)
    config = KeyServiceConfig(
        store=str(tmp_path / "keys.db"),
        keyring=str(tmp_path / "keyring.json"),
        master_key_env=MASTER_ENV,
    )
    policy = yaml.safe_load(default_policy_path().read_text())
    policy["anonymize"]["text"]["entities"] = {"PERSON": "encrypt"}
    (tmp_path / "enc.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "call.txt").write_text("Call John Smith today.\n")
    keys = ["--veil_key_store", config.store, "--veil_keyring", config.keyring,
            "--veil_master_key_env", MASTER_ENV]  # fmt: skip
    code, _, err = veil(
        capsys,
        "sanitize",
        tmp_path / "in",
        "--out",
        tmp_path / "o",
        "--subject",
        "alice",
        "--policy",
        tmp_path / "enc.yaml",
        *keys,
    )
    assert code == 0, err
    assert "Erasure listener" not in err  # no broker is tried (issue 18 item 7)
    assert "John Smith" not in (tmp_path / "o" / "call.txt").read_text()
    (sidecar,) = _jsonl(tmp_path / "o" / "call.txt.veil.json")
    assert [p["field_path"] for p in sidecar["protected"]] == ["payload[5:15]"]
    code, stdout, err = veil(
        capsys,
        "reveal",
        tmp_path / "o" / "call.txt.veil.json",
        "--principal",
        "ana",
        "--role",
        "privacy-officer",
        "--audit-log",
        tmp_path / "reveal.jsonl",
        "--policy",
        tmp_path / "enc.yaml",
        *keys,  # the pipeline's policy: envelopes bind it
    )
    assert code == 0, err
    assert json.loads(stdout)["value"] == "John Smith"


# --- progress -------------------------------------------------------------------------


def test_progress_bar_only_on_a_terminal(tmp_path):
    """records/s and ETA on a real pseudo-terminal; nothing on a pipe or file."""
    from veil.pipelines.local import progress_bar, sanitize_files

    assert progress_bar(10, io.StringIO()) is None
    master, slave = os.openpty()
    try:
        (tmp_path / "in").mkdir()
        for n in range(3):
            (tmp_path / "in" / f"f{n}.txt").write_text(f"Mail ann{n}@example.com\n")
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert tty.isatty()
            summary = sanitize_files([tmp_path / "in"], tmp_path / "o", progress_stream=tty)
            tty.flush()
        os.set_blocking(master, False)
        shown = os.read(master, 65536).decode("utf-8", "replace")
    finally:
        os.close(master)
        os.close(slave)
    assert summary["sanitized"] == 3
    assert "3/3" in shown and "rec/s" in shown and "sanitize" in shown


def test_a_machine_not_set_up_is_named_with_the_path_and_the_fix(tmp_path, monkeypatch):
    from veil.pipelines.cli import _hint

    monkeypatch.setenv("VEIL_MODEL_DIR", str(tmp_path / "models"))
    hint = _hint("IMAGE_MODEL_UNAVAILABLE")
    assert f"no verified face model in {tmp_path / 'models'}" in hint
    assert "veil setup" in hint
    assert "--veil_audio_key_file" in _hint("AUDIO_KEY_UNAVAILABLE")
    assert _hint("BAD_FRAMING") == ""
