"""Set-up for the secured local broker (``kafka.sh start-secure``): TLS, SCRAM users, clients.

``kafka.sh start-secure DIR`` calls this script at three points:

    secure.py prepare DIR                -> TLS material and user passwords (once per DIR)
    secure.py properties DIR PORT CPORT  -> server.properties lines for SASL_SSL + ACLs
    secure.py format-args DIR            -> ``--add-scram`` arguments for the first format
    secure.py clients DIR PORT           -> DIR/client.json and DIR/secure/<user>.env

Why a separate script: it is the one place outside ``transforms/crypto/aead.py`` allowed to
use ``cryptography`` (x509 certificates and their keys, for this dev/test broker only).

Model (see deploy/kafka/README.md): clients connect on ``SASL_SSL`` (TLS 1.3, server
certificate signed by a per-DIR CA; SCRAM-SHA-512 users created at format time). The
controller listener needs mutual TLS: only the broker's own certificate (CN=veil-broker)
gets in. The CA's private key is never written: nothing can mint new certificates for this
DIR later, so a new CA (and new ``ca.pem``) is made when the broker certificate is near expiry.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import sys
from pathlib import Path

BROKER_USER = "veil-broker"
ADMIN_USER = "admin"
# The principals the ACL model (deploy/kafka/acls.sh) knows; all get a SCRAM password.
USERS = (ADMIN_USER, BROKER_USER, "veil-pipeline", "veil-analyst", "veil-producer", "veil-auditor")
MECHANISM = "SCRAM-SHA-512"
CERT_DAYS = 365
RENEW_BEFORE_DAYS = 7


def secure_dir(dir_: Path) -> Path:
    path = dir_ / "secure"
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Writes a file only its owner can read (keys, passwords), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- TLS


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _new_key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def issue_certificates(now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A fresh CA and a broker certificate; returns ``(ca_pem, broker_key_and_chain_pem)``.

    The broker certificate serves TLS on 127.0.0.1/localhost and also authenticates the
    broker as a client of its own controller listener (mutual TLS), hence both EKUs.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = now or datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=CERT_DAYS)
    ca_key, broker_key = _new_key(), _new_key()
    ca_name = _name(f"Veil local Kafka CA {secrets.token_hex(4)}")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(BROKER_USER))
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(san, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    # Kafka's PEM keystore wants an unencrypted (or PBES2) PKCS#8 key, then the chain.
    key_pem = broker_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chain = broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    return ca_cert.public_bytes(pem), key_pem + chain


def certificates_fresh(sec: Path, now: datetime.datetime | None = None) -> bool:
    """True if DIR already has a CA and a broker certificate valid for a while yet."""
    from cryptography import x509

    ca, broker = sec / "ca.pem", sec / "broker.pem"
    if not (ca.is_file() and broker.is_file()):
        return False
    now = now or datetime.datetime.now(datetime.UTC)
    cert = x509.load_pem_x509_certificates(broker.read_bytes())[0]
    return cert.not_valid_after_utc - now > datetime.timedelta(days=RENEW_BEFORE_DAYS)


# ------------------------------------------------------------------------- users


def load_passwords(sec: Path) -> dict:
    path = sec / "users.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def ensure_passwords(dir_: Path, sec: Path) -> dict:
    """One random password per user, kept for the life of DIR (SCRAM credentials live in
    the formatted metadata log, so they cannot change without a new format)."""
    passwords = load_passwords(sec)
    formatted = (dir_ / "data" / "meta.properties").is_file()
    if formatted and not passwords:
        raise SystemExit(
            f"secure.py: {dir_} holds a broker formatted without security; use a fresh DIR"
        )
    missing = [u for u in USERS if u not in passwords]
    if missing and formatted:
        raise SystemExit(
            f"secure.py: {dir_} was formatted without users {missing}; use a fresh DIR"
        )
    for user in missing:
        passwords[user] = secrets.token_urlsafe(24)
    if missing:
        write_private(sec / "users.json", json.dumps(passwords, indent=2, sort_keys=True) + "\n")
    return passwords


# ---------------------------------------------------------------------- commands


def cmd_prepare(dir_: Path) -> None:
    if (dir_ / "data" / "meta.properties").is_file() and not (dir_ / "secure").is_dir():
        # Checked before anything is written, so the DIR stays usable by plain `start`.
        raise SystemExit(
            f"secure.py: {dir_} holds a broker formatted without security; use a fresh DIR"
        )
    sec = secure_dir(dir_)
    if not certificates_fresh(sec):
        ca_pem, broker_pem = issue_certificates()
        write_private(sec / "broker.pem", broker_pem)
        (sec / "ca.pem").write_bytes(ca_pem)
        os.chmod(sec / "ca.pem", 0o644)
    ensure_passwords(dir_, sec)


def broker_properties(dir_: Path, port: int, cport: int) -> str:
    sec = dir_ / "secure"
    password = load_passwords(sec)[BROKER_USER]
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{BROKER_USER}" password="{password}";'
    )
    lines = [
        "# Secured mode (deploy/kafka/secure.py). These lines override the PLAINTEXT",
        "# listener settings above (later keys win).",
        f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
        "listener.security.protocol.map=CONTROLLER:SSL,SASL_SSL:SASL_SSL",
        "inter.broker.listener.name=SASL_SSL",
        f"sasl.enabled.mechanisms={MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={jaas}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={sec / 'broker.pem'}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={sec / 'ca.pem'}",
        "ssl.protocol=TLSv1.3",
        "ssl.enabled.protocols=TLSv1.3",
        "ssl.endpoint.identification.algorithm=https",
        # Only the broker's own certificate opens the controller listener.
        "listener.name.controller.ssl.client.auth=required",
        "ssl.principal.mapping.rules=RULE:^CN=([A-Za-z0-9._-]+)$/$1/,DEFAULT",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{ADMIN_USER};User:{BROKER_USER}",
        "allow.everyone.if.no.acl.found=false",
        "",
    ]
    return "\n".join(lines)


def format_args(dir_: Path) -> str:
    passwords = load_passwords(dir_ / "secure")
    return " ".join(
        f"--add-scram {MECHANISM}=[name={user},password={passwords[user]}]" for user in USERS
    )


def cmd_clients(dir_: Path, port: int) -> None:
    """DIR/client.json for tests and tools, DIR/secure/<user>.env for shells."""
    sec = dir_ / "secure"
    passwords = load_passwords(sec)
    bootstrap = f"127.0.0.1:{port}"
    common = {
        "bootstrap_servers": bootstrap,
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(sec / "ca.pem"),
        "sasl_mechanism": MECHANISM,
    }
    users = {u: passwords[u] for u in USERS if u != BROKER_USER}
    write_private(dir_ / "client.json", json.dumps({**common, "users": users}, indent=2) + "\n")
    for user, password in users.items():
        env = (
            f"# Source this to act as {user} on the secured broker in {dir_}.\n"
            f"export VEIL_BOOTSTRAP_SERVERS={bootstrap}\n"
            "export VEIL_SECURITY_PROTOCOL=SASL_SSL\n"
            f"export VEIL_SSL_CAFILE={sec / 'ca.pem'}\n"
            f"export VEIL_SASL_MECHANISM={MECHANISM}\n"
            f"export VEIL_SASL_USERNAME={user}\n"
            "export VEIL_SASL_PASSWORD_ENV=VEIL_SASL_PASSWORD\n"
            f"export VEIL_SASL_PASSWORD={password}\n"
        )
        write_private(sec / f"{user}.env", env)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, dir_ = argv[0], Path(argv[1]).resolve()
    if cmd == "prepare" and len(argv) == 2:
        cmd_prepare(dir_)
    elif cmd == "properties" and len(argv) == 4:
        sys.stdout.write(broker_properties(dir_, int(argv[2]), int(argv[3])))
    elif cmd == "format-args" and len(argv) == 2:
        print(format_args(dir_))
    elif cmd == "clients" and len(argv) == 3:
        cmd_clients(dir_, int(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
