"""Load, override and validate the gateway's configuration.

The configuration is one TOML file. Any key can be overridden by an environment
variable named ``DECOR_`` + the key path in capitals, levels joined by ``__``:
``DECOR_MQTT__HOST=broker.local`` sets ``[mqtt] host``. Values from the
environment are parsed as TOML values where they parse (``1883``, ``true``,
``["a", "b"]``) and taken as plain strings otherwise; a key that holds text
(a password, a client id, ``protocol``, a tag value) takes the value as
written, so ``DECOR_MQTT__PASSWORD=12345678`` stays a string.

Validation refuses, before anything connects, what would otherwise fail at
run time: topic filters the broker refuses, names InfluxDB refuses, a
template whose placeholders cannot be filled, backoffs whose first delay
exceeds the longest. Each message names the key, the value and what was
expected.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import socket
import string
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeGuard,
    Union,
    get_args,
    get_origin,
)
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.decoding.topics import TopicTemplate

__all__ = [
    "CameraConfig",
    "CctvConfig",
    "AlertsConfig",
    "CommandsConfig",
    "DeadLetterConfig",
    "DecodingConfig",
    "GatewayConfig",
    "GrafanaConfig",
    "InfluxConfig",
    "MonitoringConfig",
    "LivenessConfig",
    "MqttConfig",
    "QualityConfig",
    "RegistryConfig",
    "SubscriptionConfig",
    "TlsConfig",
    "load_config",
]

ENV_PREFIX = "DECOR_"
ENV_SEPARATOR = "__"
# Longest delay or interval a key accepts: a longer one is a typo, not a plan.
MAX_DELAY_S = 3600.0
# MQTT 5 carries the session expiry in four bytes; the largest means "never".
MAX_SESSION_EXPIRY_S = 2**32 - 1
MAX_TOPIC_BYTES = 65_535
DEFAULT_CLIENT_ID = "decor-gateway"
MAX_CLIENT_ID_CHARS = 64
SHARE_PREFIX = "$share/"
# InfluxDB refuses a tag key or field key named "time".
RESERVED_NAME = "time"

Port = Annotated[int, Field(ge=1, le=65535)]
# Payload formats a subscription can name; "auto" picks one per message where
# the topic or the payload makes it unambiguous.
PayloadFormat = Literal[
    "auto",
    "json",
    "value",
    "influx",
    "senml",
    "tasmota",
    "zigbee2mqtt",
    "shelly",
    "shelly_rpc",
    "esphome",
    "tts_v3",
    "chirpstack_v4",
    "sparkplug_b",
]
FieldType = Literal["float", "integer", "unsigned", "boolean", "string"]
PositiveSeconds = Annotated[float, Field(gt=0)]
DelaySeconds = Annotated[float, Field(gt=0, le=MAX_DELAY_S)]
_PLACEHOLDER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CLIENT_ID_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


class _Section(BaseModel):
    # Unknown keys are errors: a misspelled key must not be silently ignored.
    # TOML can write inf and nan; no delay, interval or rate means either.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class _Invalid(ValueError):
    """A refusal whose message already names the value.

    `key` continues the key path pydantic reports, so that a check of a
    whole section or list can blame one key or element.
    """

    def __init__(self, message: str, *key: str | int) -> None:
        super().__init__(message)
        self.key = key


class TlsConfig(_Section):
    """TLS towards the broker."""

    enabled: bool = Field(False, description="Connect to the broker over TLS")
    ca_file: Path | None = Field(None, description="CA bundle; system CAs if unset")
    cert_file: Path | None = Field(None, description="Client certificate (PEM)")
    key_file: Path | None = Field(None, description="Client private key (PEM)")
    insecure: bool = Field(
        False, description="Skip hostname and certificate checks (testing only)"
    )


def _default_client_id() -> str:
    """Return decor-gateway-<host name>: stable on one host, distinct across hosts."""
    host = _CLIENT_ID_UNSAFE.sub("-", socket.gethostname()).strip("-")
    client_id = f"{DEFAULT_CLIENT_ID}-{host}" if host else DEFAULT_CLIENT_ID
    if len(client_id) > MAX_CLIENT_ID_CHARS:
        # Cut long names, keeping a digest of the whole so hosts stay apart.
        digest = hashlib.sha256(host.encode()).hexdigest()[:8]
        client_id = f"{client_id[: MAX_CLIENT_ID_CHARS - 9].rstrip('-')}-{digest}"
    return client_id


class MqttConfig(_Section):
    """The broker the gateway reads telemetry from."""

    host: str = Field("127.0.0.1", min_length=1, description="Broker host name")
    port: Port = Field(1883, description="Broker TCP port")
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description='MQTT protocol version: "5" or "3.1.1"'
    )
    client_id: str = Field(
        default_factory=_default_client_id,
        min_length=1,
        max_length=MAX_CLIENT_ID_CHARS,
        description="Client id, stable and unique per gateway process: the broker "
        "keeps the session under it; default decor-gateway-<host name>",
    )
    username: str | None = Field(None, description="Broker user name")
    password: str | None = Field(None, description="Broker password", repr=False)
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = Field(
        30, description="Keepalive interval, seconds"
    )
    clean_start: bool = Field(
        False,
        description="Start a fresh session at each connect (MQTT 5 clean start, "
        "3.1.1 clean session); false: the broker keeps QoS 1 readings for us "
        "while the gateway is away",
    )
    session_expiry_s: Annotated[int, Field(ge=0, le=MAX_SESSION_EXPIRY_S)] = Field(
        3600,
        description="MQTT 5: how long the broker keeps the session, and the "
        "readings queued in it, after a disconnect, s (4294967295: forever)",
    )
    reconnect_min_s: DelaySeconds = Field(
        1.0, description="First reconnect delay, seconds"
    )
    reconnect_max_s: DelaySeconds = Field(
        60.0, description="Longest reconnect delay, seconds"
    )
    # 268,435,455 is MQTT's largest remaining length: no payload is longer.
    max_payload_bytes: Annotated[int, Field(ge=1, le=268_435_455)] = Field(
        1024 * 1024,
        description="Largest payload the gateway takes, bytes; larger messages "
        "are refused as too_large (MQTT 5: the broker drops them instead)",
    )
    max_inflight: Annotated[int, Field(ge=2, le=65535)] = Field(
        1000,
        description="QoS 1/2 messages the broker may send before the gateway "
        "acknowledges them (MQTT 5: sent as Receive Maximum; 3.1.1: set it to "
        "the broker's own limit); a batch is written once half of them wait",
    )
    tls: TlsConfig = TlsConfig()

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: object) -> object:
        # TOML reads protocol = 5 as a number; 3.1.1 cannot be one.
        if type(value) is int and value == 5:
            return "5"
        if value in ("5", "3.1.1"):
            return value
        raise _Invalid(f'must be "5" or "3.1.1", got {value!r}{_protocol_hint(value)}')

    @model_validator(mode="after")
    def _backoff_in_order(self) -> MqttConfig:
        _check_order(self, "reconnect_min_s", "reconnect_max_s")
        return self


class SubscriptionConfig(_Section):
    """One topic filter, how to decode its payloads and how to name the points."""

    topic: str = Field(
        "",
        description="MQTT topic filter, $share/<group>/<filter> for a shared "
        "subscription; derived from topic_template when empty, else it must cover "
        "or narrow the template's filter",
    )
    qos: Literal[0, 1, 2] = Field(1, description="Subscription QoS")
    exclude_topics: list[str] = Field(
        default_factory=list,
        description="Topic filters inside `topic` to ignore (e.g. a bridge's own "
        "status topics); excluded messages are counted, not stored",
    )
    format: PayloadFormat = Field("json", description="Payload format")
    topic_template: str = Field(
        "",
        description="Topic levels to tags: {name} makes a tag, + or {_} skips a "
        "level, a trailing # ignores the rest",
    )
    measurement: str = Field(
        "telemetry",
        min_length=1,
        description="Measurement name; {name} is replaced by that topic level",
    )
    field: str = Field(
        "value",
        min_length=1,
        description="Field name for formats that carry one bare value; {name} is "
        "replaced by that topic level",
    )
    timestamp_key: str = Field(
        "ts",
        description="Payload key holding the reading time (dots reach into nested "
        "objects: params.ts); empty: receive time",
    )
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = Field(
        "auto", description="Unit of numeric timestamps; auto guesses by magnitude"
    )
    timezone: str = Field(
        "",
        description="IANA zone of timestamps written without an offset; empty: "
        "[decoding] default_timezone",
    )
    fields: dict[str, FieldType] = Field(
        default_factory=dict,
        description="Declared field types by stored field name; undeclared numbers "
        "are floats",
    )
    include: list[str] = Field(
        default_factory=list,
        description="Keep only these fields (stored names); empty: keep all",
    )
    payload_tags: dict[str, str] = Field(
        default_factory=dict,
        description="Tags taken from the payload: tag name -> key (dots reach into "
        "nested objects); the exact text is kept",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Fixed tags added to every point"
    )

    _check_timezone = field_validator("timezone")(classmethod(lambda cls, v: _zone(v)))

    @field_validator("topic")
    @classmethod
    def _topic_is_a_filter(cls, value: str) -> str:
        # Empty: the filter is derived from topic_template.
        if value:
            _check_filter(value, shared=True)
        return value

    @field_validator("exclude_topics")
    @classmethod
    def _excludes_are_filters(cls, value: list[str]) -> list[str]:
        for index, topic_filter in enumerate(value):
            _check_filter(topic_filter, shared=False, key=index)
        return value

    @field_validator("topic_template")
    @classmethod
    def _template_parses(cls, value: str) -> str:
        if value:
            _parse_template(value)
        return value

    @field_validator("tags", "payload_tags")
    @classmethod
    def _tag_keys_storable(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key == RESERVED_NAME:
                raise _Invalid(
                    f"tag key {key!r} is reserved by InfluxDB, which would refuse "
                    "every point; rename the tag"
                )
            if not key:
                raise _Invalid(
                    "tag key '' is empty, which InfluxDB refuses in every point; "
                    "name the tag"
                )
        return value

    @model_validator(mode="after")
    def _parts_agree(self) -> SubscriptionConfig:
        if not self.topic and not self.topic_template:
            raise _Invalid("needs a topic or a topic_template")
        names: tuple[str, ...] = ()
        if self.topic_template:
            template = _parse_template(self.topic_template)
            names = template.tag_names
            _check_topic_covers(self.topic, self.topic_template, template.topic_filter)
        _check_name_template(self.measurement, names, "measurement")
        _check_name_template(self.field, names, "field")
        return self


class DecodingConfig(_Section):
    """Rules every decoder follows."""

    default_timezone: str = Field(
        "",
        description="IANA zone of timestamps written without an offset, where a "
        "subscription names none; empty: such readings are stored at receive time "
        "with a warning",
    )
    max_past_s: Annotated[float, Field(gt=0)] = Field(
        10 * 365.25 * 86_400,
        description="A reading time further in the past than this, seconds before "
        "receipt, is implausible and refused",
    )
    max_future_s: Annotated[float, Field(gt=0)] = Field(
        86_400.0,
        description="A reading time further ahead than this, seconds after receipt, "
        "is implausible and refused",
    )

    _check_timezone = field_validator("default_timezone")(
        classmethod(lambda cls, v: _zone(v))
    )


class QualityConfig(_Section):
    """Checks of readings against device profiles."""

    enabled: bool = Field(
        True,
        description="Refuse impossible values and flag suspect ones for device "
        "types that have a profile",
    )
    profiles_dir: Path | None = Field(
        None,
        description="Directory of extra *.toml device profiles; one naming a "
        "shipped device type replaces it",
    )
    profile_tag: str = Field(
        "device_type",
        min_length=1,
        description="Tag whose value names a point's profile; points without it "
        "are matched by measurement",
    )
    device_tag: str = Field(
        "device_id",
        min_length=1,
        description="Tag that tells devices apart for the spike, rate and "
        "flatline checks",
    )
    max_clock_skew_s: PositiveSeconds = Field(
        300.0,
        description="How far a reading's time may be from its receive time, "
        "seconds, before it is flagged clock; a profile's max_clock_skew_s "
        "overrides",
    )
    late_reading_time: Literal["device", "receive"] = Field(
        "device",
        description="Where a reading more than max_clock_skew_s behind is stored: "
        "its device time (right for late deliveries) or the receive time (right "
        "for slow clocks); readings ahead always go to the receive time",
    )
    max_tracked_devices: Annotated[int, Field(ge=1)] = Field(
        10_000,
        description="Devices whose recent readings are remembered; the least "
        "recently heard from is forgotten first",
    )


class InfluxConfig(_Section):
    """Where points are written, and how they are batched."""

    url: str = Field(
        "http://127.0.0.1:8086",
        description="InfluxDB base URL: http:// or https://, a host, a port",
    )
    api: Literal["auto", "v1", "v2"] = Field(
        "auto", description="Write API; auto asks the server's /ping"
    )
    database: str = Field("decor", description="v1 and auto: database")
    retention_policy: str = Field(
        "", description="v1: retention policy; default RP if empty"
    )
    username: str | None = Field(None, description="v1: user name")
    password: str | None = Field(None, description="v1: password", repr=False)
    create_database: bool = Field(True, description="v1: CREATE DATABASE at start-up")
    token: str = Field("", description="v2: API token", repr=False)
    org: str = Field("decor", description="v2: organisation")
    bucket: str = Field("decor", description="v2: bucket")
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        5000, description="Flush when this many points are buffered"
    )
    flush_interval_s: DelaySeconds = Field(
        1.0, description="Flush at least this often, seconds"
    )
    max_buffered_points: Annotated[int, Field(ge=1)] = Field(
        100_000,
        description="Points held in memory before the gateway stops reading MQTT",
    )
    max_request_bytes: Annotated[int, Field(ge=1024)] | None = Field(
        None,
        description="Largest write request body, bytes; batches are cut below "
        "it. Unset: learned from the server's 413 answers",
    )
    timeout_s: DelaySeconds = Field(10.0, description="HTTP timeout of one write, s")
    retry_min_s: DelaySeconds = Field(0.5, description="First retry delay, seconds")
    retry_max_s: DelaySeconds = Field(30.0, description="Longest retry delay, seconds")

    @field_validator("url")
    @classmethod
    def _url_reaches_a_host(cls, value: str) -> str:
        _check_url(value)
        return value

    @model_validator(mode="after")
    def _destination_named(self) -> InfluxConfig:
        # auto may find a 1.x server, which needs the database.
        if self.api in ("v1", "auto") and not self.database:
            raise _Invalid(
                f"must name a database when api is {self.api!r}, got ''", "database"
            )
        if self.api == "v2" and not self.bucket:
            raise _Invalid("must name a bucket when api is 'v2', got ''", "bucket")
        _check_order(self, "retry_min_s", "retry_max_s")
        return self


class DeadLetterConfig(_Section):
    """Where refused messages, values and points are kept, and who hears of them."""

    path: Path = Field(
        Path(".run/dead-letters.jsonl"),
        description="JSON Lines file taking new dead letters; older ones are "
        "<path>.1, <path>.2, ..., replayed ids are listed in <path>.replayed",
    )
    max_bytes: Annotated[int, Field(ge=1024)] = Field(
        50_000_000,
        description="Total size of the dead-letter files, bytes; past it the "
        "oldest file is deleted",
    )
    max_files: Annotated[int, Field(ge=2, le=1000)] = Field(
        5,
        description="Files kept, the current one included; each holds about "
        "max_bytes / max_files bytes",
    )
    topic_prefix: str = Field(
        "decor/deadletter",
        description="Publish each dead letter (QoS 0) to <topic_prefix>/<reason>; "
        "empty: do not publish",
    )
    publish_rate_per_s: Annotated[float, Field(gt=0)] = Field(
        1.0,
        description="Dead letters published per second and reason, on average; "
        "the rest are kept on disk and counted",
    )
    publish_burst: Annotated[int, Field(ge=1)] = Field(
        10,
        description="Dead letters of one reason published at once before the "
        "rate applies",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("must be a topic without the wildcards + and #")
        return value.rstrip("/")


class DynsecConfig(_Section):
    """The Mosquitto dynamic security plugin that holds each device's credentials."""

    enabled: bool = Field(
        False,
        description="Create and revoke device credentials through the broker's "
        "$CONTROL/dynamic-security/v1 API",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name")
    port: Port = Field(1883, description="Broker TCP port")
    username: str = Field(
        "decor-admin",
        min_length=1,
        description="Broker account allowed to manage dynamic security",
    )
    password: str | None = Field(
        None, description="Password of that account", repr=False
    )
    timeout_s: DelaySeconds = Field(
        5.0, description="Longest wait for the broker to answer a command, s"
    )
    telemetry_topics: list[str] = Field(
        ["city/{agency}/{device_type}/{device_id}/telemetry"],
        min_length=1,
        description="Topics a device may publish to; {agency}, {device_type} "
        "and {device_id} are filled from the registry",
    )
    command_topic: str = Field(
        "city/{agency}/{device_type}/{device_id}/command",
        min_length=1,
        description="The one topic a device may subscribe to",
    )

    @field_validator("telemetry_topics")
    @classmethod
    def _telemetry_templates(cls, value: list[str]) -> list[str]:
        for index, template in enumerate(value):
            problem = _device_topic_problem(template)
            if problem:
                raise _Invalid(f"{template!r}: {problem}", index)
        return value

    @field_validator("command_topic")
    @classmethod
    def _command_template(cls, value: str) -> str:
        problem = _device_topic_problem(value)
        if problem:
            raise ValueError(f"{value!r}: {problem}")
        return value


class RegistryConfig(_Section):
    """The registry of agencies, sites, devices and cameras, and its HTTP API."""

    database_url: str = Field(
        "sqlite:///.run/registry.db",
        min_length=1,
        description="SQLAlchemy URL: sqlite:///path or "
        "postgresql+psycopg://user:password@host/db",
        repr=False,
    )
    check_devices: bool = Field(
        False,
        description="Check every point of `decor run` against the registry: refuse "
        "unknown, pending and decommissioned devices, tag points with the agency",
    )
    serve_api: bool = Field(
        False, description="Serve the HTTP API from `decor run` as well"
    )
    api_host: str = Field("127.0.0.1", min_length=1, description="API listen address")
    api_port: Port = Field(8080, description="API listen TCP port")
    unknown_devices: Literal["refuse", "pending"] = Field(
        "refuse",
        description="Readings of a device not in the registry: refuse them into "
        "the dead letters, or also register the device as pending",
    )
    refresh_interval_s: DelaySeconds = Field(
        10.0, description="How often a running gateway re-reads the registry, s"
    )
    dynsec: DynsecConfig = DynsecConfig()


CameraId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class CameraConfig(_Section):
    """One camera: where its stream is and how often to sample it."""

    id: CameraId = Field(
        description="Camera id: letters, digits, _ . -; names its snapshot folder, "
        "its MQTT topics and its camera tag"
    )
    url: str = Field(
        min_length=1,
        repr=False,
        description="rtsp://, rtsps://, http(s):// (a JPEG snapshot URL or an "
        "MJPEG stream), file:// or a path (looped in real time); credentials in "
        "it are never logged",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP: carry the video over TCP or UDP"
    )
    interval_s: Annotated[float, Field(ge=0, le=MAX_DELAY_S)] = Field(
        10.0,
        description="Take a sample every this many seconds; 0: only on demand "
        "(HTTP API)",
    )
    frames_per_s: Annotated[float, Field(gt=0, le=30)] | None = Field(
        None, description="Instead of interval_s: take this many samples a second"
    )
    reconnect_each_sample: bool | None = Field(
        None,
        description="RTSP: connect for each sample and disconnect after it; unset: "
        "when interval_s >= [cctv] reconnect_above_s",
    )
    privacy_masks: list[list[tuple[float, float]]] = Field(
        default_factory=list,
        description="Polygons blacked out in every stored snapshot, corners as "
        "[x, y] fractions of the width and height (0-1)",
    )
    people: bool = Field(
        False, description="Count people with OpenCV's HOG detector (costs CPU)"
    )
    site: str = Field("", description="Site tag on the camera's points; empty: none")

    @field_validator("url")
    @classmethod
    def _url_has_known_kind(cls, value: str) -> str:
        from gateway.cctv.urls import redact_url, source_kind

        try:
            source_kind(value)
        except ValueError as exc:
            raise _Invalid(f"{exc}, got {redact_url(value)!r}") from None
        return value

    @field_validator("privacy_masks")
    @classmethod
    def _masks_are_polygons(
        cls, value: list[list[tuple[float, float]]]
    ) -> list[list[tuple[float, float]]]:
        for index, polygon in enumerate(value):
            if len(polygon) < 3:
                raise _Invalid(
                    f"a mask needs at least 3 corners, got {len(polygon)}", index
                )
            for x, y in polygon:
                if not (0 <= x <= 1 and 0 <= y <= 1):
                    raise _Invalid(
                        f"corners are fractions of the picture, 0-1, got [{x}, {y}]",
                        index,
                    )
        return value

    @property
    def sample_interval_s(self) -> float:
        """Return the seconds between samples (0: on demand only)."""
        return 1 / self.frames_per_s if self.frames_per_s else self.interval_s


class CctvConfig(_Section):
    """Camera sampling: workers, timeouts, snapshots, and health thresholds."""

    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        1, description="Worker processes decoding video (cameras are spread over them)"
    )
    max_concurrent_decodes: Annotated[int, Field(ge=1, le=256)] = Field(
        2, description="Frames decoded and encoded at once in each worker"
    )
    open_timeout_s: DelaySeconds = Field(
        5.0, description="Longest wait to connect to a camera, seconds"
    )
    read_timeout_s: DelaySeconds = Field(
        5.0, description="Longest wait for data from a connected camera, seconds"
    )
    stall_timeout_s: DelaySeconds = Field(
        8.0,
        description="A connected camera that gives no usable frame this long, "
        "seconds, is stalled and reconnected",
    )
    retry_min_s: DelaySeconds = Field(
        2.0, description="First delay before reconnecting a failed camera, seconds"
    )
    retry_max_s: DelaySeconds = Field(
        30.0, description="Longest delay between reconnects, seconds"
    )
    reconnect_above_s: DelaySeconds = Field(
        10.0,
        description="RTSP cameras sampled this rarely or rarer, seconds, connect "
        "for each sample instead of staying connected",
    )
    snapshot_dir: Path = Field(
        Path(".run/snapshots"),
        description="Snapshots go to <snapshot_dir>/<camera>/<date>/<time>.jpg",
    )
    snapshot_max_width: Annotated[int, Field(ge=0)] = Field(
        1280, description="Snapshots wider than this are scaled down, pixels; 0: never"
    )
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = Field(
        85, description="JPEG quality of snapshots, 1-100"
    )
    thumbnail_width: Annotated[int, Field(ge=16, le=1920)] = Field(
        320, description="Width of the latest snapshot's thumbnail, pixels"
    )
    retention_max_age_s: Annotated[float, Field(gt=0)] = Field(
        7 * 86_400.0, description="Snapshots older than this are deleted, seconds"
    )
    retention_max_bytes: Annotated[int, Field(ge=1_000_000)] = Field(
        10_000_000_000,
        description="Snapshots beyond this total size are deleted, oldest first, bytes",
    )
    store_every_sample: bool = Field(
        True,
        description="Keep every sample as a snapshot; false: only the latest one "
        "per camera",
    )
    frozen_motion: Annotated[float, Field(ge=0)] = Field(
        0.5,
        description="Motion (mean grey difference of smoothed copies, 0-255) "
        "below which a sample "
        "counts as the same picture again",
    )
    frozen_samples: Annotated[int, Field(ge=2)] = Field(
        3, description="This many samples in a row showing the same picture: frozen"
    )
    dark_brightness: Annotated[float, Field(ge=0, le=255)] = Field(
        16.0, description="Mean grey level below which the lens is black or covered"
    )
    uniform_contrast: Annotated[float, Field(ge=0)] = Field(
        6.0,
        description="Grey-level standard deviation below which the picture is "
        "flat: covered",
    )
    blur_sharpness: Annotated[float, Field(ge=0)] = Field(
        40.0,
        description="Sharpness (variance of the Laplacian on a 320-pixel-wide "
        "grey copy) below which the picture is blurred",
    )
    burst_interval_s: DelaySeconds = Field(
        1.0, description="Sampling interval during a burst (incident), seconds"
    )
    burst_duration_s: DelaySeconds = Field(
        300.0, description="How long a burst lasts unless asked otherwise, seconds"
    )
    status_topic_prefix: str = Field(
        "decor/cameras",
        description="State changes go to <prefix>/<camera>/status (retained) and "
        "<prefix>/<camera>/event; empty: not published",
    )
    health_measurement: str = Field(
        "camera_health", min_length=1, description="Measurement of health points"
    )
    frame_measurement: str = Field(
        "camera_frame", min_length=1, description="Measurement of frame points"
    )

    @model_validator(mode="after")
    def _backoff_in_order(self) -> CctvConfig:
        _check_order(self, "retry_min_s", "retry_max_s")
        return self

