"""The MQTT source against real, private Mosquitto brokers.

Each test starts its own Mosquitto on a free loopback port, configured for the
case at hand (protocol, password file, ACL, TLS), and always stops it. Nothing
of gmqtt is mocked: readings make the whole trip to InfluxDB 1.x.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import gmqtt
import pytest

from gateway.app import Gateway
from gateway.config import GatewayConfig
from tests.conftest import WAIT_S, wait_until
from tests.test_faults import PrivateService, free_port, reading

MQTT_LOG = "gateway.sources.mqtt"
MS = 1_000_000
USER = "gateway"
# Debian's mosquitto package ships it here.
DYNAMIC_SECURITY_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
# The measurement the default subscription names for river gauges.
MEASUREMENT = "river_gauge"


class PrivateMosquitto(PrivateService):
    """A Mosquitto owned by one test, which can be told to reread its files."""

    def reload(self) -> None:
        """Send SIGHUP: Mosquitto rereads its password and ACL files."""
        assert self._process is not None, "Mosquitto is not running"
        self._process.send_signal(signal.SIGHUP)

    def log(self) -> str:
        """Return what the broker has logged so far."""
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True)
class Certificates:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Callable[..., PrivateMosquitto]]:
    """Give a factory of Mosquittos on free ports, each stopped at the end.

    Arguments are extra lines for the listener (after `listener PORT 127.0.0.1`).
    """
    started: list[PrivateMosquitto] = []

    def make(*lines: str) -> PrivateMosquitto:
        port = free_port()
        name = f"mosquitto-{len(started)}"
        conf = tmp_path / f"{name}.conf"
        head = ["persistence false", "log_dest stderr", "log_type all"]
        if os.geteuid() == 0:
            # As root Mosquitto would switch to the 'mosquitto' user.
            head.append("user root")
        conf.write_text("\n".join([*head, f"listener {port} 127.0.0.1", *lines]) + "\n")
        service = PrivateMosquitto(
            "Mosquitto", ["mosquitto", "-c", str(conf)], port, tmp_path / f"{name}.log"
        )
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Give a CA and certificates made with openssl for this module's tests."""
    folder = tmp_path_factory.mktemp("pki")
    certs = Certificates(
        ca=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
    )
    ca_key = folder / "ca.key"
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        certs.ca,
        "-days",
        "2",
        "-subj",
        "/CN=DeCOR test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    _issue(
        folder,
        certs.ca,
        ca_key,
        certs.server_cert,
        certs.server_key,
        "127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    _issue(
        folder,
        certs.ca,
        ca_key,
        certs.client_cert,
        certs.client_key,
        "decor-gateway",
        "extendedKeyUsage=clientAuth\n",
    )
    return certs


def _issue(
    folder: Path,
    ca: Path,
    ca_key: Path,
    cert: Path,
    key: Path,
    name: str,
    extensions: str,
) -> None:
    csr = folder / f"{cert.stem}.csr"
    ext = folder / f"{cert.stem}.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + extensions
    )
    _openssl(
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        csr,
        "-subj",
        f"/CN={name}",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
    )


def _openssl(*args: str | Path) -> None:
    subprocess.run(
        ["openssl", *map(str, args)], check=True, capture_output=True, timeout=30
    )


def tls_listener(certs: Certificates) -> list[str]:
    """Return the Mosquitto lines that make the listener speak TLS."""
    return [
        f"cafile {certs.ca}",
        f"certfile {certs.server_cert}",
        f"keyfile {certs.server_key}",
    ]


def password_file(path: Path, user: str, password: str) -> Path:
    """Write a Mosquitto password file holding one user, and return its path."""
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(path), user, password],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return path


