"""The local broker: Mosquitto with mutual TLS, per-device topic ACL and the ingest user's shared subscription."""

import json
import stat
import threading
import time

import pytest
from cryptography import x509

from cloud.local.identity import LocalCertificateAuthority
from dataplane.broker import (
    INGEST_SHARED_SUBSCRIPTION,
    BrokerControl,
    BrokerError,
    BrokerHandle,
    start_broker,
    write_broker_config,
)
from dataplane.ports import free_port, port_open
from device_agent.kit import write_kit
from tests.fixtures.broker import Subscriber


def _publish(mqtt_broker, kit, topic: str, payloads: list[bytes]) -> None:
    client = mqtt_broker.client(kit, kit.name)
    assert mqtt_broker.connect(client)
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_config_enforces_mutual_tls_and_a_per_device_acl(tmp_path):
    authority = LocalCertificateAuthority(str(tmp_path / "ca"), "127.0.0.1", 18883)
    config = write_broker_config(tmp_path, 18883, authority)
    text = config.read_text()
    for line in ("require_certificate true", "use_identity_as_username true", "allow_anonymous false"):
        assert line in text
    assert "listener 18883 127.0.0.1" in text
    assert "max_inflight_messages 0" in text
    acl = (config.parent / "acl").read_text()
    assert "pattern write dt/iotcast/%u/#" in acl
    assert "user iotcast-ingest\ntopic read dt/iotcast/#" in acl
    assert stat.S_IMODE((config.parent / "server.key").stat().st_mode) == 0o600


def test_a_device_publishes_on_its_own_topic_and_the_ingest_user_receives_it(mqtt_broker):
    subscriber = mqtt_broker.subscriber(client_id="ingest-own-topic")
    try:
        kit = mqtt_broker.device_kit("own-topic")
        _publish(mqtt_broker, kit, "dt/iotcast/own-topic/telemetry", [b'{"ozone": 1}'])
        assert subscriber.wait_for(1) == [("dt/iotcast/own-topic/telemetry", b'{"ozone": 1}')]
    finally:
        subscriber.stop()


def test_a_device_cannot_publish_on_another_devices_topic(mqtt_broker):
    subscriber = mqtt_broker.subscriber("dt/iotcast/#", client_id="ingest-spoof")
    try:
        kit = mqtt_broker.device_kit("spoofer")
        # Mosquitto drops the forbidden publish silently; the allowed one after it, on the same connection,
        # proves delivery had time to happen.
        _publish(mqtt_broker, kit, "dt/iotcast/victim/telemetry", [b"forged"])
        _publish(mqtt_broker, kit, "dt/iotcast/spoofer/telemetry", [b"genuine"])
        received = subscriber.wait_for(1)
        assert received == [("dt/iotcast/spoofer/telemetry", b"genuine")]
    finally:
        subscriber.stop()


def test_a_device_certificate_from_another_ca_is_refused(mqtt_broker, tmp_path):
    stranger = LocalCertificateAuthority(str(tmp_path / "other-ca"), mqtt_broker.host, mqtt_broker.port)
    credentials = stranger.register_thing("intruder")
    kit = write_kit(
        tmp_path / "intruder",
        thing_name="intruder",
        host=mqtt_broker.host,
        port=mqtt_broker.port,
        certificate_pem=credentials.certificate_pem,
        private_key_pem=credentials.private_key_pem,
        ca_pem=mqtt_broker.authority.ca_pem,  # it trusts the broker; the broker must not trust it
    )
    assert not mqtt_broker.connect(mqtt_broker.client(kit, "intruder"), timeout=2)
    # The same broker accepts a device with a certificate from its own CA.
    genuine = mqtt_broker.client(mqtt_broker.device_kit("genuine"), "genuine")
    assert mqtt_broker.connect(genuine)
    genuine.disconnect()
    genuine.loop_stop()


