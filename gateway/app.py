"""Wire the gateway together and own its start-up and shutdown.

A message flows: MqttSubscriber -> Route (topic template, decoder) -> line
protocol -> BatchWriter -> sink (InfluxDB), or the on-disk spool while the
sink cannot take it. Anything refused on the way is counted and kept in the
dead-letter store with its reason. A QoS 1/2 message is acknowledged to the
broker only once all that came of it is stored, spooled or dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
from collections.abc import Awaitable, Callable, Mapping

from gateway.config import GatewayConfig
from gateway.deadletters import (
    QUIET_FIELD_REASONS,
    DeadLetterPublisher,
    DeadLetterStore,
)
from gateway.decoding import Decoded, FieldReject, Route, TopicTemplate
from gateway.decoding.options import DecoderOptions
from gateway.decoding.registry import make_decoder
from gateway.errors import ConfigError, PayloadError
from gateway.logs import DEVICE_ID, enter_subject, leave_subject
from gateway.logutil import RateLimitedLogger
from gateway.monitoring import GatewayCollector, GatewayMetrics, MonitoringServer
from gateway.operations import GatewayOperations
from gateway.points import Point, encode_line
from gateway.registry.running import GatewayRegistry
from gateway.sinks import BatchWriter, Sink, make_sink
from gateway.sinks.batcher import Settlement
from gateway.sinks.spool import Spool
from gateway.sources import MqttMessage, MqttSubscriber
from gateway.stats import GatewayStats
from gateway.validation import QualityChecker, load_quality_profiles

__all__ = ["Gateway", "build_quality_checker", "build_routes"]

logger = logging.getLogger(__name__)

# Shutdown: how long running handlers may take to finish once the buffer is
# settled, and the last attempt at what the writer left.
HANDLERS_FINISH_TIMEOUT_S = 5.0
LAST_FLUSH_TIMEOUT_S = 2.0
# How long the alert, liveness and command tasks get to stop.
OPERATIONS_STOP_S = 5.0
RESTART_MIN_S = 1.0
RESTART_MAX_S = 30.0
MAX_LOGGED_PAYLOAD_BYTES = 200
NO_DECODER = "none"
# One line per topic, field and reason a minute: a device that sends NaN every
# second must not fill the log; the counters and dead letters keep the volume.
field_warnings = RateLimitedLogger(logger, interval_s=60.0)
message_warnings = RateLimitedLogger(logger, interval_s=60.0)


class Gateway:
    """The running gateway: one MQTT session, one writer, shared counters."""

    def __init__(
        self, config: GatewayConfig, sink: Sink | None = None, source: str = ""
    ) -> None:
        self.config = config
        self.routes = build_routes(config, source)
        self.quality = build_quality_checker(config, source)
        self.stats = GatewayStats()
        # None unless [registry] check_devices or serve_api is on.
        self.registry = GatewayRegistry.from_config(config, source)
        dead = config.dead_letters
        self.dead_letters = DeadLetterStore(dead.path, dead.max_bytes, dead.max_files)
        spool = config.spool
        self.writer = BatchWriter(
            sink or make_sink(config.influx),
            config.influx,
            self.stats,
            self.dead_letters,
            spool=Spool(spool.path, spool.max_bytes) if spool.enabled else None,
        )
        # None unless [alerts], [liveness] or [commands] is enabled.
        self.operations = GatewayOperations.from_config(config, self.writer, source)
        # The broker sends no more than max_inflight unacknowledged messages:
        # write once half of them wait, so the other half keeps arriving.
        self.writer.flush_when_waiting = max(1, config.mqtt.max_inflight // 2)
        self.subscriber = MqttSubscriber(
            config.mqtt,
            [(route.topic_filter, route.qos) for route in self.routes],
            self.receive,
        )
        if dead.topic_prefix:
            self.dead_letters.publisher = DeadLetterPublisher(
                dead.topic_prefix,
                dead.publish_rate_per_s,
                dead.publish_burst,
                self._publish_dead_letter,
            )
        # /metrics: the gateway's counters (read at each scrape, so
        # built last), plus collectors other parts add.
        self.metrics = GatewayMetrics()
        self.metrics.add_collector(GatewayCollector(self))
        self.writer.on_write = self.metrics.observe_write
        self.monitoring = MonitoringServer(self, source)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then flush what is buffered and close."""
        if self.config.monitoring.enabled:
            await self.monitoring.start()
        if self.registry is not None:
            try:
                await self.registry.start()
            except BaseException:
                await self.monitoring.stop()
                raise
        if self.operations is not None:
            try:
                await self.operations.start()
            except BaseException:
                if self.registry is not None:
                    await self.registry.stop()
                await self.monitoring.stop()
                raise
        mqtt_name = f"mqtt[{self.subscriber.address}].receive"
        tasks = [
            asyncio.create_task(_supervise("influx.write", self.writer.run)),
            asyncio.create_task(_supervise(mqtt_name, self.subscriber.run)),
            asyncio.create_task(_supervise("deadletters.write", self.dead_letters.run)),
        ]
        for task, name in zip(
            tasks, ("influx.write", mqtt_name, "deadletters.write"), strict=True
        ):
            task.set_name(name)
        # [grafana] reprovision: Grafana follows the registry (gateway/grafana).
        grafana = _grafana_watcher(self.config, stop)
        operations = [
            asyncio.create_task(_supervise(name, body), name=name)
            for name, body in (self.operations.tasks() if self.operations else [])
        ]
        try:
            await stop.wait()
        finally:
            logger.info(
                "Stopping: writing the readings in hand, acknowledging them, "
                "then disconnecting (a second signal stops at once)"
            )
            # Messages arriving from now on stay with the broker.
            self.subscriber.pause()
            for task in operations:
                task.cancel()
            if operations:
                # A task stuck in a database call cannot be cancelled until the
                # call returns: the stop does not wait for it for ever.
                _, stuck = await asyncio.wait(operations, timeout=OPERATIONS_STOP_S)
                for task in stuck:
                    logger.warning(
                        "%s did not stop within %.0f s; going on without it",
                        task.get_name(),
                        OPERATIONS_STOP_S,
                    )
            if self.operations is not None:
                await self.operations.stop()
            await self.writer.drain()
            await self.subscriber.finish_handlers(HANDLERS_FINISH_TIMEOUT_S)
            tasks[1].cancel()
            await asyncio.gather(tasks[1], return_exceptions=True)
            await self.subscriber.stop()
            tasks[0].cancel()
            await asyncio.gather(tasks[0], return_exceptions=True)
            await self.writer.flush_remaining(timeout_s=LAST_FLUSH_TIMEOUT_S)
            await self.writer.sink.close()
            # Last: the writer's unwritten points are dead letters too.
            tasks[2].cancel()
            await asyncio.gather(tasks[2], return_exceptions=True)
            await self.dead_letters.aclose()
            if self.registry is not None:
                await self.registry.stop()
            if grafana is not None:
                grafana.cancel()
                await asyncio.gather(grafana, return_exceptions=True)
            await self.monitoring.stop()
            if self.dead_letters.entries_written:
                logger.info(
                    "Kept %d dead letters in %s (see: decor deadletter list)",
                    self.dead_letters.entries_written,
                    self.dead_letters.path,
                )
            left = self.subscriber.messages_left_unacknowledged
            logger.info(
                "Stopped after %d messages, %d points written%s%s",
                self.stats.messages_received,
                self.stats.points_written,
                f", {self.stats.spool_points} waiting in the spool"
                if self.stats.spool_points
                else "",
                f"; {left} messages left unacknowledged for the broker to send again"
                if left
                else "",
            )

    def receive(self, message: MqttMessage) -> Settlement | Awaitable[None] | None:
        """Take one message as it arrives, without a task where possible.

        Returns None when nothing is left to wait for before acknowledging
        it, the Settlement of its points when the writer took them at once
        (the common case), or an awaitable for the rest: waiting for room in
        a full buffer, or for its dead letters to reach their file.
        """
        self.stats.messages_received += 1
        dead_letters_before = self.dead_letters.entries_kept
        # Lines logged while handling it name the device (gateway/logs.py).
        subject = enter_subject(self.device_ids, message.topic)
        try:
            lines = self._take_lines(message)
            settlement = self.writer.add_nowait(lines) if lines else None
        finally:
            leave_subject(subject)
        if lines and settlement is None:
            return self._take_slowly(message, lines, dead_letters_before)
        if not message.qos:
            return None  # nothing to acknowledge, nothing to wait for
        if self.dead_letters.entries_kept > dead_letters_before:
            return self._settle_then_keep(settlement)
        return settlement

    async def handle_message(self, message: MqttMessage) -> None:
        """Decode one message, store its points and record whatever is refused.

        Returns, for a QoS 1/2 message, only once its points are in InfluxDB
        or the spool and its dead letters, if any, are in their file.
        """
        outcome = self.receive(message)
        if isinstance(outcome, Settlement):
            done = asyncio.get_running_loop().create_future()
            outcome.then(lambda: done.done() or done.set_result(None))
            await done
        elif outcome is not None:
            await outcome

    async def _take_slowly(
        self, message: MqttMessage, lines: list[str], dead_letters_before: int
    ) -> None:
        """Wait for room in the full buffer, then as receive() would."""
        subject = enter_subject(self.device_ids, message.topic)
        try:
            settled = await self.writer.add(lines)
            if not message.qos:
                return
            await settled
            if self.dead_letters.entries_kept > dead_letters_before:
                await self.dead_letters.written()
        finally:
            leave_subject(subject)

    async def _settle_then_keep(self, settlement: Settlement | None) -> None:
        """Wait for a message's points, then for its dead letters' file."""
        if settlement is not None:
            done = asyncio.get_running_loop().create_future()
            settlement.then(lambda: done.done() or done.set_result(None))
            await done
        await self.dead_letters.written()

    def device_ids(self, topic: str) -> Mapping[str, str]:
        """Return {"device_id": id} as the topic's route captures it, or {}.

        Read from the topic template's `{device_id}` (or the level named by
        `[quality] device_tag`); formats that name the device inside the
        payload without a template give no id here.
        """
        _, route, _ = self._route_for(topic)
        if route is None or route.template is None:
            return {}
        captured = route.template.match(topic) or {}
        device_id = captured.get(DEVICE_ID) or captured.get(
            self.config.quality.device_tag
        )
        return {DEVICE_ID: device_id} if device_id else {}

    def _take_lines(self, message: MqttMessage) -> list[str] | None:
        """Decode a message into line protocol; keep what is refused."""
        index, route, excluded = self._route_for(message.topic)
        if route is not None and _is_extra_copy(message, index):
            # The broker sends one copy per matching subscription; the copy
            # for the route that takes the message is the one we keep.
            self.stats.messages_duplicate += 1
            return None
        size = len(message.payload)
        if size > self.config.mqtt.max_payload_bytes and not excluded:
            # Under MQTT 5 the broker drops most of these for us (maximum
            # packet size); 3.1.1 cannot ask it to. The dead-letter store keeps
            # at most the first 256 KiB of the payload, flagged truncated.
            self._reject_message(
                message,
                route,
                "too_large",
                f"payload is {size} bytes; mqtt.max_payload_bytes is "
                f"{self.config.mqtt.max_payload_bytes}",
            )
            return None
        try:
            lines = self._decode(message, route, excluded)
        except Exception as exc:
            # A decoder bug must not lose the message: it is acknowledged
            # once kept with the error, and the broker would send it again
            # to fail the same way.
            logger.exception("Decoding a message from %r failed", message.topic)
            self._reject_message(
                message, route, "decoder_error", f"{type(exc).__name__}: {exc}"
            )
            return None
        if not lines:
            return None
        self.stats.points_decoded += len(lines)
        return lines

    def _decode(
        self, message: MqttMessage, route: Route | None, excluded: bool
    ) -> list[str]:
        if excluded:
            self.stats.messages_excluded += 1
            return []
        try:
            if route is None:
                raise PayloadError(
                    "unmatched_topic", "no subscription covers it", topic=message.topic
                )
            decoded = route.decode(message)
        except PayloadError as exc:
            self._reject_message(message, route, exc.reason, exc.detail)
            return []
        if not (decoded.points or decoded.rejected_fields or decoded.outgoing):
            # Availability, LWT and event messages: routine, not readings.
            self.stats.messages_not_telemetry += 1
            return []

        lines: list[str] = []
        points = self._checked_points(message, route, decoded)
        if self.operations is not None:
            self.operations.observe(points)
        for point in points:
            try:
                lines.append(encode_line(point))
            except ValueError as exc:
                self._reject_message(message, route, "unencodable_point", str(exc))
        if decoded.rejected_fields:
            self._reject_fields(message, route, decoded.rejected_fields)
        for outgoing in decoded.outgoing:
            self.subscriber.publish(outgoing.topic, outgoing.payload, outgoing.qos)
        return lines

    def _reject_fields(
        self, message: MqttMessage, route: Route, rejected: list[FieldReject]
    ) -> None:
        # One dead letter per message, listing every value left out of it: the
        # payload is kept once, and a replay restores the values together.
        first = rejected[0]
        self.dead_letters.add_message(
            message,
            first.reason,
            "; ".join(f"{r.field}: {r.detail}" for r in rejected),
            decoder=route.decoder.name,
            fields=rejected,
        )
        for reject in rejected:
            self.stats.fields_rejected[reject.reason] += 1
            # A null is how firmware says "no reading now": normal, not news.
            if reject.reason in QUIET_FIELD_REASONS:
                continue
            field_warnings.warning(
                (message.topic, reject.field, reject.reason),
                "Left out field %r of a message on %r: %s",
                reject.field,
                message.topic,
                reject.detail,
            )

    def _checked_points(
        self, message: MqttMessage, route: Route, decoded: Decoded
    ) -> list[Point]:
        """Drop replayed retained readings, then apply the quality checks."""
        points = decoded.points
        if message.retain:
            # A retained message without its own time is the device's last
            # reading again (sent at every subscribe): storing it would add a
            # reading at a time it was never taken.
            fresh = [p for p in points if p.time_ns != message.received_ns]
            self.stats.retained_skipped += len(points) - len(fresh)
            points = fresh
        if self.registry is not None:
            points = self._admitted(message, route, points)
        if self.quality is None:
            return points
        checked_points = []
        for point in points:
            checked = self.quality.check(point, message.received_ns)
            if checked.rejected_fields:
                decoded.rejected_fields.extend(checked.rejected_fields)
            for flag in checked.flags:
                self.stats.readings_flagged[flag] += 1
            if checked.point is not None:
                checked_points.append(checked.point)
        return checked_points

    def _admitted(
        self, message: MqttMessage, route: Route, points: list[Point]
    ) -> list[Point]:
        """Keep the points of registered devices; dead-letter the others."""
        assert self.registry is not None
        admitted, refusals = self.registry.admit(points)
        for refusal in refusals:
            self._reject_message(message, route, refusal.reason, refusal.detail)
        return admitted

    def _route_for(self, topic: str) -> tuple[int, Route | None, bool]:
        """Return the first route that takes `topic`, its index, and whether
        the topic was excluded by every route whose filter covers it.

        A route whose exclude_topics cover the topic passes it on to the next.
        """
        excluded = False
        for index, route in enumerate(self.routes):
            if route.accepts(topic):
                if not route.excludes(topic):
                    return index, route, False
                excluded = True
        return -1, None, excluded

    def _reject_message(
        self, message: MqttMessage, route: Route | None, reason: str, detail: str
    ) -> None:
        self.stats.messages_rejected[reason] += 1
        self.dead_letters.add_message(
            message,
            reason,
            detail,
            decoder=route.decoder.name if route is not None else NO_DECODER,
        )
        # One line per topic and reason a minute says what is wrong; the
        # counters and the dead-letter store carry the volume.
        message_warnings.warning(
            (message.topic, reason),
            "Rejected a message on %r (%s): %s",
            message.topic,
            reason,
            detail,
        )
        logger.debug(
            "Rejected payload on %r: %r",
            message.topic,
            message.payload[:MAX_LOGGED_PAYLOAD_BYTES],
        )

    def _publish_dead_letter(self, topic: str, payload: bytes) -> bool:
        # While the broker is away the entry stays on disk only; checking first
        # spares a warning per dead letter.
        if not self.subscriber.connected.is_set():
            return False
        return self.subscriber.publish(topic, payload, 0)


