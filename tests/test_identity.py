"""The local certificate authority: CA on first use, device, server and service certificates."""

import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.interfaces import BrokerEndpoint
from cloud.local.identity import LocalCertificateAuthority


@pytest.fixture
def authority(tmp_path):
    return LocalCertificateAuthority(str(tmp_path / "ca"), "broker.example", 8883)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_is_created_on_first_use_with_a_private_key_and_reused(authority, tmp_path):
    assert not (tmp_path / "ca").exists()
    ca = x509.load_pem_x509_certificate(authority.ca_pem.encode())
    assert _mode(tmp_path / "ca" / "ca.key") == 0o600
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_valid_after_utc - datetime.now(UTC) > timedelta(days=3640)
    again = LocalCertificateAuthority(str(tmp_path / "ca"), "broker.example", 8883)
    assert again.ca_pem == authority.ca_pem


def test_register_thing_issues_a_client_certificate_named_after_the_thing(authority):
    credentials = authority.register_thing("sensor-1")
    cert = x509.load_pem_x509_certificate(credentials.certificate_pem.encode())
    ca = x509.load_pem_x509_certificate(credentials.ca_pem.encode())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sensor-1"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert credentials.certificate_id == format(cert.serial_number, "x")
    assert credentials.fingerprint == cert.fingerprint(hashes.SHA256()).hex()
    assert len(credentials.fingerprint) == 64
    assert credentials.not_after == cert.not_valid_after_utc
    assert timedelta(days=364) < credentials.not_after - datetime.now(UTC) <= timedelta(days=366)
    key = serialization.load_pem_private_key(credentials.private_key_pem.encode(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_each_registration_gets_its_own_certificate(authority):
    first, second = authority.register_thing("a"), authority.register_thing("a")
    assert first.certificate_id != second.certificate_id
    assert first.private_key_pem != second.private_key_pem


@pytest.mark.parametrize("name", ["", "a/b", "a+b", "a#", "with space", "x" * 129])
def test_names_unusable_as_mqtt_usernames_are_refused(authority, name):
    with pytest.raises(ValueError, match="cannot name a certificate"):
        authority.register_thing(name)


def test_server_certificate_covers_loopback_and_the_given_hosts(authority):
    cert_pem, key_pem = authority.issue_server_certificate(["broker.example", "10.0.0.5"])
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"broker.example", "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.0.0.5"}
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert "PRIVATE KEY" in key_pem


def test_service_credentials_are_written_with_a_private_key_file(authority, tmp_path):
    out = authority.issue_service_credentials("iotcast-ingest", tmp_path / "ingest")
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "iotcast-ingest"
    assert (out / "ca.pem").read_text() == authority.ca_pem
    assert _mode(out / "key.pem") == 0o600


def test_broker_endpoint_comes_from_the_options(authority):
    assert authority.broker_endpoint() == BrokerEndpoint(host="broker.example", port=8883)


def test_settings_resolve_the_identity_backend_to_the_local_ca():
    from cloud.backends import get_backend

    backend = get_backend("identity")
    assert isinstance(backend, LocalCertificateAuthority)
    assert backend.broker_endpoint().port > 0