def test_the_shared_subscription_splits_telemetry_between_ingest_clients(mqtt_broker):
    first = mqtt_broker.subscriber(INGEST_SHARED_SUBSCRIPTION, client_id="ingest-a")
    second = mqtt_broker.subscriber(INGEST_SHARED_SUBSCRIPTION, client_id="ingest-b")
    try:
        kit = mqtt_broker.device_kit("shared")
        payloads = [json.dumps({"n": n}).encode() for n in range(40)]
        _publish(mqtt_broker, kit, "dt/iotcast/shared/telemetry", payloads)
        for _ in range(50):
            if len(first.messages) + len(second.messages) >= 40:
                break
            first.wait_for(len(first.messages) + 1, timeout=0.1)
        received = sorted(payload for _, payload in first.messages + second.messages)
        assert received == sorted(payloads)  # each message once, to one of the group
        assert first.messages and second.messages
    finally:
        first.stop()
        second.stop()


def test_a_device_cannot_read_other_devices_telemetry(mqtt_broker):
    eavesdropper = mqtt_broker.subscriber("dt/iotcast/#", client_id="eavesdropper", user="eavesdropper")
    try:
        _publish(mqtt_broker, mqtt_broker.device_kit("talker"), "dt/iotcast/talker/telemetry", [b"private"])
        assert eavesdropper.wait_for(1, timeout=1) == []
    finally:
        eavesdropper.stop()


def test_the_ingest_user_may_hold_many_unacknowledged_messages(mqtt_broker):
    # The ingest service acks only once its buffer is durable; Mosquitto's default would stall at 20 in flight.
    client = mqtt_broker.client(mqtt_broker.service_credentials("iotcast-ingest"), "ingest-slow")
    client.manual_ack_set(True)
    subscriber = Subscriber(client)
    assert mqtt_broker.connect(client)
    try:
        client.subscribe(INGEST_SHARED_SUBSCRIPTION, qos=1)
        subscriber.wait_for(1, timeout=0.5)  # let the SUBACK arrive
        payloads = [str(n).encode() for n in range(300)]
        _publish(mqtt_broker, mqtt_broker.device_kit("burst"), "dt/iotcast/burst/telemetry", payloads)
        assert len(subscriber.wait_for(300, timeout=10)) == 300
    finally:
        subscriber.stop()


def test_start_broker_refuses_a_port_in_use(mqtt_broker, tmp_path):
    with pytest.raises(BrokerError, match="already in use"):
        BrokerHandle.start(tmp_path, mqtt_broker.port, mqtt_broker.authority)


def test_start_broker_reports_mosquittos_output_when_it_dies(tmp_path):
    config = tmp_path / "broken.conf"
    config.write_text("no_such_option true\n")
    with pytest.raises(BrokerError, match="no_such_option"):
        start_broker(config, free_port(), timeout=5)


def test_broker_handle_stops_mosquitto(tmp_path):
    port = free_port()
    authority = LocalCertificateAuthority(str(tmp_path / "ca"), "127.0.0.1", port)
    with BrokerHandle.start(tmp_path, port, authority) as handle:
        assert handle.process.poll() is None
    assert handle.process.poll() is not None
    assert not port_open(port)


def test_config_keeps_root_only_when_started_as_root(tmp_path, monkeypatch):
    # As root Mosquitto would drop to user mosquitto, who cannot read our 0600 key in a private temp dir.
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert "user root" in write_broker_config(tmp_path, 18883, _authority(tmp_path)).read_text()
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert "user root" not in write_broker_config(tmp_path, 18883, _authority(tmp_path)).read_text()


def _authority(tmp_path) -> LocalCertificateAuthority:
    return LocalCertificateAuthority(str(tmp_path / "ca"), "127.0.0.1", 18883)


