"""The shipped broker settings: a slow or restarting gateway loses no readings.

Each test runs its own Mosquitto on a free loopback port: either with
`config/mosquitto.conf` included unchanged (beside a listener and a data
directory, as a deployment would add them) or with Mosquitto's defaults, to
show what the shipped settings change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import gmqtt
import orjson
import pytest
from gmqtt.mqtt.handler import MQTTConnectError
from gmqtt.storage import PersistentStorage

from tests.conftest import INFLUX_V1_URL, WAIT_S, wait_until
from tests.test_faults import PrivateService, free_port

logger = logging.getLogger(__name__)

SHIPPED_SETTINGS = Path(__file__).resolve().parents[1] / "config" / "mosquitto.conf"
# Lines a deployment adds itself; the shipped file must leave them out so that
# it can be included beside them (Mosquitto refuses a text option given twice).
DEPLOYMENT_OPTIONS = {
    "listener",
    "port",
    "bind_address",
    "persistence_location",
    "persistence_file",
    "log_dest",
    "pid_file",
    "user",
    "include_dir",
    "password_file",
    "acl_file",
    "psk_file",
    "plugin",
    "auth_plugin",
    "certfile",
    "keyfile",
}
BURST_READINGS = 20_000
RESTART_READINGS = 10_000
CUT_AT_READINGS = 1_000
RESTART_AT_READINGS = 7_000
BUFFERED_POINTS = 500
# Below the Receive Maximum the broker announces to MQTT 5 publishers, which is
# its max_inflight_messages (100): gmqtt refuses to have more unacknowledged.
BATCH_READINGS = 50
# A batch is acknowledged within milliseconds; one cut off by the restart is
# sent again after this (gmqtt does not always report the lost connection).
BATCH_TIMEOUT_S = 1.0
RETRY_DELAY_S = 0.2
DROPPED_LOG = "Outgoing messages are being dropped"
MS = 1_000_000
GMQTT_NEVER_RECONNECT = -2


@pytest.fixture
async def private_brokers(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., PrivateService]]:
    """Give a factory of Mosquittos on free ports, all stopped at the end."""
    made: list[PrivateService] = []

    def make(*, shipped: bool) -> PrivateService:
        directory, port = tmp_path / f"mosquitto-{len(made)}", free_port()
        config = _broker_config(directory, port, shipped=shipped)
        argv = ["mosquitto", "-c", str(config)]
        service = PrivateService("Mosquitto", argv, port, directory / "broker.log")
        made.append(service)
        return service

    yield make
    for service in made:
        await service.stop()


@pytest.fixture
async def influx_relay() -> AsyncIterator[InfluxRelay]:
    """Give an open relay to the local InfluxDB, closed at the end."""
    relay = InfluxRelay(int(INFLUX_V1_URL.rsplit(":", 1)[1]))
    await relay.restore()
    yield relay
    await relay.cut()


def test_shipped_broker_settings_leave_listeners_and_paths_to_the_deployment():
    """Test that config/mosquitto.conf sets only broker-wide limits and persistence."""
    settings = _directives(SHIPPED_SETTINGS)

    assert not DEPLOYMENT_OPTIONS & settings.keys()
    assert settings["persistence"] == "true"
    assert settings["queue_qos0_messages"] == "false"
    # An hour at 250 readings/s must fit: the sizing basis the file states.
    assert int(settings["max_queued_messages"]) >= 250 * 3600


async def test_broker_config_keeps_a_burst_for_a_paused_subscriber(
    private_brokers, topic_prefix, tmp_path
):
    """Test that the shipped settings keep all 20,000 readings; defaults drop some."""
    received = {}
    for shipped in (True, False):
        broker = private_brokers(shipped=shipped)
        await broker.start()
        received[shipped] = await _burst_to_paused_subscriber(
            broker.port, f"{topic_prefix}/{shipped}", tmp_path / f"sub-{shipped}.txt"
        )
        dropped_logged = DROPPED_LOG in broker.log_path.read_text(errors="replace")
        await broker.stop()
        assert dropped_logged is not shipped
    logger.info(
        "Burst of %d QoS 1 readings to a paused subscriber: shipped settings "
        "delivered %d, Mosquitto defaults %d (%d lost)",
        BURST_READINGS,
        len(received[True]),
        len(received[False]),
        BURST_READINGS - len(received[False]),
    )

    assert received[True] == set(range(BURST_READINGS))
    # Mosquitto's default queue is 1000 readings beyond those in flight.
    assert 0 < len(received[False]) < BURST_READINGS


async def test_gateway_stores_every_reading_when_the_broker_restarts_with_a_backlog(
    private_brokers,
    influx_relay,
    gateway_config,
    running_gateway,
    topic_prefix,
    influx_v1,
):
    """Test that each numbered reading is stored once across a broker restart."""
    broker = private_brokers(shipped=True)
    await broker.start()
    config = gateway_config(
        mqtt={"port": broker.port},
        influx={
            "url": f"http://127.0.0.1:{influx_relay.port}",
            "database": influx_v1.database,
            "max_buffered_points": BUFFERED_POINTS,
            # Full batches go out at once, not only every flush interval.
            "batch_size": BUFFERED_POINTS // 2,
        },
        # Without a spool the gateway stops taking readings while InfluxDB
        # is away, so the backlog builds up in the broker, as this test needs.
        spool={"enabled": False},
    )
    topic = f"{topic_prefix}/depok/counter/counter-01/telemetry"
    base_ms = int(time.time() * 1000) - 60_000
    progress = Progress()

    async with running_gateway(config) as gateway:
        publishing = asyncio.create_task(
            _publish_numbered(broker.port, topic, base_ms, progress)
        )
        # InfluxDB "stops": the gateway's buffer fills, it holds back its
        # acknowledgements, and the broker queues the readings that follow.
        assert await wait_until(lambda: progress.acked >= CUT_AT_READINGS)
        await influx_relay.cut()
        assert await wait_until(lambda: progress.acked >= RESTART_AT_READINGS)
        queued = progress.acked - gateway.stats.messages_received
        # SIGTERM: Mosquitto writes its database, then a new process loads it.
        await broker.stop()
        await broker.start()
        async with asyncio.timeout(WAIT_S * 2):
            await publishing
        await influx_relay.restore()
        rows = await influx_v1.wait_for_rows("counter", RESTART_READINGS)
        received = gateway.stats.messages_received
    logger.info(
        "Broker restarted with %d readings acknowledged to the publisher but not "
        "yet given to the gateway; %d batches published again; gateway received "
        "%d messages; %d rows stored",
        queued,
        progress.retries,
        received,
        len(rows),
    )

    # More than Mosquitto's default queue of 1000 waited in the broker.
    assert queued > 1000
    numbers = sorted(int(row["n"]) for row in rows)
    assert numbers == list(range(RESTART_READINGS))
    assert all(row["time"] == (base_ms + int(row["n"])) * MS for row in rows)


class InfluxRelay:
    """A TCP relay to InfluxDB that can be cut and restored, as if it stopped.

    The shared InfluxDB must keep serving other tests, so the outage is made
    between the gateway and it: refused connections, then service again.
    """

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        """Accept connections again and relay them to InfluxDB."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and break every open connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.transport.abort()
            return
        writers = {writer, upstream[1]}
        self._writers |= writers
        try:
            await asyncio.gather(
                _pipe(reader, upstream[1]),
                _pipe(upstream[0], writer),
                return_exceptions=True,
            )
        finally:
            self._writers -= writers
            for each in writers:
                each.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until end of stream, then close the other side too."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()