def _is_extra_copy(message: MqttMessage, route_index: int) -> bool:
    """Tell whether this copy was sent for a subscription other than the route's."""
    return bool(message.subscription_ids) and (
        route_index + 1 not in message.subscription_ids
    )


def build_quality_checker(
    config: GatewayConfig, source: str = ""
) -> QualityChecker | None:
    """Return the profile checks the configuration asks for, or None if off."""
    quality = config.quality
    if not quality.enabled:
        return None
    profiles = load_quality_profiles(quality.profiles_dir, source)
    try:
        return QualityChecker(
            profiles,
            profile_tag=quality.profile_tag,
            device_tag=quality.device_tag,
            max_clock_skew_s=quality.max_clock_skew_s,
            late_reading_time=quality.late_reading_time,
            max_tracked_devices=quality.max_tracked_devices,
        )
    except ValueError as exc:
        # A profile field named like one of the flag fields.
        raise ConfigError(str(exc), key="quality.profiles_dir", source=source) from None


def build_routes(config: GatewayConfig, source: str = "") -> list[Route]:
    """Compile the configured subscriptions; raise ConfigError naming the bad key."""
    routes = []
    for index, sub in enumerate(config.subscriptions):
        key = f"subscriptions.{index}"
        template = None
        if sub.topic_template:
            try:
                template = TopicTemplate.parse(sub.topic_template)
            except ValueError as exc:
                raise ConfigError(str(exc), key=f"{key}.topic_template", source=source)
        names = set(template.tag_names) if template else set()
        for option in ("measurement", "field"):
            _check_template_names(
                getattr(sub, option), names, f"{key}.{option}", source
            )
        try:
            decoder = make_decoder(
                sub.format, DecoderOptions.from_config(sub, config.decoding)
            )
        except ConfigError as exc:
            raise ConfigError(exc.reason, key=f"{key}.format", source=source) from None
        routes.append(
            Route(
                topic_filter=sub.topic or (template.topic_filter if template else ""),
                qos=sub.qos,
                template=template,
                measurement=sub.measurement,
                static_tags=dict(sub.tags),
                decoder=decoder,
                field=sub.field,
                exclude_filters=tuple(sub.exclude_topics),
            )
        )
    return routes


