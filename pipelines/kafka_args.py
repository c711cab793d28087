"""Kafka connection flags for the ``veil`` commands (produce, consume, topics, keys, demo).

The same settings as ``veil run``'s ``--veil_security_protocol`` etc., under short names,
with the same ``$VEIL_*`` defaults, checked by the same function
(``veil.transforms.kafkaio.client.security_config``). So after
``source DIR/secure/veil-analyst.env`` (written by ``kafka.sh start-secure``) every command
talks to the secured broker as that user. The password itself is only ever read from the
environment variable that ``--sasl-password-env`` names.
"""

from __future__ import annotations

import argparse
import os

from veil.transforms.kafkaio.client import (
    DEFAULT_PASSWORD_ENV,
    PROTOCOLS,
    SASL_MECHANISMS,
    SecurityConfigError,
    security_config,
)

# setting name -> the command flag that sets it (for error messages). Each also takes
# `veil run`'s name (--veil_security_protocol, ...): one name for a setting everywhere.
_FLAGS = {
    "security_protocol": "--security-protocol",
    "ssl_cafile": "--ssl-cafile",
    "sasl_mechanism": "--sasl-mechanism",
    "sasl_username": "--sasl-username",
    "sasl_password_env": "--sasl-password-env",
}


def _defaults() -> dict:
    env = os.environ.get
    return {
        "security_protocol": env("VEIL_SECURITY_PROTOCOL", "PLAINTEXT"),
        "ssl_cafile": env("VEIL_SSL_CAFILE"),
        "sasl_mechanism": env("VEIL_SASL_MECHANISM"),
        "sasl_username": env("VEIL_SASL_USERNAME"),
        "sasl_password_env": env("VEIL_SASL_PASSWORD_ENV", DEFAULT_PASSWORD_ENV),
    }


def add_security_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the security flags (defaults from ``$VEIL_SECURITY_PROTOCOL`` and friends)."""
    default = _defaults()
    g = p.add_argument_group("Kafka security (defaults from $VEIL_* variables)")
    g.add_argument(
        "--veil_security_protocol",
        "--security-protocol",
        dest="security_protocol",
        choices=PROTOCOLS,
        default=default["security_protocol"],
        help="default: $VEIL_SECURITY_PROTOCOL or PLAINTEXT",
    )
    g.add_argument(
        "--veil_ssl_cafile",
        "--ssl-cafile",
        dest="ssl_cafile",
        default=default["ssl_cafile"],
        help="CA that signs the brokers' certificates",
    )
    g.add_argument(
        "--veil_sasl_mechanism",
        "--sasl-mechanism",
        dest="sasl_mechanism",
        default=default["sasl_mechanism"],
        help=", ".join(SASL_MECHANISMS),
    )
    g.add_argument(
        "--veil_sasl_username",
        "--sasl-username",
        dest="sasl_username",
        default=default["sasl_username"],
        help="SASL user",
    )
    g.add_argument(
        "--veil_sasl_password_env",
        "--sasl-password-env",
        dest="sasl_password_env",
        default=default["sasl_password_env"],
        help=f"variable holding the SASL password (default: {DEFAULT_PASSWORD_ENV})",
    )
    return p


def _values(args) -> dict:
    return {**_defaults(), **{k: getattr(args, k) for k in _FLAGS if hasattr(args, k)}}


def security(args) -> dict:
    """The checked, secret-free security settings of ``args`` (the ``$VEIL_*`` defaults for
    a command without the flags); ``SecurityConfigError`` names the command's flags."""
    values = _values(args)
    return security_config(
        values["security_protocol"],
        cafile=values["ssl_cafile"],
        mechanism=values["sasl_mechanism"],
        username=values["sasl_username"],
        password_env=values["sasl_password_env"],
        flag=lambda name: _FLAGS[name],
    )


def client_config(args, bootstrap: str | None = None) -> dict:
    """kafka-python settings for ``args`` (pass them through ``client.resolve``)."""
    servers = bootstrap if bootstrap is not None else args.bootstrap
    return {"bootstrap_servers": servers.split(","), **checked_security(args)}


def checked_security(args) -> dict:
    """``security(args)``, with a bad combination as a usage error of the command."""
    from veil.pipelines.cli import CliError

    try:
        settings = security(args)
    except SecurityConfigError as exc:
        raise CliError(str(exc), 2) from None
    # The command is the client: a missing password is a usage error here, not a
    # failure deep inside kafka-python (``veil run`` checks on the workers instead).
    env_name = settings.get("sasl_password_env")
    if env_name and env_name not in os.environ:
        raise CliError(f"environment variable {env_name} (the SASL password) is not set", 2)
    return settings


def as_run_flags(args) -> list[str]:
    """The same settings as ``veil run`` flags (``veil demo`` passes them on)."""
    return [f"--veil_{name}={value}" for name, value in _values(args).items() if value]
