"""Receive telemetry from the MQTT broker, reconnecting for as long as we run.

The rest of the gateway sees only `MqttSubscriber` and `MqttMessage`: the client
library (gmqtt, chosen by measurement, see bench/mqtt_clients.py) stays behind
this module so it can be swapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError
from gmqtt.mqtt.package import Package

from gateway.config import MqttConfig
from gateway.errors import describe_connection_failure

__all__ = ["MessageHandler", "MqttMessage", "MqttSubscriber", "topic_matches"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
# MQTT 5 maximum packet size = mqtt.max_payload_bytes plus this much room for
# what surrounds the payload (topic, packet id, properties). A payload a little
# over the limit may still arrive; the gateway then refuses it as too_large.
PACKET_OVERHEAD_BYTES = 64 * 1024
# The largest packet MQTT can carry: 268,435,455 bytes after a 5-byte header.
MAX_PACKET_BYTES = 268_435_460
READ_CHUNK_BYTES = 64 * 1024
# A chunk can hold thousands of small messages: the room for more is checked
# after this many, so max_inflight is overshot by fewer than this.
PACKETS_PER_ROOM_CHECK = 32
# The remaining length of an MQTT packet takes at most four bytes.
MAX_LENGTH_BYTES = 4
PUBACK_SUCCESS = 0
PUBACK_UNSPECIFIED_ERROR = 0x80
GMQTT_NEVER_RECONNECT = -2
# How gmqtt's messages about a refused CONNACK begin (see _GmqttLogger).
GMQTT_REFUSAL_PREFIXES = (
    "[MqttPackageHandler] CONNACK",
    "[MqttPackageHandler] not reconnecting after a permanent CONNACK",
)
LOST = "connection lost"
# How long connect() may take to raise a refusal once the connection is closed.
CONNACK_GRACE_S = 1.0
CLOSED_BEFORE_CONNACK = "the broker closed the connection before answering"


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """One message as it arrived: topic, raw payload, QoS and receive time."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    received_ns: int
    # MQTT 5 subscription identifiers of the subscriptions this copy was sent
    # for: the n-th topic filter has identifier n + 1. Empty for MQTT 3.1.1.
    subscription_ids: tuple[int, ...] = ()
    # MQTT 5 correlation data the sender attached (command replies); else None.
    correlation_data: bytes | None = None


