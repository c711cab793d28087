"""kafka-python client settings, with secrets resolved where the client is created.

Configs travel inside the pipeline graph (pickled into DoFns), so they never hold a
secret value: a SASL password is named by ``sasl_password_env`` and read from that
environment variable on the worker, when the client is built.
"""

from __future__ import annotations

import os


def resolve(config: dict) -> dict:
    resolved = dict(config)
    env_name = resolved.pop("sasl_password_env", None)
    if env_name:
        if env_name not in os.environ:
            raise KeyError(f"environment variable {env_name} (the SASL password) is not set")
        resolved["sasl_plain_password"] = os.environ[env_name]
    return resolved
