"""Worker start-up: Secret Manager secrets into environment variables (stdlib only).

``$VEIL_SECRET_ENV`` names them, never holds them: comma-separated
``ENV_NAME=projects/PROJECT/secrets/SECRET/versions/VERSION`` (the variable holds the
secret) or ``ENV_NAME=file:projects/...`` (the secret's bytes go to a new mode-0600
file under ``$VEIL_SECRET_DIR``, default ``/tmp/veil-secrets``, and the variable holds
its path: key files such as ``VEIL_AUDIO_KEY_FILE``). For each, this fetches the secret
version with the worker service account's token (from the metadata server) and prints
``export ENV_NAME=...`` for ``worker-entrypoint.sh`` to eval before Beam's boot starts
the SDK harness. So ``--veil_sasl_password_env=VEIL_SASL_PASSWORD`` finds the password
in the workers' environment while the job's options only carry its name.

Errors go to stderr as one line without any secret value; the exit code is 1.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import sys
import urllib.request

METADATA_URL = os.environ.get("VEIL_METADATA_URL", "http://metadata.google.internal")
SECRET_MANAGER_URL = os.environ.get(
    "VEIL_SECRET_MANAGER_URL", "https://secretmanager.googleapis.com"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^(?:file:)?projects/[^/\s]+/secrets/[^/\s]+/versions/[^/\s]+$")


class SecretEnvError(Exception):
    pass


def parse(spec: str) -> list[tuple[str, str]]:
    pairs = []
    for number, item in enumerate(filter(None, (s.strip() for s in spec.split(","))), 1):
        name, sep, version = item.partition("=")
        if not sep or not _ENV_NAME.match(name) or not _VERSION.match(version):
            # Never echo the entry: a misplaced secret value would land in the log.
            raise SecretEnvError(
                f"VEIL_SECRET_ENV entry {number} is not ENV_NAME=projects/P/secrets/S/versions/V"
            )
        pairs.append((name, version))
    return pairs


def _get_json(url: str, headers: dict) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
        return json.load(r)


def access(version: str, token: str) -> bytes:
    body = _get_json(
        f"{SECRET_MANAGER_URL}/v1/{version}:access", {"Authorization": f"Bearer {token}"}
    )
    return base64.b64decode(body["payload"]["data"])


def _to_file(name: str, value: bytes) -> str:
    directory = os.environ.get("VEIL_SECRET_DIR", "/tmp/veil-secrets")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(value)
    return path


def exports(spec: str) -> str:
    pairs = parse(spec)
    if not pairs:
        return ""
    token = _get_json(
        f"{METADATA_URL}/computeMetadata/v1/instance/service-accounts/default/token",
        {"Metadata-Flavor": "Google"},
    )["access_token"]
    lines = []
    for name, version in pairs:
        as_file = version.startswith("file:")
        version = version.removeprefix("file:")
        try:
            value = access(version, token)
            value = _to_file(name, value) if as_file else value.decode("utf-8")
        except Exception as exc:  # class name only: never echo a response body
            raise SecretEnvError(f"{version}: {type(exc).__name__}") from None
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines)


def main() -> int:
    try:
        out = exports(os.environ.get("VEIL_SECRET_ENV", ""))
    except Exception as exc:
        message = str(exc) if isinstance(exc, SecretEnvError) else type(exc).__name__
        print(f"veil secret_env: error: {message}", file=sys.stderr)
        return 1
    if out:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