@contextlib.asynccontextmanager
async def mqtt_client(
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[gmqtt.Client]:
    """Give a real MQTT client connected to the private broker on `port`."""
    client = gmqtt.Client(f"test-pub-{uuid.uuid4().hex[:8]}")
    if username:
        client.set_auth_credentials(username, password)
    await client.connect("127.0.0.1", port, ssl=tls or False)
    try:
        yield client
    finally:
        # Let QoS 1 publishes reach the broker before disconnecting.
        await asyncio.sleep(0.2)
        await client.disconnect()


@contextlib.asynccontextmanager
async def gateway_running(config: GatewayConfig) -> AsyncIterator[Gateway]:
    """Run a gateway for the block without waiting for the broker to answer."""
    gateway = Gateway(config)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop), name="test.gateway")
    try:
        yield gateway
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=WAIT_S + 10)


async def subscribed(gateway: Gateway) -> None:
    """Wait until the broker has answered the gateway's subscription."""
    await asyncio.wait_for(gateway.subscriber.subscribed.wait(), WAIT_S)


def records(
    caplog: pytest.LogCaptureFixture,
    level: int,
    pattern: str = "",
    logger: str | None = None,
) -> list[str]:
    """Return the messages logged at exactly `level` that match `pattern`."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == level
        and re.search(pattern, record.getMessage())
        and (logger is None or record.name == logger)
    ]


def warnings_and_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return every warning or worse from any logger, gmqtt's included."""
    return [
        f"{record.name}: {record.getMessage()}"
        for record in caplog.records
        if record.levelno >= logging.WARNING
    ]


def log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every logger at DEBUG, also those the CLI quietens."""
    caplog.set_level(logging.DEBUG)
    for name in ("gateway", "gateway.sources.gmqtt", "gmqtt", "httpx"):
        caplog.set_level(logging.DEBUG, logger=name)


def device_topic(topic_prefix: str, device_id: str) -> str:
    """Return the telemetry topic of a river gauge under this test's prefix."""
    return f"{topic_prefix}/bpbd/{MEASUREMENT}/{device_id}/telemetry"


def connected_as(broker: PrivateMosquitto, client_id: str) -> list[str]:
    """Return Mosquitto's "(pN, cN, kN)" notes for each connect of `client_id`."""
    return re.findall(rf" as {re.escape(client_id)} \((p\d, c\d), k\d+", broker.log())


@pytest.mark.parametrize(("protocol", "seen_by_broker"), [("5", "p5"), ("3.1.1", "p2")])
async def test_subscriber_stores_a_reading_with_each_protocol_version(
    gateway_config, topic_prefix, influx_v1, mosquitto, protocol, seen_by_broker
):
    """Test that a gateway speaking MQTT 5 or 3.1.1 stores a published reading."""
    broker = mosquitto("allow_anonymous true")
    await broker.start()
    config = gateway_config(
        mqtt={"port": broker.port, "protocol": protocol},
        influx={"database": influx_v1.database},
    )
    ts_ms = int(time.time() * 1000) - 5_000

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port) as client:
            topic = device_topic(topic_prefix, "rg-proto-01")
            client.publish(topic, reading(ts_ms, water_level_cm=87.5), qos=1)
            rows = await influx_v1.wait_for_rows(MEASUREMENT, 1)

    assert [(row["time"], row["device_id"], row["water_level_cm"]) for row in rows] == [
        (ts_ms * MS, "rg-proto-01", 87.5)
    ]
    # The broker saw the version asked for: gmqtt did not quietly downgrade.
    # The default keeps the session (clean start off).
    assert connected_as(broker, config.mqtt.client_id) == [f"{seen_by_broker}, c0"]