class SpoolConfig(_Section):
    """Where batches wait on disk while InfluxDB cannot take them."""

    enabled: bool = Field(
        True,
        description="Spool batches to disk while InfluxDB is unreachable, slow "
        "or failing; false: hold them in memory only",
    )
    path: Path = Field(
        Path(".run/spool"),
        description="Directory of the spooled batches, one file each",
    )
    max_bytes: Annotated[int, Field(ge=1024)] = Field(
        1_000_000_000,
        description="Total size of the spool, bytes; when full, the gateway "
        "takes MQTT messages only as fast as InfluxDB stores them",
    )


class GrafanaConfig(_Section):
    """Grafana provisioning: datasource, dashboards and alert rules (docs/grafana.md)."""

    url: str = Field(
        "http://127.0.0.1:3000",
        description="Grafana base URL that `decor grafana provision` pushes to",
    )
    token: str = Field(
        "", description="Grafana service-account token (glsa_...)", repr=False
    )
    locale: Literal["id", "en"] = Field(
        "id", description="Language of titles, panel names and units: id or en"
    )
    influx_url: str = Field(
        "",
        description="InfluxDB URL as Grafana reaches it; empty: [influx] url",
    )
    influx_version: Literal["1.x", "2.x"] = Field(
        "1.x",
        description="1.x: InfluxQL on [influx] database; 2.x: InfluxQL on the "
        "database a DBRP mapping gives [influx] bucket",
    )
    gateway_api_url: str = Field(
        "http://127.0.0.1:8080",
        description="Gateway HTTP API as the operators' browsers reach it, for "
        "camera snapshots (/cameras/{id}/snapshot.jpg)",
    )
    online_window_s: Annotated[float, Field(ge=1, le=86_400)] | None = Field(
        None,
        description="A device is online when it reported within this many "
        "seconds; unset: three times its profile's report interval",
    )
    reprovision: bool = Field(
        False,
        description="Let `decor run` provision Grafana at start and again when "
        "the registry changes (debounced)",
    )
    reprovision_debounce_s: DelaySeconds = Field(
        30.0,
        description="Quiet time after the last registry change before "
        "provisioning again, seconds",
    )


