"""Kafka security settings: checked combinations, secret-free configs, late resolution."""

from __future__ import annotations

import pytest

from veil.transforms.kafkaio.client import (
    SecurityConfigError,
    librdkafka_config,
    resolve,
    security_config,
)

SASL = {"mechanism": "SCRAM-SHA-512", "username": "veil-pipeline", "password_env": "PW"}


@pytest.mark.parametrize(
    "protocol, settings, expected",
    [
        ("PLAINTEXT", {}, {"security_protocol": "PLAINTEXT"}),
        ("SSL", {}, {"security_protocol": "SSL"}),
        ("SSL", {"cafile": "/ca.pem"}, {"security_protocol": "SSL", "ssl_cafile": "/ca.pem"}),
        (
            "SASL_SSL",
            {"cafile": "/ca.pem", **SASL},
            {
                "security_protocol": "SASL_SSL",
                "ssl_cafile": "/ca.pem",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "veil-pipeline",
                "sasl_password_env": "PW",
            },
        ),
        (
            "SASL_PLAINTEXT",
            SASL,
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "veil-pipeline",
                "sasl_password_env": "PW",
            },
        ),
        (
            "SASL_SSL",
            {**SASL, "mechanism": "PLAIN"},
            {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "veil-pipeline",
                "sasl_password_env": "PW",
            },
        ),
    ],
    ids=[
        "plaintext",
        "ssl-system-cas",
        "ssl-ca",
        "sasl-ssl",
        "sasl-plaintext-scram",
        "plain-over-tls",
    ],
)
def test_valid_combinations(protocol, settings, expected):
    assert security_config(protocol, **settings) == expected


@pytest.mark.parametrize(
    "protocol, settings, message",
    [
        ("TLS", {}, "security_protocol must be one of"),
        ("PLAINTEXT", {"cafile": "/ca.pem"}, "ssl_cafile needs security_protocol SSL or SASL_SSL"),
        ("SASL_PLAINTEXT", {"cafile": "/ca.pem", **SASL}, "ssl_cafile needs"),
        ("PLAINTEXT", {"mechanism": "SCRAM-SHA-512"}, "sasl_mechanism needs security_protocol"),
        ("SSL", {"username": "u"}, "sasl_username needs security_protocol SASL"),
        ("SASL_SSL", {"username": "u"}, "needs sasl_mechanism"),
        ("SASL_SSL", {**SASL, "mechanism": "GSSAPI"}, "sasl_mechanism must be one of"),
        ("SASL_SSL", {**SASL, "mechanism": "scram-sha-512"}, "sasl_mechanism must be one of"),
        ("SASL_PLAINTEXT", {**SASL, "mechanism": "PLAIN"}, "password in clear"),
        ("SASL_SSL", {**SASL, "username": None}, "sasl_username must name"),
        ("SASL_SSL", {**SASL, "username": "two words"}, "sasl_username must name"),
        ("SASL_SSL", {**SASL, "password_env": None}, "sasl_password_env must name"),
        ("SASL_SSL", {**SASL, "password_env": "VEIL-PASSWORD"}, "environment variable name"),
        ("SASL_SSL", {**SASL, "password_env": "1PW"}, "environment variable name"),
    ],
    ids=[
        "unknown-protocol", "ca-without-tls", "ca-on-sasl-plaintext", "mechanism-without-sasl",
        "user-without-sasl", "sasl-without-mechanism", "gssapi", "lowercase-mechanism",
        "plain-in-clear", "no-user", "user-with-space", "no-password-env", "dash-in-env",
        "digit-first-env",
    ],
)  # fmt: skip
def test_unsafe_or_inconsistent_combinations_are_refused(protocol, settings, message):
    with pytest.raises(SecurityConfigError, match=message):
        security_config(protocol, **settings)


