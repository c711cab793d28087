"""Anonymization operators, their parameters, and the pseudonym key door."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest

from veil.transforms.keys import FileKeys, KeyUnavailable, NoKeys, keys_from_config, write_key_file
from veil.transforms.operators import (
    DROP,
    HIPAA_RESTRICTED_ZIP3,
    OperatorContext,
    OperatorError,
    OperatorSpec,
    age_band,
    apply_operator,
    date_shift,
    generalize,
    mask,
    parse_date,
    parse_operator,
    pseudonym,
    subject_offset_days,
    zip3,
)


@pytest.fixture
def keys(tmp_path):
    return FileKeys(write_key_file(tmp_path / "pseudonym.key"))


@pytest.fixture
def other_keys(tmp_path):
    return FileKeys(write_key_file(tmp_path / "other.key"))


def _ctx(keys, subject="patient-7"):
    return OperatorContext(subject_key=subject, keys=keys)


@pytest.mark.parametrize(
    "spec, value, entity, expected",
    [
        (OperatorSpec.of("replace"), "Ada Byron", "PERSON", "<PERSON>"),
        (OperatorSpec.of("replace", {"label": "NAME"}), "Ada Byron", "PERSON", "<NAME>"),
        (OperatorSpec.of("redact"), "Ada Byron", "PERSON", "[REDACTED]"),
        (OperatorSpec.of("redact", {"marker": "***"}), "Ada", "PERSON", "***"),
        (OperatorSpec.of("mask"), "4111 1111 1111 1111", "CREDIT_CARD", "**** **** **** 1111"),
        (OperatorSpec.of("mask", {"keep_last": 2, "char": "#"}), "212-555-0175", "PHONE_NUMBER",
         "###-###-##75"),
        (OperatorSpec.of("generalize", {"kind": "age_band"}), "37", "AGE", "30-39"),
        (OperatorSpec.of("generalize", {"kind": "zip3"}), "02139", "ZIP_CODE", "021"),
        (OperatorSpec.of("generalize", {"kind": "zip3"}), "03601", "ZIP_CODE", "000"),
        (OperatorSpec.of("generalize", {"kind": "zip3"}), "1234", "ZIP_CODE", "<ZIP_CODE>"),
        (OperatorSpec.of("generalize", {"kind": "date_year"}), "March 3, 2021", "DATE_TIME", "2021"),
        (OperatorSpec.of("generalize", {"kind": "date_year"}), "next week", "DATE_TIME",
         "<DATE_TIME>"),
        (OperatorSpec.of("date_shift"), "sometime", "DATE_TIME", "<DATE_TIME>"),
    ],
    ids=[
        "replace", "replace-label", "redact", "redact-marker", "mask-card", "mask-params",
        "age-band", "zip3", "zip3-restricted", "zip3-unparseable-fails-closed", "date-year",
        "date-year-unparseable-fails-closed", "date-shift-unparseable-fails-closed",
    ],
)  # fmt: skip
def test_operator_outputs(keys, spec, value, entity, expected):
    assert apply_operator(spec, value, entity, _ctx(keys)) == expected


def test_drop_returns_the_sentinel(keys):
    assert apply_operator(OperatorSpec.of("drop"), "x", "PERSON", _ctx(keys)) is DROP


def test_encrypt_hands_the_original_to_protection_and_never_outputs_it(keys):
    ctx = _ctx(keys)
    out = apply_operator(OperatorSpec.of("encrypt"), "123-45-6789", "US_SSN", ctx, "$.ssn")
    assert out == "<US_SSN:protected>"
    assert "123" not in out
    assert ctx.pending_protection == [("$.ssn", b"123-45-6789")]


@pytest.mark.parametrize(
    "value, keep, expected",
    [
        ("4111-1111-1111-1111", 4, "****-****-****-1111"),
        ("1234", 4, "****"),  # too short to show anything
        ("12345678", 4, "********"),  # exactly 2x keep: still all masked
        ("123456789", 4, "*****6789"),
        ("ab", 0, "**"),
        ("", 4, ""),
    ],
)
def test_mask(value, keep, expected):
    assert mask(value, keep) == expected


def test_pseudonym_is_stable_normalized_keyed_and_not_the_value(keys, other_keys):
    a = pseudonym("John  Smith", keys)
    assert a == pseudonym("john smith", keys) == pseudonym(" JOHN SMITH ", keys)
    assert a != pseudonym("Jane Smith", keys)
    assert a != pseudonym("John Smith", other_keys)  # another key: unlinkable
    assert len(a) == 12 and "john" not in a.lower()
    out = apply_operator(
        OperatorSpec.of("pseudonym", {"length": 16}), "John Smith", "PERSON", _ctx(keys)
    )
    assert out.startswith("<PERSON_") and len(out) == len("<PERSON_>") + 16


def test_keyed_operators_fail_without_a_key():
    ctx = _ctx(NoKeys())
    for spec in (OperatorSpec.of("pseudonym"), OperatorSpec.of("date_shift")):
        with pytest.raises(KeyUnavailable):
            apply_operator(spec, "2021-03-04", "DATE_TIME", ctx)


def test_date_shift_is_consistent_per_subject_and_keeps_the_format(keys):
    offset = subject_offset_days("patient-7", keys, 365)
    assert offset != 0 and -365 <= offset <= 365
    assert offset == subject_offset_days("patient-7", keys, 365)
    shifted = date_shift("2021-03-04", "patient-7", keys)
    assert shifted == (dt.date(2021, 3, 4) + dt.timedelta(days=offset)).isoformat()
    later = date_shift("2021-03-14", "patient-7", keys)
    assert (dt.date.fromisoformat(later) - dt.date.fromisoformat(shifted)).days == 10
    us = date_shift("03/04/2021", "patient-7", keys)
    assert parse_date(us)[1] == "us"
    offsets = {subject_offset_days(f"s{i}", keys, 365) for i in range(50)}
    assert len(offsets) > 10  # subjects get different offsets


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2021-03-04", (dt.date(2021, 3, 4), "iso")),
        ("03/04/2021", (dt.date(2021, 3, 4), "us")),
        ("3/4/21", (dt.date(2021, 3, 4), "us2")),
        ("March 4, 2021", (dt.date(2021, 3, 4), "mdy")),
        ("Mar 4th 2021", (dt.date(2021, 3, 4), "mdy")),
        ("4 March 2021", (dt.date(2021, 3, 4), "dmy")),
        ("2021-02-30", None),
        ("yesterday", None),
    ],
)
def test_parse_date(text, expected):
    assert parse_date(text) == expected


@pytest.mark.parametrize(
    "age, width, expected",
    [(0, 10, "0-9"), (37, 10, "30-39"), (89, 10, "80-89"), (90, 10, "90+"), (104, 10, "90+"),
     (37, 5, "35-39"), (88, 20, "80-89")],
)  # fmt: skip
def test_age_band(age, width, expected):
    assert age_band(age, width) == expected


def test_zip3_applies_every_restricted_prefix():
    assert len(HIPAA_RESTRICTED_ZIP3) == 17
    for prefix in HIPAA_RESTRICTED_ZIP3:
        assert zip3(prefix + "12") == "000"
    assert zip3("10001-1234") == "100"
    assert zip3("abc") is None
    assert generalize(37, "age_band") == "30-39"


@pytest.mark.parametrize(
    "raw, message",
    [
        ("shred", "unknown operator 'shred'"),
        ({"operator": 3}, "must be an operator name"),
        ([], "must be an operator name"),
        ({"operator": "mask", "keep_last": 9}, "where.keep_last: must be an integer in [0, 8]"),
        ({"operator": "mask", "keep_last": "4"}, "where.keep_last"),
        ({"operator": "mask", "char": "x"}, "where.char"),
        ({"operator": "pseudonym", "length": 4}, "where.length"),
        ({"operator": "generalize"}, "missing required key 'where.kind'"),
        ({"operator": "generalize", "kind": "zip5"}, "where.kind"),
        ({"operator": "generalize", "kind": "age_band", "width": 0}, "where.width"),
        ({"operator": "date_shift", "max_days": 0}, "where.max_days"),
        ({"operator": "replace", "label": 3}, "where.label"),
        ({"operator": "drop", "keep_last": 1}, "operator drop takes no parameter"),
        ({"operator": "pseudonym", "key": "abc"}, "takes no parameter"),
        ({"operator": "mask", "keep_last": True}, "where.keep_last"),
        ({"operator": "mask", "keep_last": 4.0}, "where.keep_last"),
        ({"operator": "mask", "char": "\u00e9"}, "where.char"),
    ],
)
def test_bad_operator_specs_are_named(raw, message):
    with pytest.raises(OperatorError, match="where") as caught:
        parse_operator(raw, "where")
    assert message in str(caught.value)


def test_parse_operator_accepts_names_and_params():
    assert parse_operator("drop", "w") == OperatorSpec.of("drop")
    spec = parse_operator({"operator": "mask", "keep_last": 2}, "w")
    assert spec.param("keep_last") == 2 and not spec.keyed
    assert parse_operator("pseudonym", "w").keyed


def test_key_file_is_created_owner_only_and_never_overwritten(tmp_path):
    path = write_key_file(tmp_path / "k" / "pseudonym.key")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    with pytest.raises(FileExistsError):
        write_key_file(path)
    keys = FileKeys(path)
    assert keys.key_for("pseudonym") != keys.key_for("date-shift")
    assert keys.key_id.startswith("file:") and path.read_text().strip()[:12] not in keys.key_id


def test_key_files_readable_by_others_or_short_are_refused(tmp_path):
    loose = write_key_file(tmp_path / "loose.key")
    os.chmod(loose, 0o644)
    with pytest.raises(KeyUnavailable):
        FileKeys(loose).key_for("pseudonym")
    short = tmp_path / "short.key"
    short.write_text("abcd")
    os.chmod(short, 0o600)
    with pytest.raises(KeyUnavailable):
        FileKeys(short).key_for("pseudonym")
    with pytest.raises(KeyUnavailable):
        FileKeys(tmp_path / "missing.key").key_for("pseudonym")


def test_keys_from_config_prefers_the_file_then_the_environment(tmp_path, monkeypatch):
    path = write_key_file(tmp_path / "p.key")
    monkeypatch.delenv("VEIL_TEST_KEY", raising=False)
    assert isinstance(keys_from_config(None, "VEIL_TEST_KEY"), NoKeys)
    monkeypatch.setenv("VEIL_TEST_KEY", str(path))
    from_env = keys_from_config(None, "VEIL_TEST_KEY")
    assert from_env.key_for("pseudonym") == FileKeys(path).key_for("pseudonym")
    assert isinstance(keys_from_config(str(path), None), FileKeys)


def test_veil_keys_init_command(tmp_path, capsys):
    from veil.pipelines.cli import main

    target = tmp_path / "keys" / "p.key"
    assert main(["keys", "init", str(target)]) == 0
    out = capsys.readouterr().out
    assert str(target) in out and target.read_text().strip() not in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert main(["keys", "init", str(target)]) == 2
    assert main(["keys", "init", str(target), "--force"]) == 0


# --- the registry: one class per operator, one file each ------------------------------


def test_every_operator_module_registers_one_operator_named_like_its_file():
    import importlib
    import pkgutil

    import veil.transforms.operators as package
    from veil.transforms.operators import REGISTRY, Operator

    modules = [
        m.name for m in pkgutil.iter_modules(package.__path__)
        if not m.name.startswith("_") and m.name != "base"
    ]  # fmt: skip
    assert sorted(modules) == sorted(REGISTRY)
    for name in modules:
        module = importlib.import_module(f"veil.transforms.operators.{name}")
        ours = [
            v for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Operator) and v is not Operator
            and v.__module__ == module.__name__
        ]  # fmt: skip
        assert [c.name for c in ours] == [name]


@pytest.fixture
def toy_operator():
    """A new operator defined the way an operator module defines one."""
    from veil.transforms.operators import REGISTRY, Operator, register

    @register
    class Reverse(Operator):
        name = "reverse_for_test"
        params = {"suffix": {"type": "string", "x-message": "must be a string"}}

        def operate(self, value, entity_type, params, ctx, field_path):
            return value[::-1] + params.get("suffix", "")

    yield Reverse
    del REGISTRY["reverse_for_test"]


def test_a_registered_operator_is_validated_and_applied(toy_operator, keys):
    spec = parse_operator({"operator": "reverse_for_test", "suffix": "!"}, "w")
    assert apply_operator(spec, "abc", "PERSON", _ctx(keys)) == "cba!"
    with pytest.raises(OperatorError, match="w.suffix: must be a string"):
        parse_operator({"operator": "reverse_for_test", "suffix": 1}, "w")
    with pytest.raises(OperatorError, match="takes no parameter"):
        parse_operator({"operator": "reverse_for_test", "keep_last": 1}, "w")


def test_an_operator_name_is_registered_once():
    from veil.transforms.operators import Operator, register

    class Impostor(Operator):
        name = "mask"

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
