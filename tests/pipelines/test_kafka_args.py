"""The ``veil`` commands' Kafka security flags: same checks and defaults as ``veil run``."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from veil.pipelines import cli, kafka_args
from veil.pipelines.options import VeilConfig

SECURE = [
    "--security-protocol=SASL_SSL",
    "--ssl-cafile=/etc/veil/ca.pem",
    "--sasl-mechanism=SCRAM-SHA-512",
    "--sasl-username=veil-analyst",
    "--sasl-password-env=ANALYST_PW",
]
ENV = (
    "VEIL_SECURITY_PROTOCOL", "VEIL_SSL_CAFILE", "VEIL_SASL_MECHANISM", "VEIL_SASL_USERNAME",
    "VEIL_SASL_PASSWORD_ENV",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def _args(*argv):
    return cli.parser().parse_args(list(argv))


@pytest.mark.parametrize(
    "command",
    [
        ["consume", "--topic", "t"],
        ["produce", "f.txt", "--topic", "t"],
        ["topics", "create"],
        ["demo"],
        ["keys", "watch-erasures"],
        ["keys", "forget", "s"],
        ["reveal", "f.jsonl", "--principal", "p", "--role", "r"],
    ],
    ids=["consume", "produce", "topics", "demo", "watch-erasures", "forget", "reveal"],
)
def test_every_kafka_command_takes_the_security_flags(command, monkeypatch):
    monkeypatch.setenv("ANALYST_PW", "x")
    args = _args(*command, "--bootstrap", "b:9093", *SECURE)
    assert kafka_args.client_config(args) == {
        "bootstrap_servers": ["b:9093"],
        "security_protocol": "SASL_SSL",
        "ssl_cafile": "/etc/veil/ca.pem",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "veil-analyst",
        "sasl_password_env": "ANALYST_PW",
    }


def test_defaults_come_from_the_same_variables_as_veil_run(monkeypatch):
    monkeypatch.setenv("VEIL_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("VEIL_SSL_CAFILE", "/ca.pem")
    monkeypatch.setenv("VEIL_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("VEIL_SASL_USERNAME", "veil-pipeline")
    monkeypatch.setenv("VEIL_SASL_PASSWORD_ENV", "PIPELINE_PW")
    command = kafka_args.security(_args("consume", "--topic", "t"))
    run = VeilConfig.from_options(PipelineOptions([])).security
    assert (
        command
        == run
        == {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": "/ca.pem",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_plain_username": "veil-pipeline",
            "sasl_password_env": "PIPELINE_PW",
        }
    )


def test_demo_passes_its_flags_on_to_the_pipeline():
    args = _args("demo", *SECURE)
    flags = kafka_args.as_run_flags(args)
    assert VeilConfig.from_options(PipelineOptions(flags)).security == kafka_args.security(args)


def test_a_bad_combination_exits_2_naming_the_commands_flags(capsys):
    argv = ["consume", "--topic", "t", "--security-protocol=SASL_SSL", "--sasl-username=u"]
    code = cli.main(argv)
    assert code == 2
    assert "--security-protocol SASL_SSL needs --sasl-mechanism" in capsys.readouterr().err


def test_a_missing_password_variable_fails_without_the_value(capsys, monkeypatch):
    monkeypatch.delenv("ANALYST_PW", raising=False)
    code = cli.main(["consume", "--topic", "t", "--bootstrap", "127.0.0.1:1", *SECURE])
    assert code == 2
    assert "ANALYST_PW (the SASL password) is not set" in capsys.readouterr().err