def test_messages_use_the_callers_flag_names():
    with pytest.raises(SecurityConfigError, match="^--x-ssl_cafile needs --x-security_protocol"):
        security_config("PLAINTEXT", cafile="/ca", flag=lambda name: f"--x-{name}")


def test_the_config_names_the_password_and_resolve_reads_it_late(monkeypatch):
    config = {"bootstrap_servers": ["b:1"], **security_config("SASL_SSL", **SASL)}
    monkeypatch.setenv("PW", "s3cret-value")
    assert "s3cret-value" not in repr(config)
    resolved = resolve(config)
    assert resolved["sasl_plain_password"] == "s3cret-value"
    assert "sasl_password_env" not in resolved and "sasl_password_env" in config
    monkeypatch.delenv("PW")
    with pytest.raises(KeyError, match="PW \\(the SASL password\\) is not set"):
        resolve(config)


@pytest.mark.parametrize(
    "protocol, settings, expected",
    [
        ("PLAINTEXT", {}, {"security.protocol": "plaintext"}),
        (
            "SSL",
            {"cafile": "/ca.pem"},
            {
                "security.protocol": "ssl",
                "ssl.ca.location": "/ca.pem",
                "ssl.endpoint.identification.algorithm": "https",
            },
        ),
        (
            "SSL",
            {},
            {"security.protocol": "ssl", "ssl.endpoint.identification.algorithm": "https"},
        ),
        (
            "SASL_SSL",
            {"cafile": "/ca.pem", **SASL},
            {
                "security.protocol": "sasl_ssl",
                "ssl.ca.location": "/ca.pem",
                "ssl.endpoint.identification.algorithm": "https",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "veil-pipeline",
                "sasl.password": "s3cret-value",
            },
        ),
        (
            "SASL_PLAINTEXT",
            SASL,
            {
                "security.protocol": "sasl_plaintext",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "veil-pipeline",
                "sasl.password": "s3cret-value",
            },
        ),
    ],
    ids=["plaintext", "ssl-ca", "ssl-system-cas", "sasl-ssl", "sasl-plaintext"],
)
def test_librdkafka_names_for_every_setting(monkeypatch, protocol, settings, expected):
    monkeypatch.setenv("PW", "s3cret-value")
    config = {
        "bootstrap_servers": ["a:9093", "b:9093"],
        "client_id": "veil",
        **security_config(protocol, **settings),
    }
    assert librdkafka_config(config) == {
        "bootstrap.servers": "a:9093,b:9093",
        "client.id": "veil",
        **expected,
    }
    assert "s3cret-value" not in repr(config)  # the graph's config names it, never holds it


def test_librdkafka_config_takes_the_pipelines_client_config(monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions

    from veil.pipelines.options import VeilConfig

    monkeypatch.setenv("VEIL_TEST_PW", "pw")
    flags = [
        "--veil_bootstrap_servers=a:9093,b:9093",
        "--veil_security_protocol=SASL_SSL",
        "--veil_ssl_cafile=/ca.pem",
        "--veil_sasl_mechanism=SCRAM-SHA-512",
        "--veil_sasl_username=veil-pipeline",
        "--veil_sasl_password_env=VEIL_TEST_PW",
    ]
    got = librdkafka_config(VeilConfig.from_options(PipelineOptions(flags)).client_config())
    assert got["bootstrap.servers"] == "a:9093,b:9093"
    assert got["sasl.password"] == "pw" and got["ssl.ca.location"] == "/ca.pem"
    assert got["ssl.endpoint.identification.algorithm"] == "https"


def test_librdkafka_config_refuses_settings_it_cannot_translate():
    with pytest.raises(SecurityConfigError, match="'ssl_check_hostname' has no librdkafka"):
        librdkafka_config({"bootstrap_servers": "b:1", "ssl_check_hostname": False})
    with pytest.raises(SecurityConfigError, match="security_protocol must be one of"):
        librdkafka_config({"bootstrap_servers": "b:1", "security_protocol": "TLS"})
