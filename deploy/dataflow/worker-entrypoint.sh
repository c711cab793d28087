#!/bin/sh
# The image's ENTRYPOINT on Dataflow workers: loads the secrets that $VEIL_SECRET_ENV names
# (Secret Manager, see secret_env.py) into the environment, then hands over to Beam's
# boot, which starts the SDK harness with that environment. Without $VEIL_SECRET_ENV it
# is Beam's boot unchanged. A secret that cannot be read stops the worker here, with one
# line in the worker log, instead of failing every bundle later.
set -e
if [ -n "${VEIL_SECRET_ENV:-}" ]; then
    exports="$(python "${VEIL_SECRET_ENV_PY:-/opt/veil/secret_env.py}")"
    eval "$exports"
    unset exports
fi
exec "${VEIL_BEAM_BOOT:-/opt/apache/beam/boot}" "$@"