@dataclass
class Progress:
    """How far a publisher got: readings acknowledged, batches sent again."""

    acked: int = 0
    retries: int = 0


async def _burst_to_paused_subscriber(port: int, topic: str, out: Path) -> set[int]:
    """Publish a burst while a subscriber is paused; return the numbers it got."""
    with out.open("wb") as sink, _subscriber(port, f"{topic}/#", sink) as process:
        # A probe proves the subscription is in place before the pause.
        await asyncio.to_thread(_publish_lines, port, f"{topic}/probe", [b"probe"])
        assert await wait_until(lambda: _lines(out) >= 1)
        process.send_signal(signal.SIGSTOP)
        await asyncio.to_thread(_publish_lines, port, f"{topic}/burst", _burst())
        process.send_signal(signal.SIGCONT)
        await _wait_until_quiet(lambda: _lines(out))
    return {
        orjson.loads(line)["n"]
        for line in out.read_bytes().splitlines()
        if line.startswith(b"{")
    }


@contextlib.contextmanager
def _subscriber(
    port: int, topic_filter: str, sink: BinaryIO
) -> Iterator[subprocess.Popen[bytes]]:
    """Run mosquitto_sub at QoS 1 for the block, writing payloads to `sink`."""
    argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
    argv += ["-t", topic_filter, "-i", f"slow-{uuid.uuid4().hex[:8]}"]
    process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        # A stopped process would not act on SIGTERM until continued.
        process.send_signal(signal.SIGCONT)
        process.terminate()
        process.wait(timeout=WAIT_S)


