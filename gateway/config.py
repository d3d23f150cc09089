"""Load, override and validate the gateway's configuration.

The configuration is one TOML file. Any key can be overridden by an environment
variable named ``DECOR_`` + the key path in capitals, levels joined by ``__``:
``DECOR_MQTT__HOST=broker.local`` sets ``[mqtt] host``. Values from the
environment are parsed as TOML values where they parse (``1883``, ``true``,
``["a", "b"]``) and taken as plain strings otherwise; a key that holds text
(a password, a client id, ``protocol``) takes the value as written, so
``DECOR_MQTT__PASSWORD=12345678`` stays a string.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
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

__all__ = [
    "DeadLetterConfig",
    "DecodingConfig",
    "GatewayConfig",
    "InfluxConfig",
    "MqttConfig",
    "SubscriptionConfig",
    "TlsConfig",
    "load_config",
]

ENV_PREFIX = "DECOR_"
ENV_SEPARATOR = "__"

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


class _Section(BaseModel):
    # Unknown keys are errors: a misspelled key must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Section):
    """TLS towards the broker."""

    enabled: bool = Field(False, description="Connect to the broker over TLS")
    ca_file: Path | None = Field(None, description="CA bundle; system CAs if unset")
    cert_file: Path | None = Field(None, description="Client certificate (PEM)")
    key_file: Path | None = Field(None, description="Client private key (PEM)")
    insecure: bool = Field(
        False, description="Skip hostname and certificate checks (testing only)"
    )


class MqttConfig(_Section):
    """The broker the gateway reads telemetry from."""

    host: str = Field("127.0.0.1", min_length=1, description="Broker host name")
    port: Port = Field(1883, description="Broker TCP port")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version")
    client_id: str = Field(
        "decor-gateway",
        min_length=1,
        max_length=64,
        description="Stable client id, so the broker can keep this gateway's session",
    )
    username: str | None = Field(None, description="Broker user name")
    password: str | None = Field(None, description="Broker password", repr=False)
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = Field(
        30, description="Keepalive interval, seconds"
    )
    clean_start: bool = Field(
        True, description="Start a fresh session at each connect (MQTT 5 clean start)"
    )
    session_expiry_s: Annotated[int, Field(ge=0)] = Field(
        0, description="How long the broker keeps the session after a disconnect, s"
    )
    reconnect_min_s: PositiveSeconds = Field(
        1.0, description="First reconnect delay, seconds"
    )
    reconnect_max_s: PositiveSeconds = Field(
        60.0, description="Longest reconnect delay, seconds"
    )
    tls: TlsConfig = TlsConfig()


class SubscriptionConfig(_Section):
    """One topic filter, how to decode its payloads and how to name the points."""

    topic: str = Field(
        "",
        description="MQTT topic filter; derived from topic_template when empty",
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

    @model_validator(mode="after")
    def _topic_or_template(self) -> SubscriptionConfig:
        if not self.topic and not self.topic_template:
            raise ValueError("needs a topic or a topic_template")
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


class InfluxConfig(_Section):
    """Where points are written, and how they are batched."""

    url: str = Field("http://127.0.0.1:8086", description="InfluxDB base URL")
    api: Literal["auto", "v1", "v2"] = Field(
        "auto", description="Write API; auto asks the server's /ping"
    )
    database: str = Field("decor", description="v1: database")
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
    flush_interval_s: PositiveSeconds = Field(
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
    timeout_s: PositiveSeconds = Field(10.0, description="HTTP timeout of one write, s")
    retry_min_s: PositiveSeconds = Field(0.5, description="First retry delay, seconds")
    retry_max_s: PositiveSeconds = Field(
        30.0, description="Longest retry delay, seconds"
    )


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


class GatewayConfig(_Section):
    """The whole configuration file."""

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level"
    )
    mqtt: MqttConfig = MqttConfig()
    decoding: DecodingConfig = DecodingConfig()
    influx: InfluxConfig = InfluxConfig()
    dead_letters: DeadLetterConfig = DeadLetterConfig()
    subscriptions: list[SubscriptionConfig] = Field(
        min_length=1, description="Topic filters to read"
    )


def _zone(name: str) -> str:
    """Check that a time zone name is in the zone database (empty is allowed)."""
    if name:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {name!r} (use an IANA name such as Asia/Jakarta)"
            ) from None
    return name


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
        value = _parse_env_value(text, _holds_text(_field_at(path)))
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


def _parse_env_value(text: str, holds_text: bool) -> Any:
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    # A text key keeps what was written: TOML would turn 12345678 into an int
    # and 5 into a number that protocol = "5" refuses. "quoted" is still unquoted.
    if holds_text and not isinstance(value, str):
        return text
    return value


def _explain(
    exc: ValidationError, source: str, from_env: Mapping[str, str]
) -> ConfigError:
    """Turn pydantic's first error into one line naming the key and the reason."""
    error = exc.errors()[0]
    key = ".".join(str(p) for p in error["loc"])
    # The variable may have set this key or a table or list around it.
    for env_key, name in from_env.items():
        if key == env_key or key.startswith(env_key + "."):
            source = f"{source} (overridden by {name})"
            break
    field = _field_at(error["loc"])
    if error["type"] == "extra_forbidden":
        reason = "unknown key" + _did_you_mean(error["loc"])
    elif error["type"] == "missing":
        reason = "required key is missing"
    elif field is not None and field.repr is False:
        # Secrets (passwords, tokens) are never shown, not even when invalid.
        reason = error["msg"]
    else:
        reason = f"{error['msg']}, got {error.get('input')!r}"
    more = len(exc.errors()) - 1
    if more:
        reason += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(reason, key=key, source=source)


def _did_you_mean(loc: Sequence[int | str]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(path: Sequence[int | str]) -> type[BaseModel] | None:
    """Return the section a key path leads to, e.g. TlsConfig for mqtt.tls."""
    model: type[BaseModel] | None = GatewayConfig
    for level in path:
        if model is None:
            return None
        if isinstance(level, int) or level.isdigit():
            continue  # an index into [[subscriptions]]: same section type
        field = model.model_fields.get(level)
        if field is None:
            return None
        model = _section_type(field.annotation)
    return model


def _field_at(path: Sequence[int | str]) -> FieldInfo | None:
    """Return the model field a key path names, or None if it names none."""
    if not path or isinstance(path[-1], int):
        return None
    model = _model_at(path[:-1])
    return model.model_fields.get(path[-1]) if model else None


def _section_type(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _holds_text(field: FieldInfo | None) -> bool:
    """Tell whether a field takes text only: str, a path, or a choice of words."""
    if field is None:
        return False
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        return all(isinstance(choice, str) for choice in get_args(annotation))
    kinds = [annotation]
    if get_origin(annotation) in (Union, UnionType):
        kinds = [kind for kind in get_args(annotation) if kind is not NoneType]
    return all(kind in (str, Path) for kind in kinds)
