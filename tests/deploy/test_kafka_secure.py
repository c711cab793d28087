"""deploy/kafka/secure.py: the secured broker's certificates, users and config (no broker;
tests/integration/test_secured_kafka.py runs one)."""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("veil_kafka_secure", REPO / "deploy/kafka/secure.py")
secure = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(secure)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def issued():
    ca_pem, broker_pem = secure.issue_certificates()
    ca = x509.load_pem_x509_certificate(ca_pem)
    leaf, chain_ca = x509.load_pem_x509_certificates(broker_pem)
    return ca, leaf, chain_ca, broker_pem


def test_the_broker_certificate_is_issued_by_the_ca(issued):
    ca, leaf, chain_ca, _ = issued
    leaf.verify_directly_issued_by(ca)
    ca.verify_directly_issued_by(ca)
    assert chain_ca == ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_the_broker_certificate_fits_loopback_and_mutual_tls(issued):
    _, leaf, _, _ = issued
    cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == secure.BROKER_USER  # the principal the controller listener lets in
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
    days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
    assert secure.CERT_DAYS - 1 <= days <= secure.CERT_DAYS + 1


def test_the_keystore_holds_an_unencrypted_pkcs8_key_then_the_chain(issued):
    """Kafka's PEM keystore: a PKCS#8 key first, then the leaf, then the CA."""
    *_, broker_pem = issued
    labels = [block.split(b"-----")[0] for block in broker_pem.split(b"-----BEGIN ")[1:]]
    assert labels == [b"PRIVATE KEY", b"CERTIFICATE", b"CERTIFICATE"]


def test_prepare_writes_owner_only_secrets_and_is_stable(tmp_path):
    secure.cmd_prepare(tmp_path)
    sec = tmp_path / "secure"
    assert _mode(sec) == 0o700
    assert _mode(sec / "broker.pem") == 0o600 and _mode(sec / "users.json") == 0o600
    assert not list(sec.glob("*ca*key*")), "the CA key must never be written"
    first = {p.name: p.read_bytes() for p in sec.iterdir()}
    passwords = json.loads((sec / "users.json").read_text())
    assert set(passwords) == set(secure.USERS)
    assert len(set(passwords.values())) == len(secure.USERS)
    secure.cmd_prepare(tmp_path)  # a restart keeps certificates and passwords
    assert {p.name: p.read_bytes() for p in sec.iterdir()} == first


def test_certificates_are_renewed_before_they_expire(tmp_path):
    secure.cmd_prepare(tmp_path)
    sec = tmp_path / "secure"
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=secure.CERT_DAYS - secure.RENEW_BEFORE_DAYS + 1
    )
    assert secure.certificates_fresh(sec)
    assert not secure.certificates_fresh(sec, now=soon)


def test_a_dir_formatted_without_security_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("cluster.id=x\n")
    with pytest.raises(SystemExit, match="formatted without security"):
        secure.cmd_prepare(tmp_path)
    assert not (tmp_path / "secure").exists()  # plain `start` still accepts the DIR


def test_broker_properties_turn_on_tls_scram_and_deny_by_default(tmp_path):
    secure.cmd_prepare(tmp_path)
    props = dict(
        line.split("=", 1)
        for line in secure.broker_properties(tmp_path, 9093, 9094).splitlines()
        if line and not line.startswith("#")
    )
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9093,CONTROLLER://127.0.0.1:9094"
    assert props["listener.security.protocol.map"] == "CONTROLLER:SSL,SASL_SSL:SASL_SSL"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["ssl.enabled.protocols"] == "TLSv1.3"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin;User:veil-broker"
    assert "PLAINTEXT:" not in props["listener.security.protocol.map"]


def test_format_args_add_every_user_once(tmp_path):
    secure.cmd_prepare(tmp_path)
    args = secure.format_args(tmp_path).split()
    assert args[::2] == ["--add-scram"] * len(secure.USERS)
    assert [a.split("name=")[1].split(",")[0] for a in args[1::2]] == list(secure.USERS)


def test_client_files_name_every_user_but_the_broker(tmp_path):
    secure.cmd_prepare(tmp_path)
    secure.cmd_clients(tmp_path, 9093)
    info = json.loads((tmp_path / "client.json").read_text())
    assert info["bootstrap_servers"] == "127.0.0.1:9093"
    assert info["security_protocol"] == "SASL_SSL" and info["sasl_mechanism"] == "SCRAM-SHA-512"
    assert set(info["users"]) == set(secure.USERS) - {secure.BROKER_USER}
    assert _mode(tmp_path / "client.json") == 0o600
    env = (tmp_path / "secure" / "veil-analyst.env").read_text()
    assert "export VEIL_SASL_USERNAME=veil-analyst\n" in env
    assert _mode(tmp_path / "secure" / "veil-analyst.env") == 0o600