# --- revocation on the running broker ---------------------------------------------------
class _Watched:
    """A connected device client whose disconnection is observable."""

    def __init__(self, mqtt_broker, kit, client_id: str) -> None:
        self.client = mqtt_broker.client(kit, client_id)
        self.dropped = threading.Event()
        self.connected = mqtt_broker.connect(self.client, timeout=3)
        self.client.on_disconnect = lambda *args: self.dropped.set()
        # paho would reconnect on its own; a dropped client must stay dropped to be observed.
        self.client.reconnect_delay_set(60, 60)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_revoking_a_certificate_drops_the_live_connection_and_refuses_the_next(mqtt_broker):
    kit = mqtt_broker.device_kit("revokee")
    live = _Watched(mqtt_broker, kit, "revokee")
    try:
        assert live.connected
        started = time.monotonic()
        mqtt_broker.authority.set_certificate_state("revokee", mqtt_broker.certificate_id(kit), "REVOKED")
        assert live.dropped.wait(5), "the revoked device's live connection was not dropped"
        assert time.monotonic() - started < 5
        assert not mqtt_broker.connect(mqtt_broker.client(kit, "revokee"), timeout=2)
    finally:
        live.stop()
    # Another device of the same CA is unaffected.
    assert mqtt_broker.connect(mqtt_broker.client(mqtt_broker.device_kit("bystander"), "bystander"))


def test_an_inactive_certificate_is_refused_until_activated_again(mqtt_broker):
    kit = mqtt_broker.device_kit("on-hold")
    certificate_id = mqtt_broker.certificate_id(kit)
    authority = mqtt_broker.authority
    authority.set_certificate_state("on-hold", certificate_id, "INACTIVE")
    assert not mqtt_broker.connect(mqtt_broker.client(kit, "on-hold"), timeout=2)
    authority.set_certificate_state("on-hold", certificate_id, "ACTIVE")
    # The broker re-read the CRL: the hold is gone, not merely added to an older list.
    client = mqtt_broker.client(kit, "on-hold")
    assert mqtt_broker.connect(client, timeout=3)
    client.disconnect()
    client.loop_stop()
    authority.set_certificate_state("on-hold", certificate_id, "REVOKED")
    with pytest.raises(ValueError, match="cannot come back"):
        authority.set_certificate_state("on-hold", certificate_id, "ACTIVE")


def test_rotation_keeps_the_new_certificate_working_after_the_old_is_revoked(mqtt_broker):
    old = mqtt_broker.device_kit("rotator")
    new = mqtt_broker.device_kit("rotator")  # a second certificate for the same thing
    assert mqtt_broker.connect(mqtt_broker.client(new, "rotator-new"))
    mqtt_broker.authority.set_certificate_state("rotator", mqtt_broker.certificate_id(old), "REVOKED")
    assert not mqtt_broker.connect(mqtt_broker.client(old, "rotator-old"), timeout=2)
    client = mqtt_broker.client(new, "rotator-new-2")
    assert mqtt_broker.connect(client)
    client.disconnect()
    client.loop_stop()


def test_broker_control_without_a_running_broker_does_nothing(tmp_path):
    authority = _authority(tmp_path)
    control = BrokerControl.for_authority(authority)
    assert control.reload() is False
    assert control.kick("nobody") is False
    # The CRL still changes: a broker started later reads it.
    credentials = authority.register_thing("offline")
    authority.set_certificate_state("offline", credentials.certificate_id, "REVOKED")
    assert authority.revoked_serials() == {credentials.certificate_id: "REVOKED"}
    crl = x509.load_pem_x509_crl(authority.crl_path.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(credentials.certificate_id, 16)) is not None


def test_config_checks_the_cas_crl_and_lets_only_the_admin_use_the_control_topic(tmp_path):
    authority = _authority(tmp_path)
    text = write_broker_config(tmp_path, 18883, authority).read_text()
    assert f"crlfile {authority.crl_path}" in text
    assert "pid_file " in text
    acl = (tmp_path / "broker" / "acl").read_text()
    assert "user iotcast-admin\ntopic readwrite $CONTROL/dynamic-security/v1/#" in acl