class Settling(Protocol):
    """What a handler returns when a message's fate is known only later."""

    def then(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the message is settled (never, if it is not)."""


# Called for each message as it arrives. It returns None once the message is
# handled (acknowledge now), something Settling, or an awaitable: the message
# is acknowledged when that settles or completes, and never if it raises or
# is cancelled.
MessageHandler = Callable[[MqttMessage], "Settling | Awaitable[None] | None"]


class MqttSubscriber:
    """Keep one subscription session with the broker and hand each message on.

    `handler` is called for each message as it arrives (see MessageHandler);
    for QoS 1 and 2 the broker receives our acknowledgement only once what it
    returned has settled, so a message whose points are not stored yet holds
    the broker back instead of losing data. A message left unsettled (or whose
    handler was cancelled) stays unacknowledged: the broker sends it again
    after the next connect, if the session is kept. Only a message that needs
    to wait on something else gets a task of its own; the common case costs
    no task, and acknowledgements leave in one write per loop iteration.
    """

    def __init__(
        self,
        config: MqttConfig,
        topic_filters: Sequence[tuple[str, int]],
        handler: MessageHandler,
    ) -> None:
        self._config = config
        self._topic_filters = list(topic_filters)
        self._handler = handler
        self._client: gmqtt.Client | None = None
        self._lost = asyncio.Event()
        self._stopping = False
        self.connected = asyncio.Event()
        # Set once the broker has acknowledged our subscriptions.
        self.subscribed = asyncio.Event()
        self._pending_subacks: dict[int, str] = {}
        self.address = f"{config.host}:{config.port}"
        # Messages taken and not yet settled, and the tasks of those that
        # wait on something; while paused, new messages are left
        # unacknowledged for the broker to send again.
        self._in_hand = 0
        self._waiting_tasks: set[asyncio.Task[Any]] = set()
        self._handlers_done = asyncio.Event()
        self._handlers_done.set()
        # Acknowledgements to write, with the connection they belong to.
        self._acks: list[tuple[Any, bytes]] = []
        self._paused = False
        self.messages_left_unacknowledged = 0
        # Cleared while max_inflight handlers are running: the socket is not
        # read meanwhile, so TCP holds the broker back. A broker that keeps
        # to our Receive Maximum never sends that many; Mosquitto 2.0.11 was
        # measured sending 9,000 past a Receive Maximum of 1,000.
        self._room_for_messages = asyncio.Event()
        self._room_for_messages.set()
        self.reading_held_back = 0

    async def run(self) -> None:
        """Connect, subscribe and stay connected until cancelled."""
        delay_s = self._config.reconnect_min_s
        down_since: float | None = None
        last_reason = ""
        try:
            while True:
                try:
                    await self._connect_once()
                except (OSError, asyncio.TimeoutError, MQTTConnectError) as exc:
                    reason = _describe_failure(exc)
                    # One warning per outage, and one more if the reason changes;
                    # a lost connection has had its warning already.
                    if down_since is None or last_reason not in (reason, LOST):
                        logger.warning(
                            "Cannot connect to MQTT broker %s: %s; retrying with "
                            "backoff",
                            self.address,
                            reason,
                        )
                    else:
                        logger.debug(
                            "Still cannot connect to MQTT broker %s: %s",
                            self.address,
                            reason,
                        )
                    down_since = down_since or time.monotonic()
                    last_reason = reason
                    await self._sleep_backoff(delay_s)
                    delay_s = min(delay_s * 2, self._config.reconnect_max_s)
                    continue

                if down_since is not None:
                    logger.info(
                        "Connected to MQTT broker %s again after %.1f s",
                        self.address,
                        time.monotonic() - down_since,
                    )
                else:
                    logger.info("Connected to MQTT broker %s", self.address)
                delay_s = self._config.reconnect_min_s
                down_since = None
                last_reason = ""

                await self._lost.wait()
                self.connected.clear()
                self.subscribed.clear()
                down_since = time.monotonic()
                last_reason = LOST
                logger.warning(
                    "Lost connection to MQTT broker %s; reconnecting", self.address
                )
                await self._sleep_backoff(delay_s)
        finally:
            await self._close()

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        retain: bool = False,
        properties: Mapping[str, Any] | None = None,
    ) -> bool:
        """Publish a message if connected; return whether it was handed over.

        Args:
            properties: MQTT 5 publish properties by gmqtt's names
                (`response_topic`, `correlation_data`); ignored under 3.1.1.
        """
        client = self._client
        if client is None or not self.connected.is_set():
            logger.warning(
                "Not connected to MQTT broker %s; could not publish to %r",
                self.address,
                topic,
            )
            return False
        extra = dict(properties or {}) if self._config.protocol == "5" else {}
        client.publish(topic, payload, qos=qos, retain=retain, **extra)
        return True

    def pause(self) -> None:
        """Stop taking messages: those arriving from now on stay unacknowledged.

        The broker keeps them in the session and sends them again after the
        next connect.
        """
        self._paused = True

    async def finish_handlers(self, timeout_s: float) -> int:
        """Wait for the messages in hand to settle; after `timeout_s`, cancel
        those still waiting, leaving them unacknowledged. Return how many."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._handlers_done.wait()
        left = self._in_hand
        tasks = list(self._waiting_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.messages_left_unacknowledged += left
        return left

    async def stop(self) -> None:
        """Disconnect cleanly; `run` then ends when its task is cancelled."""
        self._stopping = True
        await self._close()

    async def _connect_once(self) -> None:
        await self._close()
        self._lost.clear()
        client = self._make_client()
        self._client = client
        try:
            await asyncio.wait_for(
                self._connect_unless_closed(client), timeout=CONNECT_TIMEOUT_S
            )
        except BaseException:
            _stop_library_reconnect(client)
            self._client = None
            raise
        # One SUBSCRIBE per filter, each with its own identifier (MQTT 5): a
        # message matching two overlapping filters arrives once per filter,
        # and the identifiers tell the gateway which copy to keep.
        self._pending_subacks = {}
        for index, (topic, qos) in enumerate(self._topic_filters):
            identifier = index + 1 if self._config.protocol == "5" else None
            mid = client.subscribe(
                gmqtt.Subscription(topic, qos=qos, subscription_identifier=identifier)
            )
            self._pending_subacks[mid] = topic
        self.connected.set()

    async def _connect_unless_closed(self, client: gmqtt.Client) -> None:
        # gmqtt's connect() waits for a CONNACK even after the broker has
        # closed the connection without one (a TLS listener that requires a
        # client certificate, a full broker), so stop waiting when it closes.
        connecting = asyncio.ensure_future(
            client.connect(
                self._config.host,
                self._config.port,
                ssl=self._ssl_context() or False,
                keepalive=self._config.keepalive_s,
                version=MQTTv50 if self._config.protocol == "5" else MQTTv311,
            )
        )
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({connecting, lost}, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                # A broker that refuses us closes the connection right after
                # its CONNACK: let connect() raise that refusal, which says why.
                await asyncio.wait({connecting}, timeout=CONNACK_GRACE_S)
            if not connecting.done():
                raise ConnectionResetError(CLOSED_BEFORE_CONNACK)
            connecting.result()
        finally:
            for task in (connecting, lost):
                task.cancel()
            await asyncio.gather(connecting, lost, return_exceptions=True)

    def _make_client(self) -> gmqtt.Client:
        properties: dict[str, Any] = {}
        if self._config.protocol == "5":
            properties["session_expiry_interval"] = self._config.session_expiry_s
            # How many unacknowledged QoS 1/2 messages the broker may have in
            # flight to us: it bounds the handlers waiting for their points
            # to be stored, and so the memory they hold.
            properties["receive_maximum"] = self._config.max_inflight
            # The broker then drops larger messages for us (MQTT 5, 3.1.2.11.4)
            # instead of making every device wait while one of them arrives.
            properties["maximum_packet_size"] = min(
                self._config.max_payload_bytes + PACKET_OVERHEAD_BYTES,
                MAX_PACKET_BYTES,
            )
        client = _LinearReadingClient(
            self._config.client_id,
            room_for_messages=self._room_for_messages,
            clean_session=self._config.clean_start,
            # Acknowledge only after our handler has taken the message.
            optimistic_acknowledgement=False,
            logger=_GmqttLogger(logging.getLogger("gateway.sources.gmqtt")),
            **properties,
        )
        if self._config.username:
            client.set_auth_credentials(self._config.username, self._config.password)
        _stop_library_reconnect(client)
        _take_publishes(client, self._take)
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        return client

    def _take(
        self,
        client: gmqtt.Client,
        mid: int,
        topic: str,
        payload: bytes,
        qos: int,
        props: Any,
    ) -> None:
        """Hand one message on, and acknowledge it once what the handler
        returned has settled (QoS 1/2)."""
        if self._paused:
            self.messages_left_unacknowledged += qos > 0
            return
        self._in_hand += 1
        self._handlers_done.clear()
        if (
            self._in_hand >= self._config.max_inflight
            and self._room_for_messages.is_set()
        ):
            self._room_for_messages.clear()
            self.reading_held_back += 1
        connection = client._connection  # noqa: SLF001 - acks go back on it only
        settled = functools.partial(self._settled, client, connection, mid, qos)
        message = MqttMessage(
            topic=topic,
            payload=payload,
            qos=qos,
            retain=bool(props.get("retain", 0)),
            received_ns=time.time_ns(),
            subscription_ids=tuple(props.get("subscription_identifier", ())),
            correlation_data=_first_bytes(props.get("correlation_data")),
        )
        try:
            outcome = self._handler(message)
        except Exception:
            # The handler keeps every message it cannot process itself, so
            # reaching here is a bug. The PUBACK carries an error code, which
            # ends the exchange too: the broker will not redeliver.
            logger.exception("Handling a message from %r failed", topic)
            settled(PUBACK_UNSPECIFIED_ERROR)
            return
        if outcome is None:
            settled()
        elif inspect.isawaitable(outcome):
            task = asyncio.ensure_future(outcome)
            self._waiting_tasks.add(task)
            task.add_done_callback(functools.partial(self._task_done, settled))
        else:
            outcome.then(settled)

    def _task_done(
        self, settled: Callable[..., None], task: asyncio.Future[None]
    ) -> None:
        self._waiting_tasks.discard(task)
        if task.cancelled():
            return  # left in hand: counted by finish_handlers
        if task.exception() is not None:
            logger.error("Handling a message failed", exc_info=task.exception())
            settled(PUBACK_UNSPECIFIED_ERROR)
            return
        settled()

    def _settled(
        self,
        client: gmqtt.Client,
        connection: Any,
        mid: int,
        qos: int,
        reason_code: int = PUBACK_SUCCESS,
    ) -> None:
        """A message is settled: queue its acknowledgement, free its place."""
        self._in_hand -= 1
        if not self._in_hand:
            self._handlers_done.set()
        # Resume at three quarters, so reading does not flap per message.
        if self._in_hand <= self._config.max_inflight * 3 // 4:
            self._room_for_messages.set()
        if not qos:
            return
        if client._connection is not connection or not client.is_connected:  # noqa: SLF001
            return  # the broker sends it again on the next connection
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._write_acks)
        self._acks.append(
            (connection, _ack_packet(mid, qos, reason_code, self._config.protocol))
        )

    def _write_acks(self) -> None:
        """Write the queued acknowledgements, one write per connection."""
        acks, self._acks = self._acks, []
        by_connection: dict[int, tuple[Any, list[bytes]]] = {}
        for connection, packet in acks:
            by_connection.setdefault(id(connection), (connection, []))[1].append(packet)
        for connection, packets in by_connection.values():
            protocol = connection._protocol  # noqa: SLF001
            if protocol is not None:
                protocol.write_data(b"".join(packets))

    def _on_disconnect(
        self, client: gmqtt.Client, packet: Any, exc: Any = None
    ) -> None:
        _stop_library_reconnect(client)
        if client is self._client and not self._stopping:
            self._lost.set()

    def _on_subscribe(
        self, client: gmqtt.Client, mid: int, granted_qos: Sequence[int], props: Any
    ) -> None:
        topic = self._pending_subacks.pop(mid, "?")
        for granted in granted_qos:
            if granted >= 0x80:
                logger.error(
                    "Broker %s refused the subscription to %r (reason code %#x)",
                    self.address,
                    topic,
                    granted,
                )
            else:
                logger.info("Subscribed to %r at QoS %d", topic, granted)
        if not self._pending_subacks:
            self.subscribed.set()

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self._config.tls
        if not tls.enabled:
            return None
        context = ssl.create_default_context(
            cafile=str(tls.ca_file) if tls.ca_file else None
        )
        if tls.cert_file:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file else None
            )
        if tls.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _sleep_backoff(self, delay_s: float) -> None:
        # Full jitter keeps a fleet of gateways from reconnecting in lockstep.
        await asyncio.sleep(random.uniform(delay_s / 2, delay_s))

    async def _close(self) -> None:
        client, self._client = self._client, None
        self.connected.clear()
        self.subscribed.clear()
        if client is None:
            return
        _stop_library_reconnect(client)
        if client.is_connected:
            try:
                await asyncio.wait_for(client.disconnect(), timeout=5)
            except (OSError, asyncio.TimeoutError) as exc:
                logger.debug("Disconnect from %s was not clean: %s", self.address, exc)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Tell whether a concrete topic matches an MQTT topic filter."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    # Topics starting with $ are not matched by leading wildcards (MQTT 4.7.2).
    if topic.startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def _take_publishes(client: gmqtt.Client, take: Callable[..., None]) -> None:
    """Route every incoming PUBLISH of `client` to `take`, which acknowledges
    a QoS 1/2 message itself once it is settled.

    gmqtt starts a task per message and, told not to acknowledge
    optimistically, acknowledges when the task ends, whatever the outcome.
    Its package handler has no setting for either, so its two methods for
    incoming QoS 1 and 2 messages are replaced on this client's instance, and
    QoS 0 messages reach `take` through a plain (not async) on_message;
    tests/sources/test_mqtt.py fails if gmqtt changes how they are called.
    """
    handler = client._package_handler  # noqa: SLF001

    def qos_1_or_2(
        mid: int, packet: bytes, topic: str, properties: dict[str, Any], qos: int
    ) -> None:
        take(client, mid, topic, packet, qos, properties)

    def qos_0(
        client_: gmqtt.Client, topic: str, payload: bytes, qos: int, props: Any
    ) -> None:
        take(client, 0, topic, payload, qos, props)

    handler._handle_qos_1_publish_packet = functools.partial(qos_1_or_2, qos=1)  # noqa: SLF001
    handler._handle_qos_2_publish_packet = functools.partial(qos_1_or_2, qos=2)  # noqa: SLF001
    client.on_message = qos_0


def _ack_packet(mid: int, qos: int, reason_code: int, protocol: str) -> bytes:
    """Return the PUBACK (QoS 1) or PUBREC (QoS 2) of a message.

    MQTT 5 leaves out a success reason code (3.4.2.1), MQTT 3.1.1 has none.
    """
    kind = 0x40 if qos == 1 else 0x50
    if reason_code == PUBACK_SUCCESS or protocol != "5":
        return bytes((kind, 2)) + mid.to_bytes(2, "big")
    return bytes((kind, 3)) + mid.to_bytes(2, "big") + bytes((reason_code,))


def _stop_library_reconnect(client: gmqtt.Client) -> None:
    # gmqtt reconnects by itself with a fixed delay; we reconnect with backoff
    # and jitter instead, on a fresh client. gmqtt has no documented switch for
    # this. Its retry check is `failed_connections <= reconnect_retries` unless
    # retries is -1 (unlimited), so -2 never allows one, also after a refused
    # CONNACK; and a reconnect already scheduled is skipped while it believes
    # one is in progress.
    client.set_config({"reconnect_retries": GMQTT_NEVER_RECONNECT})
    client._connection_state.reconnecting_now = True  # noqa: SLF001


class _MalformedPacket(Exception):
    """The broker sent a remaining length longer than MQTT allows."""


# gmqtt ships no type information, so its Client is Any to the type checker.
class _LinearReadingClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt's client, reading packets off the socket in linear time.

    gmqtt's own read loop appends each 64 KiB read to an immutable buffer,
    copying all of it every time: the time to read one message grows with the
    square of its size (measured on loopback: 20 MB 0.3 s, 50 MB 7.5 s,
    150 MB over 40 s). Messages from every device share the connection, in
    order, so all of them waited that long, and gmqtt, seeing no whole packet
    for two keepalive intervals, dropped the connection. This client swaps that
    loop for `_read_packets` (150 MB: under 1 s) as soon as the connection
    exists, before CONNECT is sent, so no byte is read twice or lost.

    Known limitation: under MQTT 3.1.1 a message larger than
    mqtt.max_payload_bytes is still read whole into memory, a few copies of its
    size at once, before the gateway refuses it; the broker's own
    message_size_limit bounds that (MQTT 5 lets the broker drop it instead).
    """

    def __init__(
        self, *args: Any, room_for_messages: asyncio.Event, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._room_for_messages = room_for_messages

    async def _create_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = await super()._create_connection(*args, **kwargs)
        protocol = connection._protocol  # noqa: SLF001
        original = protocol._read_loop_future  # noqa: SLF001
        if original is not None:
            original.cancel()
            # gmqtt cancels this future when the connection is lost.
            protocol._read_loop_future = asyncio.ensure_future(  # noqa: SLF001
                _read_packets(protocol, self._room_for_messages)
            )
        return connection


async def _read_packets(protocol: Any, room: asyncio.Event) -> None:
    """Read whole MQTT packets off the socket and hand them to gmqtt, in
    order, holding back while `room` is cleared."""
    await protocol._connected.wait()  # noqa: SLF001
    buffer = bytearray()
    handed = 0
    while protocol._connected.is_set():  # noqa: SLF001
        try:
            buffer += await protocol.read(READ_CHUNK_BYTES)
        except ConnectionResetError:
            # gmqtt's read() closes the transport when the broker has closed.
            return
        try:
            while (package := _take_package(buffer)) is not None:
                protocol._connection.put_package(package)  # noqa: SLF001
                handed += 1
                if handed % PACKETS_PER_ROOM_CHECK == 0:
                    # Let the handlers just started count themselves in.
                    await asyncio.sleep(0)
                    await _wait_for_room(protocol, room)
        except _MalformedPacket:
            logger.warning(
                "The MQTT broker sent a packet length longer than MQTT allows; "
                "closing the connection"
            )
            protocol._transport.close()  # noqa: SLF001
            return
        if protocol._transport.is_closing():  # noqa: SLF001
            return


async def _wait_for_room(protocol: Any, room: asyncio.Event) -> None:
    """Wait until handlers have room for more messages.

    Not reading is deliberate here, so gmqtt's check for a silent broker
    (nothing read for two keepalive intervals closes the connection) is told
    the connection is alive; the broker still gets our PINGREQs and PUBACKs.
    """
    while not room.is_set() and protocol._connected.is_set():  # noqa: SLF001
        protocol._connection._last_data_in = time.monotonic()  # noqa: SLF001
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await room.wait()


def _take_package(buffer: bytearray) -> Package | None:
    """Remove the first whole packet from `buffer` and return it, if there is one.

    Raises _MalformedPacket if its remaining length is longer than MQTT allows.
    """
    length = 0
    for index in range(1, MAX_LENGTH_BYTES + 1):
        if index >= len(buffer):
            return None
        byte = buffer[index]
        length += (byte & 0x7F) << (7 * (index - 1))
        if byte & 0x80:
            continue
        end = index + 1 + length
        if len(buffer) < end:
            return None
        with memoryview(buffer) as view:
            package = Package(buffer[0], bytes(view[index + 1 : end]))
        # CPython deletes from the front of a bytearray by moving its start:
        # at most the bytes after this packet are copied, never the packet.
        del buffer[:end]
        return package
    raise _MalformedPacket


class _GmqttLogger(logging.LoggerAdapter[logging.Logger]):
    """Pass gmqtt's log on, with its lines about a refused CONNACK at debug.

    gmqtt logs every refused CONNACK as one warning and two errors, the errors
    saying it will not reconnect. `MqttSubscriber.run` reports the refusal
    itself, once per outage, and does reconnect: at each retry these lines
    would only repeat it, and mislead.
    """

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # gmqtt logs at debug level for every packet: leave at once, as the
        # level only ever goes down below.
        if not self.isEnabledFor(level):
            return
        if isinstance(msg, str) and msg.startswith(GMQTT_REFUSAL_PREFIXES):
            level = min(level, logging.DEBUG)
        # Name gmqtt's line as the caller, not this method.
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1
        super().log(level, msg, *args, **kwargs)


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, MQTTConnectError):
        return f"broker refused the connection: {exc}"
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
    return describe_connection_failure(exc)


def _first_bytes(value: Any) -> bytes | None:
    """Return a property gmqtt gives as a value or a list of values, as bytes."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if isinstance(value, str):
        return value.encode()
    return value if isinstance(value, bytes) else None
