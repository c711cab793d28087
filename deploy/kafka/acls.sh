#!/usr/bin/env bash
# Applies Veil's least-privilege ACLs to a secured broker (see deploy/kafka/README.md).
#
#   source DIR/secure/admin.env          # written by `kafka.sh start-secure DIR`
#   deploy/kafka/acls.sh [--prefix veil] [--consumer-group veil-pipeline] [--prune] ...
#
# Connection flags (--bootstrap, --security-protocol, --ssl-cafile, --sasl-mechanism,
# --sasl-username, --sasl-password-env) default to the $VEIL_* variables, as for the
# `veil` command; the password is read from the variable --sasl-password-env names.
# Run `acls.sh --help` for every flag. The logic lives in veil.pipelines.acls.
set -euo pipefail

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
PY="${VEIL_PYTHON:-$REPO_ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "acls.sh: $PY not found (run make venv, or set VEIL_PYTHON)" >&2; exit 1; }
exec "$PY" -m veil.pipelines.acls "$@"