async def test_subscriber_stores_readings_with_the_right_credentials(
    gateway_config, topic_prefix, influx_v1, mosquitto, tmp_path
):
    """Test that a broker with a password file accepts the configured credentials."""
    secret = f"pw-{uuid.uuid4().hex}"
    passwords = password_file(tmp_path / "passwords", USER, secret)
    broker = mosquitto("allow_anonymous false", f"password_file {passwords}")
    await broker.start()
    config = gateway_config(
        mqtt={"port": broker.port, "username": USER, "password": secret},
        influx={"database": influx_v1.database},
    )
    ts_ms = int(time.time() * 1000) - 5_000

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port, username=USER, password=secret) as client:
            topic = device_topic(topic_prefix, "rg-auth-01")
            client.publish(topic, reading(ts_ms, water_level_cm=90.0), qos=1)
            rows = await influx_v1.wait_for_rows(MEASUREMENT, 1)

    assert [row["water_level_cm"] for row in rows] == [90.0]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_subscriber_warns_once_about_a_wrong_password_and_connects_once_fixed(
    gateway_config, topic_prefix, influx_v1, mosquitto, tmp_path, caplog, protocol
):
    """Test that a refused password is one warning, never logged, then one info."""
    log_everything(caplog)
    right = f"right-{uuid.uuid4().hex}"
    wrong = f"wrong-{uuid.uuid4().hex}"
    passwords = password_file(tmp_path / "passwords", USER, right)
    broker = mosquitto("allow_anonymous false", f"password_file {passwords}")
    await broker.start()
    address = f"127.0.0.1:{broker.port}"
    config = gateway_config(
        mqtt={
            "port": broker.port,
            "protocol": protocol,
            "username": USER,
            "password": wrong,
        },
        influx={"database": influx_v1.database},
    )
    ts_ms = int(time.time() * 1000) - 5_000

    async with gateway_running(config) as gateway:
        assert await wait_until(
            lambda: len(records(caplog, logging.DEBUG, "^Still cannot", MQTT_LOG)) >= 3
        )
        refused = warnings_and_errors(caplog)

        # The operator fixes the password file; Mosquitto rereads it on SIGHUP.
        password_file(passwords, USER, wrong)
        broker.reload()
        await subscribed(gateway)
        async with mqtt_client(broker.port, username=USER, password=wrong) as client:
            topic = device_topic(topic_prefix, "rg-auth-02")
            client.publish(topic, reading(ts_ms, water_level_cm=91.0), qos=1)
            rows = await influx_v1.wait_for_rows(MEASUREMENT, 1)

    assert [row["water_level_cm"] for row in rows] == [91.0]
    reason = {
        "5": "code 135 (Connection Refused: Not authorized)",
        "3.1.1": "code 5 (Connection Refused: not authorised)",
    }[protocol]
    assert refused == [
        f"{MQTT_LOG}: Cannot connect to MQTT broker {address}: broker refused the "
        f"connection: {reason}; retrying with backoff"
    ]
    assert warnings_and_errors(caplog) == refused
    [back] = records(caplog, logging.INFO, "again after", MQTT_LOG)
    assert re.fullmatch(
        rf"Connected to MQTT broker {re.escape(address)} again after \d+\.\d s", back
    )
    for secret in (right, wrong):
        assert secret not in caplog.text
        assert not [r for r in caplog.records if secret in repr(r.__dict__)]


