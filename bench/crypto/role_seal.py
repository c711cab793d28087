"""Role-sealed envelopes (issue 18): cost of sealing to the reveal roles' keys.

    .venv/bin/python bench/crypto/role_seal.py [--n 2000]

Same run, same 64-byte field: ``aead.seal`` (the reference: an envelope the key service
alone opens) against ``aead.seal_for_roles`` with 1, 2 and 3 role grants (RSA-3072
OAEP per grant, one fresh role secret per field); and opening with a local role key
(RSA private-key operation in process; on a PKCS#11 token the token does it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from veil.transforms.crypto import aead


def per_op(fn, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n
    dek, field, ctx = aead.prepare(aead.new_key()), os.urandom(64), b"context" * 8
    pairs = [aead.new_role_keypair() for _ in range(3)]
    base = per_op(lambda: aead.seal(dek, "s:" + "a" * 32, 1, field, ctx), n)
    print(f"load={os.getloadavg()[0]:.1f}  n={n}")
    print(f"seal (reference)          {base:9.1f} us   1.0x")
    for k in (1, 2, 3):
        grants = {f"role{i}": pairs[i][0] for i in range(k)}
        t = per_op(lambda: aead.seal_for_roles(dek, "s:" + "a" * 32, 1, field, ctx, grants), n)
        print(f"seal_for_roles, {k} grant(s) {t:9.1f} us {t / base:6.1f}x")
    env = aead.seal_for_roles(dek, "s:" + "a" * 32, 1, field, ctx, {"role0": pairs[0][0]})
    wrapped = aead.parse_role_envelope(env)[2]["role0"]

    role_key = aead.RolePrivateKey(pairs[0][1])  # loaded once, as LocalRoleKey does

    def open_local():
        return aead.open_role_envelope(dek, env, ctx, role_key.unwrap(wrapped))

    plain = aead.seal(dek, "s:" + "a" * 32, 1, field, ctx)
    ob = per_op(lambda: aead.open_envelope(dek, plain, ctx), n)
    ot = per_op(open_local, max(n // 10, 50))
    print(f"open (reference)          {ob:9.1f} us   1.0x")
    print(f"open role-sealed, local   {ot:9.1f} us {ot / ob:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
