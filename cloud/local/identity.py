"""local identity backend: the project's own certificate authority, trusted by the local Mosquitto broker.

Devices get client certificates whose Common Name is the thing name; Mosquitto's
`use_identity_as_username` turns that CN into the username the topic ACL checks, which plays the
role of IoT Core's `${iot:Connection.Thing.ThingName}` policy variable.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud.interfaces import (
    CERTIFICATE_STATES,
    BackendError,
    BackendUnavailable,
    BrokerEndpoint,
    DeviceCredentials,
    DeviceIdentity,
    Lake,
    TopicRuleDeployment,
    TopicRuleSpec,
)

log = logging.getLogger("cloud.local.identity")

CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
# The CRL is re-signed on every change; a broker that is not told (not reloaded) keeps the old one
# until then, so its nextUpdate must be far away, or OpenSSL would refuse every client once it passes.
CRL_VALIDITY = timedelta(days=3650)
# IoT Core's INACTIVE is reversible: RFC 5280's certificateHold. REVOKED is final: keyCompromise.
_CRL_REASONS = {"INACTIVE": x509.ReasonFlags.certificate_hold, "REVOKED": x509.ReasonFlags.key_compromise}
# Leaf names become MQTT usernames and topic levels: no wildcards, separators or spaces.
_LEAF_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_PEM = serialization.Encoding.PEM


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def write_private_file(path: Path, text: str) -> None:
    """Write text to path with mode 0600."""
    # Created 0600 from the start so the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """Return the SHA-256 hex digest of the certificate's DER encoding (what IoT Core calls its id)."""
    return cert.fingerprint(hashes.SHA256()).hex()