@pytest.mark.parametrize(("protocol", "code"), [("5", "0x87"), ("3.1.1", "0x80")])
async def test_subscriber_logs_a_subscription_the_broker_refuses(
    gateway_config,
    topic_prefix,
    influx_v1,
    mosquitto,
    tmp_path,
    caplog,
    protocol,
    code,
):
    """Test that a subscription refused in the SUBACK is an error naming the filter."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    # Mosquitto's acl_file never refuses a subscription (see the next test); its
    # dynamic security plugin does, for a subscribePattern that is not allowed.
    security = tmp_path / "dynamic-security.json"
    security.write_text(
        json.dumps(
            {
                "defaultACLAccess": {
                    "publishClientSend": True,
                    "publishClientReceive": True,
                    "subscribe": True,
                    "unsubscribe": True,
                },
                "clients": [],
                "groups": [
                    {"groupname": "anonymous", "roles": [{"rolename": "no-telemetry"}]}
                ],
                "roles": [
                    {
                        "rolename": "no-telemetry",
                        "acls": [
                            {
                                "acltype": "subscribePattern",
                                "topic": f"{topic_prefix}/#",
                                "allow": False,
                            }
                        ],
                    }
                ],
                "anonymousGroup": "anonymous",
            }
        )
    )
    broker = mosquitto(
        "allow_anonymous true",
        f"plugin {DYNAMIC_SECURITY_PLUGIN}",
        f"plugin_opt_config_file {security}",
    )
    await broker.start()
    config = gateway_config(
        mqtt={"port": broker.port, "protocol": protocol},
        influx={"database": influx_v1.database},
    )

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        [topic_filter] = [route.topic_filter for route in gateway.routes]

    address = f"127.0.0.1:{broker.port}"
    assert records(caplog, logging.ERROR, logger=MQTT_LOG) == [
        f"Broker {address} refused the subscription to {topic_filter!r} "
        f"(reason code {code})"
    ]
    assert not records(caplog, logging.INFO, "^Subscribed", MQTT_LOG)


async def test_subscriber_reads_nothing_from_a_topic_the_acl_file_forbids(
    gateway_config, topic_prefix, influx_v1, mosquitto, tmp_path
):
    """Test that a topic the acl_file keeps from us is not read, the rest is."""
    acl = tmp_path / "acl"
    # Lines before any "user" line apply to anonymous clients: the publisher
    # may write both topics, the gateway may read only one.
    acl.write_text(
        f"topic readwrite {topic_prefix}/allowed/#\n"
        f"topic write {topic_prefix}/forbidden/#\n"
    )
    broker = mosquitto("allow_anonymous true", f"acl_file {acl}")
    await broker.start()
    config = gateway_config(
        mqtt={"port": broker.port},
        influx={"database": influx_v1.database},
        subscriptions=[
            {
                "topic_template": f"{topic_prefix}/{name}/{{device_id}}/telemetry",
                "measurement": name,
            }
            for name in ("forbidden", "allowed")
        ],
    )
    ts_ms = int(time.time() * 1000) - 5_000

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port) as client:
            # Delivered in order: once "allowed" is stored, "forbidden" would be.
            for name in ("forbidden", "allowed"):
                topic = f"{topic_prefix}/{name}/dev-01/telemetry"
                client.publish(topic, reading(ts_ms, level_cm=1.0), qos=1)
            rows = await influx_v1.wait_for_rows("allowed", 1)
            assert await wait_until(lambda: gateway.stats.points_written == 1)

    assert [row["level_cm"] for row in rows] == [1.0]
    assert influx_v1.rows("forbidden") == []
    # Mosquitto 2.0 grants the subscription and filters at delivery, so the
    # gateway cannot tell; an operator sees only that nothing arrives.
    assert gateway.stats.messages_received == 1


async def test_subscriber_stores_a_reading_over_tls_with_the_configured_ca(
    gateway_config, topic_prefix, influx_v1, mosquitto, certificates
):
    """Test that TLS with the broker's CA in ca_file connects and stores readings."""
    broker = mosquitto("allow_anonymous true", *tls_listener(certificates))
    await broker.start()
    config = gateway_config(
        mqtt={
            "port": broker.port,
            "tls": {"enabled": True, "ca_file": str(certificates.ca)},
        },
        influx={"database": influx_v1.database},
    )
    ts_ms = int(time.time() * 1000) - 5_000
    trusting = ssl.create_default_context(cafile=str(certificates.ca))

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port, tls=trusting) as client:
            topic = device_topic(topic_prefix, "rg-tls-01")
            client.publish(topic, reading(ts_ms, water_level_cm=92.0), qos=1)
            rows = await influx_v1.wait_for_rows(MEASUREMENT, 1)

    assert [row["water_level_cm"] for row in rows] == [92.0]