def _publish_lines(port: int, topic: str, payloads: list[bytes]) -> None:
    """Publish one QoS 1 message per payload and return once all are acknowledged.

    mosquitto_pub -l exits at the acknowledgement whose packet id is that of
    its last message; ids repeat after 65,535 messages, so one run must stay
    below that or it stops early, still exiting with 0.
    """
    assert len(payloads) < 65_535
    argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1"]
    argv += ["-t", topic, "-l"]
    subprocess.run(argv, input=b"\n".join(payloads) + b"\n", check=True, timeout=60)


def _burst() -> list[bytes]:
    """Return numbered readings of ~200 bytes, like a city device's JSON."""
    pad = "x" * 160
    return [orjson.dumps({"n": n, "pad": pad}) for n in range(BURST_READINGS)]


async def _wait_until_quiet(count: Callable[[], int], quiet_s: float = 1.5) -> None:
    """Wait until `count` has stopped growing for `quiet_s`, or time runs out."""
    deadline = time.monotonic() + WAIT_S
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        await asyncio.sleep(0.1)
        if (now := count()) != last:
            last, since = now, time.monotonic()


def _lines(path: Path) -> int:
    """Return how many lines a file has so far."""
    return path.read_bytes().count(b"\n")


async def _publish_numbered(
    port: int, topic: str, base_ms: int, progress: Progress
) -> None:
    """Publish numbered readings in batches, sending a batch again until acked."""
    for start in range(0, RESTART_READINGS, BATCH_READINGS):
        numbers = range(start, min(start + BATCH_READINGS, RESTART_READINGS))
        payloads = [orjson.dumps({"ts": base_ms + n, "n": n}) for n in numbers]
        while not await _publish_batch(port, topic, payloads):
            progress.retries += 1
            await asyncio.sleep(RETRY_DELAY_S)
        progress.acked += len(payloads)


async def _publish_batch(port: int, topic: str, payloads: list[bytes]) -> bool:
    """Publish a batch at QoS 1 on a fresh connection; True once all are acked."""
    storage = PersistentStorage()
    client = gmqtt.Client(
        f"test-pub-{uuid.uuid4().hex[:8]}", persistent_storage=storage
    )
    # A batch that fails is sent again on a fresh client; gmqtt's own reconnect
    # would only leave a second copy behind (-2: never, as the gateway does).
    client.set_config({"reconnect_retries": GMQTT_NEVER_RECONNECT})
    lost = asyncio.Event()
    client.on_disconnect = lambda *_, **__: lost.set()
    try:
        async with asyncio.timeout(BATCH_TIMEOUT_S):
            await client.connect("127.0.0.1", port)
            for payload in payloads:
                client.publish(topic, payload, qos=1)
            # gmqtt keeps each QoS 1 message in `storage` until its PUBACK.
            await _first_of(storage.wait_empty(), lost.wait())
        return storage.is_empty and not lost.is_set()
    except (OSError, TimeoutError, MQTTConnectError):
        return False
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def _first_of(*waits: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of `waits` ends; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _broker_config(directory: Path, port: int, *, shipped: bool) -> Path:
    """Write a broker's main config: its listener, then the shipped settings."""
    (directory / "data").mkdir(parents=True)
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true"]
    if os.geteuid() == 0:
        # As root Mosquitto would switch to the 'mosquitto' user.
        lines.append("user root")
    if shipped:
        # Included unchanged, as a deployment's conf.d would hold it.
        (directory / "conf.d").mkdir()
        (directory / "conf.d" / "decor.conf").symlink_to(SHIPPED_SETTINGS)
        lines.append(f"persistence_location {directory / 'data'}/")
        lines.append(f"include_dir {directory / 'conf.d'}")
    path = directory / "mosquitto.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def _directives(path: Path) -> dict[str, str]:
    """Return the options a Mosquitto config file sets, by name."""
    settings = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition(" ")
            assert value, f"{path}: option without a value: {line!r}"
            settings[name] = value
    return settings