class LocalCertificateAuthority(DeviceIdentity):
    """A project CA in ca_dir (ca.pem, ca.key 0600), created on first use, that signs device and broker certificates.

    It also keeps the CRL (crl.pem, with crl.json as its source) that the broker checks: taking a
    certificate out of service re-signs the CRL, makes the running broker re-read it (SIGHUP) and
    drops the thing's live connections through the broker's dynamic-security plugin.
    """

    def __init__(self, ca_dir: str, broker_host: str, broker_port: int, broker_dir: str | None = None) -> None:
        self.ca_dir = Path(ca_dir)
        self.broker_host = broker_host
        self.broker_port = int(broker_port)
        # Where the broker trusting this CA keeps its config and pid file (dataplane.broker writes <state>/broker).
        self.broker_dir = Path(broker_dir) if broker_dir else self.ca_dir.parent / "broker"
        self._ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None

    @property
    def ca_cert_path(self) -> Path:
        """Return the path of the CA certificate (created if needed)."""
        self._load_or_create()
        return self.ca_dir / "ca.pem"

    @property
    def ca_pem(self) -> str:
        """Return the CA certificate as PEM text (created if needed)."""
        cert, _ = self._load_or_create()
        return cert.public_bytes(_PEM).decode()

    def broker_endpoint(self) -> BrokerEndpoint:
        return BrokerEndpoint(host=self.broker_host, port=self.broker_port)

    @property
    def crl_path(self) -> Path:
        """Return the path of the CRL (PEM) the broker checks client certificates against (created if needed)."""
        path = self.ca_dir / "crl.pem"
        if not path.exists():
            self._load_or_create()  # outside the lock: it takes the lock itself
            with _locked(self.ca_dir / ".lock"):
                self._write_crl(self._read_crl_state())
        return path

    def issue_certificate(self, thing_name: str) -> DeviceCredentials:
        """Issue another certificate with CN = thing_name; certificates issued before keep working."""
        return self.register_thing(thing_name)

    def set_certificate_state(self, thing_name: str, certificate_id: str, state: str) -> None:
        """Put the certificate (serial in hex) on or off the CRL, reload the broker, and drop thing_name's connections.

        INACTIVE lists it as certificateHold, REVOKED as keyCompromise, ACTIVE takes a hold off.
        Raises ValueError for an unknown state or for re-activating a revoked certificate.
        """
        if state not in CERTIFICATE_STATES:
            raise ValueError(f"unknown certificate state {state!r}; use one of {', '.join(CERTIFICATE_STATES)}")
        self._load_or_create()
        with _locked(self.ca_dir / ".lock"):
            entries = self._read_crl_state()
            current = entries.get(certificate_id, {}).get("state", "ACTIVE")
            if current == "REVOKED" and state != "REVOKED":
                raise ValueError(f"certificate {certificate_id} is revoked; a revoked certificate cannot come back")
            if state == "ACTIVE":
                entries.pop(certificate_id, None)
            else:
                entries[certificate_id] = {"state": state, "at": datetime.now(UTC).isoformat()}
            self._write_crl(entries)
        self._apply_on_broker(thing_name, drop=state != "ACTIVE")

    def apply_topic_rule(self, rule: TopicRuleSpec, lake: Lake) -> TopicRuleDeployment:
        """Check that the local ingest can run rule; it needs no provisioning: the ingest is the rule.

        `manage.py run_ingest --rule NAME` reads the rule from the registry and re-reads it when it
        changes (it writes its buffers, then resubscribes with the new rule, so nothing is lost).
        Raises BackendError when the WHERE clause does not compile.
        """
        from dataplane.ingest.where import WhereError, compile_where

        try:
            compile_where(rule.where)
        except WhereError as exc:
            raise BackendError(f"the ingest cannot apply rule {rule.name}: {exc}") from exc
        state = "applies" if rule.enabled else "stops applying (defaults from then on)"
        message = (
            f"The running ingest (manage.py run_ingest --rule {rule.name}) {state} this rule within a few seconds; "
            "an ingest started with another --rule ignores it, and --buffer-* options keep precedence over its hints."
        )
        return TopicRuleDeployment(f"local ingest -> {getattr(lake, 'url', lake)}", message, restart_needed=False)

    def ping(self) -> None:
        """Complete an MQTT CONNECT over mTLS with the broker's service identity; raise BackendUnavailable if not."""
        from dataplane.broker import BrokerControl  # dataplane.broker builds on this module

        try:
            BrokerControl.for_authority(self).ping()
        except OSError as exc:
            raise BackendUnavailable(f"no MQTT broker on {self.broker_host}:{self.broker_port}: {exc}") from exc

    def revoked_serials(self) -> dict[str, str]:
        """Return certificate id (serial, hex) -> state (INACTIVE or REVOKED) of every certificate on the CRL."""
        return {serial: entry["state"] for serial, entry in self._read_crl_state().items()}

    def _apply_on_broker(self, thing_name: str, drop: bool) -> None:
        # Imported here: dataplane.broker builds on this module.
        from dataplane.broker import BrokerControl

        control = BrokerControl.for_authority(self)
        control.reload()
        if drop:
            control.kick(thing_name)

    def _read_crl_state(self) -> dict[str, dict]:
        path = self.ca_dir / "crl.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_crl(self, entries: dict[str, dict]) -> None:
        """Write crl.json and a freshly signed crl.pem (atomically, so a broker never reads half a file)."""
        ca_cert, ca_key = self._load_or_create()
        now = datetime.now(UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - timedelta(minutes=5))
            .next_update(now + CRL_VALIDITY)
        )
        for serial, entry in sorted(entries.items()):
            revoked = (
                x509.RevokedCertificateBuilder()
                .serial_number(int(serial, 16))
                .revocation_date(datetime.fromisoformat(entry["at"]))
                .add_extension(x509.CRLReason(_CRL_REASONS[entry["state"]]), critical=False)
                .build()
            )
            builder = builder.add_revoked_certificate(revoked)
        crl = builder.sign(ca_key, hashes.SHA256())
        _replace(self.ca_dir / "crl.json", json.dumps(entries, indent=1, sort_keys=True).encode())
        _replace(self.ca_dir / "crl.pem", crl.public_bytes(_PEM))

    def register_thing(self, thing_name: str) -> DeviceCredentials:
        """Issue a one-year client certificate with CN = thing_name; raise ValueError for an unusable name."""
        key = _new_key()
        cert = self._sign(thing_name, key, LEAF_VALIDITY, self._client_extensions())
        return DeviceCredentials(
            certificate_id=format(cert.serial_number, "x"),
            certificate_pem=cert.public_bytes(_PEM).decode(),
            private_key_pem=_key_pem(key),
            ca_pem=self.ca_pem,
            fingerprint=certificate_fingerprint(cert),
            not_after=cert.not_valid_after_utc,
        )

    def issue_server_certificate(self, hosts: list[str]) -> tuple[str, str]:
        """Return (cert_pem, key_pem) for a TLS server answering on hosts, 127.0.0.1 and localhost."""
        names = list(dict.fromkeys([*hosts, "127.0.0.1", "localhost"]))
        key = _new_key()
        extensions = [
            (x509.SubjectAlternativeName([_general_name(name) for name in names]), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ]
        cert = self._sign("iotcast-broker", key, LEAF_VALIDITY, extensions)
        return cert.public_bytes(_PEM).decode(), _key_pem(key)

    def issue_service_credentials(self, name: str, out_dir: Path) -> Path:
        """Write cert.pem, key.pem (0600) and ca.pem for an internal MQTT client named name; return out_dir."""
        credentials = self.register_thing(name)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "cert.pem").write_text(credentials.certificate_pem)
        write_private_file(out_dir / "key.pem", credentials.private_key_pem)
        (out_dir / "ca.pem").write_text(credentials.ca_pem)
        return out_dir

    # --- internals -------------------------------------------------------------
    @staticmethod
    def _client_extensions() -> list[tuple[x509.ExtensionType, bool]]:
        return [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)]

    def _sign(
        self,
        common_name: str,
        key: ec.EllipticCurvePrivateKey,
        validity: timedelta,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        if not _LEAF_NAME.match(common_name):
            raise ValueError(f"{common_name!r} cannot name a certificate: use 1-128 letters, digits, '-', '_' or '.'")
        ca_cert, ca_key = self._load_or_create()
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(ca_key, hashes.SHA256())

    def _load_or_create(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if self._ca is None:
            self.ca_dir.mkdir(parents=True, exist_ok=True)
            # The web server, workers and commands may all start at once: only one may create the CA.
            with _locked(self.ca_dir / ".lock"):
                if not (self.ca_dir / "ca.pem").exists():
                    self._create_ca()
                self._ca = self._read_ca()
        return self._ca

    def _read_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate((self.ca_dir / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((self.ca_dir / "ca.key").read_bytes(), password=None)
        return cert, key

    def _create_ca(self) -> None:
        key = _new_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "IoTCast"),
                x509.NameAttribute(NameOID.COMMON_NAME, "IoTCast local device CA"),
            ]
        )
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        # Key first: a ca.pem without its key would look like a finished CA to the next process.
        write_private_file(self.ca_dir / "ca.key", _key_pem(key))
        (self.ca_dir / "ca.pem").write_bytes(cert.public_bytes(_PEM))


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