class MonitoringConfig(_Section):
    """The HTTP endpoints that Prometheus and a supervisor poll."""

    enabled: bool = Field(
        False,
        description="Serve /metrics (Prometheus), /healthz and /readyz from "
        "`decor run`",
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="Listen address; 0.0.0.0 in a container so probes reach it",
    )
    port: Annotated[int, Field(ge=0, le=65535)] = Field(
        9108, description="Listen TCP port; 0 picks a free one"
    )
    ready_max_spool_fill: Annotated[float, Field(gt=0, le=1)] = Field(
        0.9,
        description="While InfluxDB is unreachable, /readyz stays ready only "
        "while the spool holds less than this share of spool.max_bytes",
    )
    ready_max_spool_age_s: Annotated[float, Field(ge=0)] = Field(
        3600.0,
        description="While InfluxDB is unreachable, /readyz stays ready only "
        "while the spool's oldest point is younger than this, seconds; 0: no "
        "age limit",
    )


class AlertsConfig(_Section):
    """Alerts from the profiles' rules, kept in the registry database."""

    enabled: bool = Field(
        False,
        description="Judge readings by their profile's alert rules as they arrive; "
        "alerts are kept in [registry] database_url",
    )
    topic_prefix: str = Field(
        "decor/alerts",
        min_length=1,
        description="Each device's alert state is published, retained, to "
        "<topic_prefix>/<device_id>",
    )
    measurement: str = Field(
        "alert_events", min_length=1, description="InfluxDB measurement of events"
    )
    publish_interval_s: DelaySeconds = Field(
        1.0,
        description="How often the database is checked for alert events to "
        "publish that others recorded (acknowledgements), s",
    )
    outbox_path: Path = Field(
        Path(".run/notifications"),
        description="Directory where notifications wait, one file each, until "
        "delivered",
    )
    webhook_urls: list[str] = Field(
        [], description="URLs that receive each alert event as a JSON POST"
    )
    webhook_secret: str | None = Field(
        None,
        description="Signs each webhook body: header X-Decor-Signature is "
        "sha256=<HMAC-SHA256 of the body, hex>",
        repr=False,
    )
    grafana_url: str | None = Field(
        None, description="Grafana base URL for annotations; unset: none"
    )
    grafana_token: str | None = Field(
        None, description="Grafana service account token", repr=False
    )
    request_timeout_s: DelaySeconds = Field(
        10.0, description="Longest wait for a receiver's answer, s"
    )
    retry_min_s: DelaySeconds = Field(1.0, description="First retry delay, s")
    retry_max_s: DelaySeconds = Field(300.0, description="Longest retry delay, s")
    camera_status_topic: str = Field(
        "decor/cameras/+/status",
        description="Topic filter of the CCTV sampler's retained camera statuses; "
        "an offline camera, or one frozen, covered or blurred (tampered), raises "
        "an alert; empty: none",
    )

    @field_validator("topic_prefix")
    @classmethod
    def _plain_prefix(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("must be a topic without the wildcards + and #")
        return value.rstrip("/")

    @field_validator("webhook_urls")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            if not url.startswith(("http://", "https://")):
                raise _Invalid(f"{url!r} must start with http:// or https://", index)
        return value

    @model_validator(mode="after")
    def _retry_in_order(self) -> AlertsConfig:
        _check_order(self, "retry_min_s", "retry_max_s")
        return self


class LivenessConfig(_Section):
    """Online, late or offline: each device's state from its last message."""

    enabled: bool = Field(
        False, description="Track, publish and store each device's liveness"
    )
    topic_prefix: str = Field(
        "decor/liveness",
        min_length=1,
        description="Each state is published, retained, to <topic_prefix>/<id>",
    )
    measurement: str = Field(
        "device_liveness", min_length=1, description="InfluxDB measurement"
    )
    check_interval_s: DelaySeconds = Field(
        1.0, description="How often silences are measured, s"
    )
    snapshot_interval_s: DelaySeconds = Field(
        60.0,
        description="How often every state is written to InfluxDB even unchanged, "
        "so a dashboard's last-value query always finds one, s",
    )
    alert_offline: bool = Field(
        True, description="Raise a 'silent' alert when a device goes offline"
    )


class CommandsConfig(_Section):
    """Commands to devices, sent by the running gateway."""

    enabled: bool = Field(
        False,
        description="Send the commands queued in the registry database and "
        "follow them until confirmed or failed",
    )
    topic: str = Field(
        "city/{agency}/{device_type}/{device_id}/command",
        min_length=1,
        description="A device's command topic; {agency}, {device_type} and "
        "{device_id} are filled from the registry",
    )
    reply_topic: str = Field(
        "decor/replies/{device_id}",
        min_length=1,
        description="Where a device answers (sent as the MQTT 5 response topic "
        "and as reply_to in the JSON)",
    )
    timeout_s: DelaySeconds = Field(
        30.0, description="Longest wait for the device's answer once sent, s"
    )
    confirm_timeout_s: DelaySeconds = Field(
        120.0,
        description="Longest wait, after the answer, for the telemetry that "
        "shows the result (where the profile names it), s",
    )
    queue_timeout_s: DelaySeconds = Field(
        300.0,
        description="A command no gateway has sent after this long fails, s",
    )
    poll_interval_s: DelaySeconds = Field(
        0.5, description="How often the database is checked for new commands, s"
    )

    @field_validator("topic", "reply_topic")
    @classmethod
    def _device_topic(cls, value: str) -> str:
        problem = _device_topic_problem(value)
        if problem:
            raise ValueError(f"{value!r}: {problem}")
        return value


class GatewayConfig(_Section):
    """The whole configuration file."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level"
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines for people (text) or one JSON object per line "
        "(json); `decor run --log-format` overrides it",
    )
    # Built when a config is, not at import: their checks use helpers below.
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    decoding: DecodingConfig = DecodingConfig()
    quality: QualityConfig = QualityConfig()
    influx: InfluxConfig = Field(default_factory=InfluxConfig)
    spool: SpoolConfig = SpoolConfig()
    dead_letters: DeadLetterConfig = DeadLetterConfig()
    registry: RegistryConfig = RegistryConfig()
    grafana: GrafanaConfig = GrafanaConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    liveness: LivenessConfig = LivenessConfig()
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    subscriptions: list[SubscriptionConfig] = Field(
        min_length=1, description="Topic filters to read"
    )
    cctv: CctvConfig = Field(default_factory=CctvConfig)
    cameras: list[CameraConfig] = Field(
        default_factory=list, description="Cameras sampled by `decor cctv run`"
    )

    @field_validator("cameras")
    @classmethod
    def _camera_ids_unique(cls, value: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for index, camera in enumerate(value):
            if camera.id in seen:
                raise _Invalid(f"camera id {camera.id!r} is used twice", index, "id")
            seen.add(camera.id)
        return value


def _device_topic_problem(template: str) -> str | None:
    """Say what is wrong with a device topic template, or return None."""
    allowed = {"agency", "device_type", "device_id"}
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        return f"is not a template ({exc})"
    if "+" in template or "#" in template:
        return "must be one topic per device: no wildcards + or #"
    if "{device_id}" not in template:
        return "must contain {device_id}, else devices would share it"
    unknown = sorted(names - allowed)
    if unknown:
        return (
            "may only use {agency}, {device_type} and {device_id}, "
            f"got {unknown}"
        )
    return None


def _zone(name: str) -> str:
    """Check that a time zone name is in the zone database (empty is allowed)."""
    if name:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise _Invalid(
                f"unknown time zone {name!r} (use an IANA name such as Asia/Jakarta)"
            ) from None
    return name


def _protocol_hint(value: object) -> str:
    # MQTT 3.1.1 is protocol level 4 on the wire, hence "4".
    text = str(value).lower().removeprefix("mqtt").lstrip("v ")
    if text in ("3", "3.1", "311", "3.1.1", "4"):
        return ' (did you mean "3.1.1"?)'
    if text in ("5", "5.0", "50"):
        return ' (did you mean "5"?)'
    return ""


def _check_order(section: BaseModel, low: str, high: str) -> None:
    """Refuse a first delay longer than the longest one."""
    low_s, high_s = getattr(section, low), getattr(section, high)
    if low_s > high_s:
        raise _Invalid(f"must not exceed {high} ({high_s}), got {low_s}", low)


def _check_filter(text: str, *, shared: bool, key: int | None = None) -> None:
    """Refuse what a broker refuses as a topic filter, naming the rule broken."""
    where = () if key is None else (key,)
    problem = _filter_problem(text, shared)
    if problem:
        raise _Invalid(
            f"not a valid MQTT topic filter: {problem}, got {text!r}", *where
        )


def _filter_problem(text: str, shared: bool) -> str | None:
    if text.startswith(SHARE_PREFIX):
        if not shared:
            return "$share/ is for subscribing; here topics are matched"
        group, _, text = text[len(SHARE_PREFIX) :].partition("/")
        if not group or "+" in group or "#" in group:
            return "$share/<group>/<filter> needs a group name without + or #"
        if not text:
            return "$share/<group>/<filter> needs a filter after the group"
    if not text:
        return "it is empty"
    if "\0" in text:
        return "it holds a NUL character"
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return f"it is longer than {MAX_TOPIC_BYTES} bytes"
    levels = text.split("/")
    if "#" in text and (levels[-1] != "#" or text.count("#") > 1):
        return "# may only be the whole last level (city/#)"
    if any("+" in level and level != "+" for level in levels):
        return "+ may only be a whole level (city/+/telemetry)"
    return None


def _parse_template(text: str) -> TopicTemplate:
    """Compile a topic template, refusing what gives no filter or no tag."""
    # Imported here: gateway.decoding imports this module.
    from gateway.decoding.topics import TopicTemplate

    try:
        template = TopicTemplate.parse(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    if RESERVED_NAME in template.tag_names:
        raise _Invalid(
            f"level {{{RESERVED_NAME}}} of topic template {text!r} names a tag "
            f"{RESERVED_NAME!r}, which InfluxDB refuses; use another name"
        )
    problem = _filter_problem(template.topic_filter, shared=False)
    if problem:
        raise _Invalid(
            f"topic template {text!r} gives topic filter "
            f"{template.topic_filter!r}, which is not valid: {problem}"
        )
    return template


def _check_topic_covers(topic: str, template: str, template_filter: str) -> None:
    """Refuse a topic and a template that describe different topics.

    Either the topic delivers every topic the template fits (extra ones are
    rejected as unmatched_topic, or left out by exclude_topics), or the topic
    narrows the template (every message fits). Anything else is a mistake.
    """
    if not topic:
        return
    topic_filter = topic
    if topic.startswith(SHARE_PREFIX):
        topic_filter = topic[len(SHARE_PREFIX) :].partition("/")[2]
    if _covers(topic_filter, template_filter) or _covers(template_filter, topic_filter):
        return
    raise _Invalid(
        f"topic {topic!r} and topic_template {template!r} (filter "
        f"{template_filter!r}) describe different topics, and a message must fit "
        f"both to be stored; make topic cover {template_filter!r} or leave it empty",
        "topic",
    )


def _covers(outer: str, inner: str) -> bool:
    """Tell whether every topic filter `inner` matches, `outer` matches too."""
    outer_levels, inner_levels = outer.split("/"), inner.split("/")
    # A leading wildcard never matches a topic starting with $ (MQTT 4.7.2).
    if outer_levels[0] in ("+", "#") and inner_levels[0].startswith("$"):
        return False
    for index, level in enumerate(outer_levels):
        if level == "#":
            return True
        if index >= len(inner_levels) or inner_levels[index] == "#":
            return False
        if level not in ("+", inner_levels[index]):
            return False
    return len(outer_levels) == len(inner_levels)


def _check_name_template(text: str, names: tuple[str, ...], option: str) -> None:
    """Refuse a measurement or field name that no topic could make storable."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        raise _Invalid(
            f"{text!r} has an unbalanced {{ or }}: write {{name}} for a topic level "
            "and {{ or }} for a literal brace",
            option,
        ) from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not _PLACEHOLDER.match(name) or spec or conversion:
            raise _Invalid(
                f"{text!r} may only use plain {{name}} placeholders, got "
                f"{{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}}",
                option,
            )
        if name not in names:
            raise _Invalid(
                f"uses {{{name}}}, which the topic template does not capture"
                f" (captures: {', '.join(sorted(names)) or 'nothing'})",
                option,
            )
    _check_fixed_name(text, option)