async def test_subscriber_warns_once_when_the_broker_certificate_is_not_trusted(
    gateway_config, mosquitto, certificates, caplog
):
    """Test that a broker certificate the system CAs do not know is one warning."""
    log_everything(caplog)
    broker = mosquitto("allow_anonymous true", *tls_listener(certificates))
    await broker.start()
    address = f"127.0.0.1:{broker.port}"
    config = gateway_config(mqtt={"port": broker.port, "tls": {"enabled": True}})

    async with gateway_running(config) as gateway:
        assert await wait_until(
            lambda: len(records(caplog, logging.DEBUG, "^Still cannot", MQTT_LOG)) >= 3
        )
        assert not gateway.subscriber.connected.is_set()

    [warning] = warnings_and_errors(caplog)
    # Mosquitto sends its CA along; OpenSSL before 3.0 writes "self signed".
    assert re.fullmatch(
        rf"{MQTT_LOG}: Cannot connect to MQTT broker {re.escape(address)}: TLS "
        "certificate verification failed: self[- ]signed certificate in certificate "
        "chain; retrying with backoff",
        warning,
    )


async def test_subscriber_connects_to_an_untrusted_broker_when_insecure(
    gateway_config, topic_prefix, influx_v1, mosquitto, certificates
):
    """Test that insecure = true connects over TLS without knowing the CA."""
    broker = mosquitto("allow_anonymous true", *tls_listener(certificates))
    await broker.start()
    config = gateway_config(
        mqtt={"port": broker.port, "tls": {"enabled": True, "insecure": True}},
        influx={"database": influx_v1.database},
    )
    ts_ms = int(time.time() * 1000) - 5_000
    trusting = ssl.create_default_context(cafile=str(certificates.ca))

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port, tls=trusting) as client:
            topic = device_topic(topic_prefix, "rg-tls-02")
            client.publish(topic, reading(ts_ms, water_level_cm=93.0), qos=1)
            rows = await influx_v1.wait_for_rows(MEASUREMENT, 1)

    assert [row["water_level_cm"] for row in rows] == [93.0]


async def test_subscriber_authenticates_with_a_client_certificate(
    gateway_config, topic_prefix, influx_v1, mosquitto, certificates
):
    """Test that cert_file and key_file satisfy a broker that requires them."""
    broker = mosquitto(
        "allow_anonymous true", *tls_listener(certificates), "require_certificate true"
    )
    await broker.start()
    config = gateway_config(
        mqtt={
            "port": broker.port,
            "tls": {
                "enabled": True,
                "ca_file": str(certificates.ca),
                "cert_file": str(certificates.client_cert),
                "key_file": str(certificates.client_key),
            },
        },
        influx={"database": influx_v1.database},
    )
    ts_ms = int(time.time() * 1000) - 5_000
    publisher_tls = ssl.create_default_context(cafile=str(certificates.ca))
    publisher_tls.load_cert_chain(
        str(certificates.client_cert), str(certificates.client_key)
    )

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        async with mqtt_client(broker.port, tls=publisher_tls) as client:
            topic = device_topic(topic_prefix, "rg-tls-03")
            client.publish(topic, reading(ts_ms, water_level_cm=94.0), qos=1)
            rows = await influx_v1.wait_for_rows(MEASUREMENT, 1)

    assert [row["water_level_cm"] for row in rows] == [94.0]


