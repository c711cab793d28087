"""Kafka client settings, with secrets resolved where the client is created.

Configs travel inside the pipeline graph (pickled into DoFns), so they never hold a
secret value: a SASL password is named by ``sasl_password_env`` and read from that
environment variable on the worker, when the client is built. Every Kafka client Veil
creates (source, sink, topic admin, the ``veil`` commands) takes its settings from
``security_config`` and builds them through ``resolve``, so one set of flags secures the
whole path.

Example::

    config = {"bootstrap_servers": ["broker:9093"], **security_config(
        "SASL_SSL", cafile="/etc/veil/ca.pem", mechanism="SCRAM-SHA-512",
        username="veil-pipeline", password_env="VEIL_SASL_PASSWORD")}
    consumer = KafkaConsumer(**resolve(config))
    producer = confluent_kafka.Producer(librdkafka_config(config))

Settings use kafka-python's names; ``librdkafka_config`` translates them for the
librdkafka (confluent-kafka) clients.
"""

from __future__ import annotations

import os
import re

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
# Mechanisms that need nothing beyond a user name and a password (GSSAPI and
# OAUTHBEARER need Kerberos or a token provider: not wired in Veil).
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_PASSWORD_ENV = "VEIL_SASL_PASSWORD"
# Producers linger this long to fill batches of up to BATCH_BYTES; every bundle ends in a
# flush, which sends at once, so the linger never delays an acknowledgement a commit
# waits for. Each new batch wakes kafka-python's I/O thread, which then competes for the
# GIL: fewer, larger batches leave the pipeline's thread more of it.
LINGER_MS = 500
BATCH_BYTES = 1 << 20
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# config key naming a variable -> (kafka-python setting, what it is, for messages)
_SECRET_ENVS = {"sasl_password_env": ("sasl_plain_password", "SASL password")}


class SecurityConfigError(ValueError):
    """A combination of security settings that cannot work or would not be safe."""


def security_config(
    protocol: str = "PLAINTEXT",
    *,
    cafile: str | None = None,
    mechanism: str | None = None,
    username: str | None = None,
    password_env: str | None = DEFAULT_PASSWORD_ENV,
    flag=lambda name: name,
) -> dict:
    """Checks a set of security settings and returns them as secret-free client settings.

    Fails closed: a TLS or SASL setting that the protocol would silently ignore, or a
    SASL mechanism that would send the password in clear, is an error rather than a
    weaker connection. Brokers are always verified against ``cafile`` (or the system
    CAs), host name included: there is no switch to turn that off.

    Args:
        protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
        cafile: CA bundle that signs the brokers' certificates (default: system CAs).
        mechanism, username, password_env: SASL user; the password is named, not given.
        flag: maps a setting's name (``security_protocol``, ``ssl_cafile``,
            ``sasl_mechanism``, ``sasl_username``, ``sasl_password_env``) to the flag
            users see, for messages.
    """
    if protocol not in PROTOCOLS:
        raise SecurityConfigError(
            f"{flag('security_protocol')} must be one of {', '.join(PROTOCOLS)}"
        )
    if cafile and protocol not in TLS_PROTOCOLS:
        raise SecurityConfigError(
            f"{flag('ssl_cafile')} needs {flag('security_protocol')} SSL or SASL_SSL "
            f"(it is {protocol})"
        )
    if protocol not in SASL_PROTOCOLS:
        for name, value in (("sasl_mechanism", mechanism), ("sasl_username", username)):
            if value:
                raise SecurityConfigError(
                    f"{flag(name)} needs {flag('security_protocol')} SASL_SSL or "
                    f"SASL_PLAINTEXT (it is {protocol})"
                )
    config = {"security_protocol": protocol}
    if cafile:
        config["ssl_cafile"] = cafile
    if protocol in SASL_PROTOCOLS:
        config.update(_sasl(protocol, mechanism, username, password_env, flag))
    return config


def _sasl(protocol, mechanism, username, password_env, flag) -> dict:
    if not mechanism:
        raise SecurityConfigError(
            f"{flag('security_protocol')} {protocol} needs {flag('sasl_mechanism')} "
            f"({', '.join(SASL_MECHANISMS)})"
        )
    if mechanism not in SASL_MECHANISMS:
        raise SecurityConfigError(
            f"{flag('sasl_mechanism')} must be one of {', '.join(SASL_MECHANISMS)}"
        )
    if mechanism == "PLAIN" and protocol == "SASL_PLAINTEXT":
        raise SecurityConfigError(
            f"{flag('sasl_mechanism')} PLAIN over SASL_PLAINTEXT would send the password "
            f"in clear; use {flag('security_protocol')} SASL_SSL or a SCRAM mechanism"
        )
    if not username or any(c.isspace() for c in username):
        raise SecurityConfigError(f"{flag('sasl_username')} must name the SASL user (no spaces)")
    if not password_env:
        raise SecurityConfigError(
            f"{flag('sasl_password_env')} must name the environment variable holding the password"
        )
    _check_env_name(password_env, flag("sasl_password_env"))
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": username,
        "sasl_password_env": password_env,
    }


def _check_env_name(name: str, flag_name: str) -> None:
    if not _ENV_NAME.match(name):
        raise SecurityConfigError(f"{flag_name} must be an environment variable name, got {name!r}")


def resolve(config: dict) -> dict:
    """The settings kafka-python takes: secret environment variables read, here and now."""
    resolved = dict(config)
    for env_key, (secret_key, what) in _SECRET_ENVS.items():
        env_name = resolved.pop(env_key, None)
        if env_name:
            if env_name not in os.environ:
                raise KeyError(f"environment variable {env_name} (the {what}) is not set")
            resolved[secret_key] = os.environ[env_name]
    return resolved


# kafka-python setting -> librdkafka property, for every setting a Veil config can hold
# (``security_config``, ``VeilConfig.client_config``, ``resolve``).
_LIBRDKAFKA_NAMES = {
    "bootstrap_servers": "bootstrap.servers",
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "ssl_cafile": "ssl.ca.location",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
}


def librdkafka_config(config: dict) -> dict:
    """The librdkafka (confluent-kafka) properties for ``config``, secrets resolved.

    Fails closed: a setting with no translation here is an error, not a setting silently
    dropped. TLS always verifies the broker's certificate and host name, as kafka-python
    does (``ssl.endpoint.identification.algorithm=https``).

    Example::

        librdkafka_config({"bootstrap_servers": ["a:9093", "b:9093"],
                           "security_protocol": "SSL", "ssl_cafile": "/ca.pem"})
        # {"bootstrap.servers": "a:9093,b:9093", "security.protocol": "ssl",
        #  "ssl.ca.location": "/ca.pem", "ssl.endpoint.identification.algorithm": "https"}
    """
    out = {}
    for key, value in resolve(config).items():
        if value is None:
            continue
        name = _LIBRDKAFKA_NAMES.get(key)
        if name is None:
            raise SecurityConfigError(f"Kafka client setting {key!r} has no librdkafka equivalent")
        if key == "bootstrap_servers" and not isinstance(value, str):
            value = ",".join(value)
        elif key == "security_protocol":
            if value not in PROTOCOLS:
                raise SecurityConfigError(
                    f"security_protocol must be one of {', '.join(PROTOCOLS)}"
                )
            value = value.lower()
        out[name] = value
    if config.get("security_protocol") in TLS_PROTOCOLS:
        out["ssl.endpoint.identification.algorithm"] = "https"
    return out