def _check_fixed_name(text: str, option: str) -> None:
    # InfluxDB skips leading tabs and NULs, then reads a line starting with #
    # as a comment, and refuses a field named time.
    if option == "measurement" and text.lstrip("\t\0").startswith("#"):
        raise _Invalid(
            f"{text!r} starts with #, which InfluxDB reads as a comment line, "
            "dropping every point",
            option,
        )
    if option == "field" and text == RESERVED_NAME:
        raise _Invalid(
            f"{text!r} is reserved by InfluxDB, which would drop every value; "
            "use another field name",
            option,
        )


def _check_url(url: str) -> None:
    """Refuse an InfluxDB URL the HTTP client cannot reach a server with."""
    expected = "must be an http:// or https:// URL with a host"
    if any(char.isspace() for char in url):
        raise _Invalid(f"{expected}, such as http://127.0.0.1:8086, got {url!r}")
    if "://" not in url:
        raise _Invalid(f"{expected} (write 'http://{url}'), got {url!r}")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _Invalid(
            f"{expected}, such as http://127.0.0.1:8086, got {url!r}"
        ) from None
    if parts.username is not None or parts.password is not None:
        # Not shown: the URL holds a password.
        raise _Invalid(
            "must not hold credentials: set username and password (v1) or "
            "token (v2) instead"
        )
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"{expected}, such as http://127.0.0.1:8086, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise _Invalid(f"port must be 1-65535, got {url!r}")
    if parts.query or parts.fragment:
        raise _Invalid(
            f"must not have a ?query or #fragment: the write path is added "
            f"to it, got {url!r}"
        )


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read a TOML file, apply DECOR_* overrides and validate the result."""
    environ = os.environ if environ is None else environ
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text (byte {exc.start} cannot be decoded)", source=source
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=source) from None
    from_env = _apply_environment(raw, environ)
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        raise _explain(exc, source, from_env) from None


def _apply_environment(
    raw: dict[str, Any], environ: Mapping[str, str]
) -> dict[str, str]:
    """Overlay DECOR_A__B=value variables onto the parsed file, in place.

    Returns the variable name that set each key path, e.g. "mqtt.port".
    """
    applied: dict[str, str] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_SEPARATOR)]
        if not all(path):
            continue
        _check_env_path(path, name)
        node: Any = raw
        for level in path[:-1]:
            if isinstance(node, list) and level.isdigit() and int(level) < len(node):
                node = node[int(level)]
                continue
            if not isinstance(node, dict):
                raise ConfigError(
                    f"cannot override inside a {type(node).__name__}",
                    key=".".join(path),
                    source=f"environment variable {name}",
                )
            node = node.setdefault(level, {})
        last = path[-1]
        value = _parse_env_value(text, _holds_text(_annotation_at(path)))
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(
                "cannot be overridden here",
                key=".".join(path),
                source=f"environment variable {name}",
            )
        applied[".".join(path)] = name
    return applied


def _check_env_path(path: Sequence[str], name: str) -> None:
    """Refuse a variable whose path goes on past a key holding one value."""
    for end in range(1, len(path)):
        annotation = _annotation_at(path[:end])
        if annotation is None or _is_table(annotation):
            continue
        variable = ENV_PREFIX + ENV_SEPARATOR.join(path[:end]).upper()
        raise ConfigError(
            f"{'.'.join(path[:end])} holds one value, not a table, so it has no "
            f"key {path[end]!r} (set {variable} instead)",
            key=".".join(path),
            source=f"environment variable {name}",
        )


def _parse_env_value(text: str, holds_text: bool) -> Any:
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    # A text key keeps what was written: TOML would turn a password 12345678
    # into an int, and a tag value 2024-06-01 into a date. "quoted" is still
    # unquoted.
    if holds_text and not isinstance(value, str):
        return text
    return value


def _explain(
    exc: ValidationError, source: str, from_env: Mapping[str, str]
) -> ConfigError:
    """Turn pydantic's first error into one line naming the key and the reason."""
    error = exc.errors()[0]
    cause = error.get("ctx", {}).get("error")
    loc = (*error["loc"], *cause.key) if isinstance(cause, _Invalid) else error["loc"]
    key = ".".join(str(p) for p in loc)
    # The variable may have set this key, a table or list around it, or a key
    # inside it (DECOR_MQTT__PORT__X makes port a table).
    for env_key, name in from_env.items():
        if _on_same_path(key, env_key):
            source = f"{source} (overridden by {name})"
            break
    field = _field_at(loc)
    if error["type"] == "extra_forbidden":
        reason = "unknown key" + _did_you_mean(loc)
    elif error["type"] == "missing":
        reason = "required key is missing"
    elif isinstance(cause, _Invalid):
        reason = str(cause)
    elif field is not None and field.repr is False:
        # Secrets (passwords, tokens) are never shown, not even when invalid.
        reason = error["msg"]
    else:
        message = error["msg"].removeprefix("Value error, ")
        reason = f"{message}, got {error.get('input')!r}"
    more = len(exc.errors()) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(reason, key=key, source=source)