async def test_subscriber_warns_once_when_the_broker_wants_a_client_certificate(
    gateway_config, mosquitto, certificates, caplog
):
    """Test that a broker closing a TLS connection without a CONNACK is one warning."""
    caplog.set_level(logging.DEBUG, logger="gateway")
    broker = mosquitto(
        "allow_anonymous true", *tls_listener(certificates), "require_certificate true"
    )
    await broker.start()
    address = f"127.0.0.1:{broker.port}"
    config = gateway_config(
        mqtt={
            "port": broker.port,
            "tls": {"enabled": True, "ca_file": str(certificates.ca)},
        }
    )

    async with gateway_running(config) as gateway:
        # With TLS 1.3 the handshake completes before the broker checks for a
        # certificate; it then closes the connection instead of answering.
        assert await wait_until(
            lambda: len(records(caplog, logging.DEBUG, "^Still cannot", MQTT_LOG)) >= 2
        )
        assert not gateway.subscriber.connected.is_set()

    assert records(caplog, logging.WARNING, logger=MQTT_LOG) == [
        f"Cannot connect to MQTT broker {address}: the broker closed the connection "
        "before answering; retrying with backoff"
    ]


@pytest.mark.parametrize(("protocol", "seen_by_broker"), [("5", "p5"), ("3.1.1", "p2")])
async def test_subscriber_receives_readings_published_while_it_was_away(
    gateway_config, topic_prefix, influx_v1, mosquitto, protocol, seen_by_broker
):
    """Test that a persistent session keeps QoS 1 readings for a stopped gateway."""
    broker = mosquitto("allow_anonymous true")
    await broker.start()
    config = gateway_config(
        mqtt={
            "port": broker.port,
            "protocol": protocol,
            "clean_start": False,
            "session_expiry_s": 300,
        },
        influx={"database": influx_v1.database},
    )
    topic = device_topic(topic_prefix, "rg-away-01")
    base_ms = int(time.time() * 1000) - 60_000

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
    assert gateway.stats.messages_received == 0

    async with mqtt_client(broker.port) as client:
        for index in range(5):
            payload = reading(base_ms + index * 1000, water_level_cm=100.0 + index)
            client.publish(topic, payload, qos=1)

    async with gateway_running(config) as gateway:
        await subscribed(gateway)
        rows = await influx_v1.wait_for_rows(MEASUREMENT, 5)
        assert await wait_until(lambda: gateway.stats.messages_received == 5)

    assert [(row["time"], row["water_level_cm"]) for row in rows] == [
        ((base_ms + index * 1000) * MS, 100.0 + index) for index in range(5)
    ]
    assert connected_as(broker, config.mqtt.client_id) == [
        f"{seen_by_broker}, c0",
        f"{seen_by_broker}, c0",
    ]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_subscriber_leaves_unhandled_messages_for_the_broker_to_send_again(
    gateway_config, topic_prefix, mosquitto, protocol, caplog
):
    """Test that a message whose handler was cancelled at stop, or that came
    while paused, is not acknowledged: the broker sends it again to the next
    session, and nothing else twice; and that holding it back logs no error."""
    from gateway.sources.mqtt import MqttMessage, MqttSubscriber

    broker = mosquitto("allow_anonymous true")
    await broker.start()
    mqtt = gateway_config(
        mqtt={
            "port": broker.port,
            "protocol": protocol,
            "clean_start": False,
            "session_expiry_s": 300,
        }
    ).mqtt
    topic = f"{topic_prefix}/ack"
    first_seen: list[bytes] = []
    second_seen: list[bytes] = []
    never = asyncio.Event()

    async def hold_one(message: MqttMessage) -> None:
        first_seen.append(message.payload)
        if message.payload == b"hold":
            await never.wait()  # its points never settle

    async def record(message: MqttMessage) -> None:
        second_seen.append(message.payload)

    async def session(handler) -> AsyncIterator[MqttSubscriber]:
        subscriber = MqttSubscriber(mqtt, [(f"{topic_prefix}/#", 1)], handler)
        task = asyncio.create_task(subscriber.run())
        await asyncio.wait_for(subscriber.subscribed.wait(), WAIT_S)
        return subscriber, task

    async def end(subscriber: MqttSubscriber, task: asyncio.Task) -> None:
        await subscriber.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    subscriber, task = await session(hold_one)
    async with mqtt_client(broker.port) as client:
        for payload in (b"one", b"hold", b"two"):
            client.publish(topic, payload, qos=1)
        assert await wait_until(lambda: len(first_seen) == 3)
        subscriber.pause()
        client.publish(topic, b"while-paused", qos=1)
        await asyncio.sleep(0.3)
    assert await subscriber.finish_handlers(0.2) == 1
    await end(subscriber, task)
    assert subscriber.messages_left_unacknowledged == 2

    subscriber, task = await session(record)
    assert await wait_until(lambda: len(second_seen) >= 2)
    await asyncio.sleep(0.3)  # anything more would have come by now
    await end(subscriber, task)

    assert sorted(second_seen) == [b"hold", b"while-paused"]
    # gmqtt's own callback would raise on a cancelled or None-returning handler.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_gmqtt_still_hands_incoming_qos_messages_to_the_methods_we_replace():
    """Test that gmqtt's package handler still calls the two methods that
    _take_publishes replaces, with the arguments it expects, and QoS 0
    messages through on_message; if a gmqtt upgrade changed this, messages
    would go back to gmqtt's own acknowledgement (whatever the outcome)."""
    import inspect

    from gmqtt.mqtt.handler import MqttPackageHandler

    source = inspect.getsource(MqttPackageHandler._handle_publish_packet)
    for qos in (1, 2):
        assert (
            f"self._handle_qos_{qos}_publish_packet(mid, packet, print_topic, "
            "properties)" in source
        )
    assert " ".join(source.split()).count(
        "run_coroutine_or_function( self.on_message, print_topic, packet, qos, "
        "properties )"
    ) == 1


