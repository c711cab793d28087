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
        resolved["sasl_plain_password"] = os.environ.get(env_name, "")
    return resolved