def _on_same_path(key: str, env_key: str) -> bool:
    return (
        key == env_key or key.startswith(env_key + ".") or env_key.startswith(key + ".")
    )


def _did_you_mean(loc: Sequence[int | str]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: Sequence[int | str]) -> type[BaseModel] | None:
    """Return the section a key path leads to, e.g. TlsConfig for mqtt.tls."""
    annotation = _annotation_at(path)
    return annotation if _is_model(annotation) else None


def _field_at(path: Sequence[int | str]) -> FieldInfo | None:
    """Return the model field a key path names, or None if it names none."""
    if not path or isinstance(path[-1], int):
        return None
    model = _model_at(path[:-1])
    return model.model_fields.get(path[-1]) if model else None


def _annotation_at(path: Sequence[int | str]) -> Any:
    """Return the type a key path holds (subscriptions.0.tags.site: str), or None."""
    annotation: Any = GatewayConfig
    for level in path:
        if _is_model(annotation):
            field = annotation.model_fields.get(str(level))
            annotation = field.annotation if field else None
        elif get_origin(annotation) is list and str(level).isdigit():
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        else:
            return None
        annotation = _unwrap(annotation)
    return annotation


def _unwrap(annotation: Any) -> Any:
    """Return the type inside Annotated[...] and X | None."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        kinds = [kind for kind in get_args(annotation) if kind is not NoneType]
        if len(kinds) == 1:
            return _unwrap(kinds[0])
    return annotation


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_table(annotation: Any) -> bool:
    """Tell whether a type holds keys or elements an override can reach into."""
    return _is_model(annotation) or get_origin(annotation) in (list, dict)


def _holds_text(annotation: Any) -> bool:
    """Tell whether a type takes text only: str, a path, or a choice of words."""
    if get_origin(annotation) is Literal:
        return all(isinstance(choice, str) for choice in get_args(annotation))
    return annotation in (str, Path)