async def test_subscriber_holds_at_most_max_inflight_messages_in_hand(
    gateway_config, topic_prefix, tmp_path
):
    """Test that however many messages the broker sends past our Receive
    Maximum (Mosquitto 2.0.11 sends thousands more), no more than
    max_inflight handlers run at once: the socket is not read meanwhile."""
    from gateway.sources import mqtt as mqtt_module
    from gateway.sources.mqtt import MqttMessage, MqttSubscriber
    from tests.test_broker_config import _broker_config

    directory = tmp_path / "broker"
    port = free_port()
    broker = PrivateService(
        "Mosquitto",
        ["mosquitto", "-c", str(_broker_config(directory, port, shipped=True))],
        port,
        directory / "broker.log",
    )
    await broker.start()
    max_inflight = 100
    mqtt = gateway_config(mqtt={"port": port, "max_inflight": max_inflight}).mqtt
    running = peak = handled = 0
    release = asyncio.Event()

    async def slow_store(message: MqttMessage) -> None:
        nonlocal running, peak, handled
        running += 1
        peak = max(peak, running)
        await release.wait()  # stored in batches, as the writer does
        running -= 1
        handled += 1

    async def store_in_batches() -> None:
        while True:
            await asyncio.sleep(0.02)
            release.set()
            await asyncio.sleep(0)
            release.clear()

    subscriber = MqttSubscriber(mqtt, [(f"{topic_prefix}/#", 1)], slow_store)
    task = asyncio.create_task(subscriber.run())
    batches = asyncio.create_task(store_in_batches())
    try:
        await asyncio.wait_for(subscriber.subscribed.wait(), WAIT_S)
        burst = "\n".join(str(n) for n in range(5000)) + "\n"
        publisher = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-p", str(port), "-q", "1", "-t", f"{topic_prefix}/x",
            "-l", stdin=subprocess.PIPE,
        )
        await publisher.communicate(burst.encode())
        assert await wait_until(lambda: handled == 5000, timeout_s=WAIT_S * 3)
    finally:
        batches.cancel()
        await subscriber.stop()
        task.cancel()
        await asyncio.gather(task, batches, return_exceptions=True)
        await broker.stop()

    assert peak <= max_inflight + mqtt_module.PACKETS_PER_ROOM_CHECK
    assert subscriber.reading_held_back > 0
