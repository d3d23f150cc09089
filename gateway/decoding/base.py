"""The decoder seam: each payload format turns one message into points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from gateway.decoding.topics import TopicTemplate
from gateway.errors import PayloadError
from gateway.points import Point
from gateway.sources.mqtt import MqttMessage, topic_matches

__all__ = ["Decoded", "Decoder", "FieldReject", "OutgoingMessage", "Route"]


@dataclass(frozen=True, slots=True)
class FieldReject:
    """One value left out of a point, with a short reason code and details."""

    field: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message a decoder asks the gateway to publish (e.g. a rebirth request)."""

    topic: str
    payload: bytes
    qos: int = 0


@dataclass(slots=True)
class Decoded:
    """What one message produced: points, values left out, messages to send."""

    points: list[Point] = field(default_factory=list)
    rejected_fields: list[FieldReject] = field(default_factory=list)
    outgoing: list[OutgoingMessage] = field(default_factory=list)


class Decoder(Protocol):
    """Turn one payload into points; raise PayloadError if nothing is usable.

    `name` names the format in dead letters and logs. `field` is the field
    name for formats that carry one bare value.
    """

    name: str

    def decode(
        self,
        message: MqttMessage,
        measurement: str,
        tags: dict[str, str],
        field: str = "value",
    ) -> Decoded:
        """Decode `message` into points named `measurement` carrying `tags`."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    """One subscription: which topics, their tags, their measurement, their decoder."""

    topic_filter: str
    qos: int
    template: TopicTemplate | None
    measurement: str
    static_tags: dict[str, str]
    decoder: Decoder
    field: str = "value"
    exclude_filters: tuple[str, ...] = ()

    def accepts(self, topic: str) -> bool:
        """Tell whether this route's topic filter covers `topic`."""
        return topic_matches(self.topic_filter, topic)

    def excludes(self, topic: str) -> bool:
        """Tell whether `topic` is one this route was told to ignore."""
        return any(topic_matches(f, topic) for f in self.exclude_filters)

    def decode(self, message: MqttMessage) -> Decoded:
        """Decode a message, naming its points from the topic."""
        tags = dict(self.static_tags)
        if self.template is not None:
            captured = self.template.match(message.topic)
            if captured is None:
                raise PayloadError(
                    "unmatched_topic",
                    f"topic does not fit template {self.template.text!r}",
                    topic=message.topic,
                )
            tags.update(captured)
        else:
            captured = {}
        measurement = self.measurement.format_map(captured)
        if not measurement:
            raise PayloadError(
                "empty_measurement",
                f"measurement {self.measurement!r} is empty for this topic",
                topic=message.topic,
            )
        field = self.field.format_map(captured) if "{" in self.field else self.field
        return self.decoder.decode(message, measurement, tags, field)