def _check_template_names(text: str, names: set[str], key: str, source: str) -> None:
    for _, field_name, _, _ in string.Formatter().parse(text):
        if field_name is not None and field_name not in names:
            raise ConfigError(
                f"uses {{{field_name}}}, which the topic template does not capture"
                f" (captures: {', '.join(sorted(names)) or 'nothing'})",
                key=key,
                source=source,
            )


def _grafana_watcher(
    config: GatewayConfig, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    if not config.grafana.reprovision:
        return None
    # Imported here: a gateway that does not provision Grafana never loads
    # the Grafana libraries.
    from gateway.grafana.watch import GrafanaWatcher

    watcher = GrafanaWatcher(config)
    return asyncio.create_task(
        _supervise("grafana.reprovision", lambda: watcher.run(stop)),
        name="grafana.reprovision",
    )


async def _supervise(name: str, body: Callable[[], Awaitable[None]]) -> None:
    """Run a long-lived task, restarting it with backoff if it crashes."""
    delay_s = RESTART_MIN_S
    while True:
        try:
            await body()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "Task %s crashed; restarting in about %.0f s", name, delay_s
            )
            await asyncio.sleep(random.uniform(delay_s / 2, delay_s))
            delay_s = min(delay_s * 2, RESTART_MAX_S)
