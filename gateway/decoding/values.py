"""Turn payload values into field values of one stable type each.

A field keeps one type for its whole life: InfluxDB refuses a float into an
integer field ("field type conflict"). So undeclared numbers are always
floats, and a declared type is enforced strictly: a value that does not fit
is left out with its reason, never truncated or stored as another type.

JSON is read leniently where one value is bad, so that only that value is left
out: NaN/Infinity tokens and numbers beyond float range (``1e400``) become
non-finite floats (``non_finite``); integers beyond 64 bits become
`LongInteger`s (``out_of_range`` unless declared string or float); a UTF-8
byte order mark is skipped. Strings and keys longer than InfluxDB stores are
left out as ``too_long``.

Known limitation: a JSON object that repeats a key (``{"v": 1, "v": "one"}``)
is read as if only its last value were there; the earlier values are dropped
without a dead letter or a count. Finding repeated keys means reading every
payload again with a slower parser, three to seven times the cost of reading
it (measured), so it is not done.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from gateway.decoding.base import FieldReject
from gateway.errors import PayloadError
from gateway.points import (
    INT64_MAX,
    INT64_MIN,
    MAX_KEY_BYTES,
    MAX_STRING_FIELD_BYTES,
    FieldValue,
    Unsigned,
)

__all__ = [
    "FieldTyper",
    "LongInteger",
    "flatten",
    "get_path",
    "load_json",
    "load_json_object",
]

KEY_SEPARATOR = "_"
MAX_NESTING_DEPTH = 16
UINT64_MAX = 2**64 - 1
UTF8_BOM = b"\xef\xbb\xbf"
# A field key no point can carry: with a one-letter measurement and no tags,
# InfluxDB allows its series key (measurement, 4 bytes, field key) 65,535 bytes.
MAX_FIELD_KEY_BYTES = MAX_KEY_BYTES - 5
# Below these many characters a text cannot exceed its limit in UTF-8 bytes
# (four bytes a character at most; two once a key's separators are escaped).
_SAFE_STRING_CHARS = MAX_STRING_FIELD_BYTES // 4
_SAFE_KEY_CHARS = MAX_FIELD_KEY_BYTES // 4
# Characters line protocol escapes in a field key, each with one more byte.
_ESCAPED_IN_KEYS = (",", "=", " ", "\n", "\r")
# A JSON string (skipped whole, even if unterminated, so the scan stays linear),
# or a bare NaN / nan / -nan / inf / Infinity token outside strings.
_NON_FINITE_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"?|(?<![\w.])(-?)(nan|inf(?:inity)?)(?![\w.])',
    re.IGNORECASE | re.DOTALL,
)
# orjson reads an integer beyond 64 bits as the nearest float. Such an integer
# has 20 digits or more, or is negative with 19; finding none of those
# (digits mapped to "0" first, which is quick) spares a second, exact reading.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 20
_LONG_NEGATIVE_RUN = b"-" + b"0" * 19
# The most characters a JSON integer within 64 bits has ("-" included).
_INT64_CHARS = 20
# A UTF-16 escape of a surrogate: only these can make a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_TRUE_TEXT = frozenset({"true", "on", "yes", "1"})
_FALSE_TEXT = frozenset({"false", "off", "no", "0"})


class LongInteger(float):
    """An integer beyond 64 bits, as the nearest float; `digits` keeps its text.

    Code that reads numbers sees a float, as it would from orjson; `FieldTyper`
    leaves it out as ``out_of_range`` unless the field is declared string (its
    digits are kept) or float.
    """

    digits: str

    def __new__(cls, digits: str) -> LongInteger:
        # float() of any length of digits gives a float, infinity at worst.
        number = super().__new__(cls, digits)
        number.digits = digits
        return number

    def __repr__(self) -> str:
        return self.digits


def load_json(payload: bytes, topic: str) -> Any:
    """Parse a JSON payload, leniently where a single value is unusable.

    A leading UTF-8 byte order mark is skipped. NaN/Infinity tokens and numbers
    beyond float range become non-finite floats; integers beyond 64 bits become
    `LongInteger`s. Raises PayloadError("invalid_json") for anything else that
    is not JSON, or that is not UTF-8 text.
    """
    # Some Windows tools and .NET firmware start UTF-8 text with a BOM.
    if payload.startswith(UTF8_BOM):
        payload = payload[len(UTF8_BOM) :]
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return _load_leniently(payload, topic, str(exc))
    shape = payload.translate(_DIGITS_AS_ZERO)
    if _LONG_RUN not in shape and _LONG_NEGATIVE_RUN not in shape:
        return document
    try:
        return _load_leniently(payload, topic, "")
    except PayloadError:
        # The stdlib nests less deeply than orjson; keep what orjson read.
        return document


def load_json_object(payload: bytes, topic: str, what: str) -> dict[str, Any]:
    """Parse a JSON payload that must be an object; `what` names it in the error.

    Raises PayloadError("not_an_object", "expected <what>, got <type>") for any
    other JSON value, and whatever load_json raises.
    """
    document = load_json(payload, topic)
    if not isinstance(document, dict):
        raise PayloadError(
            "not_an_object",
            f"expected {what}, got {type(document).__name__}",
            topic=topic,
        )
    return document


def get_path(document: Any, path: str) -> Any:
    """Return the value at a dotted path ("params.ts"), or None if absent."""
    node = document
    for key in path.split("."):
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def flatten(
    value: Any, rejects: list[FieldReject], prefix: str = ""
) -> Iterator[tuple[str, Any]]:
    """Yield (field name, leaf value) pairs; nested keys joined with ``_``.

    Array elements become ``<key>_<index>``. Empty keys and nesting past
    MAX_NESTING_DEPTH are reported in `rejects` and skipped.
    """
    stack: list[tuple[str, Any, int]] = [(prefix, value, 0)]
    while stack:
        key, node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth >= MAX_NESTING_DEPTH:
                rejects.append(FieldReject(key, "too_deep", "nested too deeply"))
                continue
            items = node.items() if isinstance(node, dict) else enumerate(node)
            children = []
            for child_key, child in items:
                if child_key == "":
                    rejects.append(FieldReject(key, "empty_key", "a key is empty"))
                    continue
                name = f"{key}{KEY_SEPARATOR}{child_key}" if key else str(child_key)
                children.append((name, child, depth + 1))
            # Reversed onto the stack, so fields keep the payload's order.
            stack.extend(reversed(children))
        else:
            yield key, node


class FieldTyper:
    """Give each field its declared type, or the default one; say why not."""

    def __init__(self, declared: dict[str, str] | None = None) -> None:
        self._declared = dict(declared or {})

    def declared(self, name: str) -> str | None:
        """Return the declared type of a field, if any."""
        return self._declared.get(name)

    def convert(self, name: str, value: Any) -> FieldValue | FieldReject:
        """Return the stored value of one field, or a FieldReject saying why not."""
        key_size = _stored_key_bytes(name)
        if key_size > MAX_FIELD_KEY_BYTES:
            return FieldReject(
                _shortened(name),
                "too_long",
                f"key is {key_size} bytes; InfluxDB allows at most "
                f"{MAX_FIELD_KEY_BYTES}",
            )
        if value is None:
            return FieldReject(name, "null_value", "value is null")
        if isinstance(value, float) and not math.isfinite(value):
            if not isinstance(value, LongInteger):
                return FieldReject(
                    name, "non_finite", f"value is {value}, which InfluxDB cannot store"
                )
        try:
            converted = self._typed(name, value)
        except _NotConvertible as exc:
            return FieldReject(name, exc.reason, f"{_shown(value)} {exc.detail}")
        if isinstance(converted, str) and len(converted) > _SAFE_STRING_CHARS:
            size = len(converted.encode("utf-8", "surrogatepass"))
            if size > MAX_STRING_FIELD_BYTES:
                return FieldReject(
                    name,
                    "too_long",
                    f"value is a string of {size} bytes; InfluxDB stores at most "
                    f"{MAX_STRING_FIELD_BYTES}",
                )
        return converted

    def _typed(self, name: str, value: Any) -> FieldValue | FieldReject:
        kind = self._declared.get(name)
        if isinstance(value, LongInteger):
            return _long_integer(value, kind)
        if kind is None:
            return _default_type(name, value)
        return _CONVERTERS[kind](value)


class _NotConvertible(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def _default_type(name: str, value: Any) -> FieldValue | FieldReject:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int) and not INT64_MIN <= value <= UINT64_MAX:
        raise _NotConvertible("out_of_range", "is an integer beyond 64 bits")
    if isinstance(value, int | float):
        return float(value)
    return FieldReject(name, "unsupported_value", f"unsupported {type(value).__name__}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _NotConvertible("wrong_type", "is a boolean, declared float")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise _NotConvertible("out_of_range", "is beyond float range") from None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _NotConvertible("not_a_number", "is not a number") from None
        if not math.isfinite(number):
            raise _NotConvertible("non_finite", "cannot be stored by InfluxDB")
        return number
    raise _NotConvertible("wrong_type", f"is a {type(value).__name__}, declared float")


def _exact_integer(value: Any, declared: str) -> int:
    if isinstance(value, bool):
        raise _NotConvertible("wrong_type", f"is a boolean, declared {declared}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise _NotConvertible("not_an_integer", "is not an integer")
        return int(value)
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise _NotConvertible("not_a_number", "is not a number") from None
        if not number.is_finite() or number != number.to_integral_value():
            raise _NotConvertible("not_an_integer", "is not an integer")
        return int(number)
    raise _NotConvertible(
        "wrong_type", f"is a {type(value).__name__}, declared {declared}"
    )


def _to_integer(value: Any) -> int:
    number = _exact_integer(value, "integer")
    if not INT64_MIN <= number <= INT64_MAX:
        raise _NotConvertible("out_of_range", "is out of int64 range")
    return number


def _to_unsigned(value: Any) -> Unsigned:
    number = _exact_integer(value, "unsigned")
    if not 0 <= number <= UINT64_MAX:
        raise _NotConvertible("out_of_range", "is out of uint64 range")
    return Unsigned(number)


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
    raise _NotConvertible("wrong_type", "is not a boolean")


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # Every digit, also of an integer beyond the 64 bits orjson writes.
        return int.__repr__(value)
    if isinstance(value, bool | float):
        # The JSON spelling, so true stays "true" and 1e3 stays a number's text.
        return orjson.dumps(value).decode()
    raise _NotConvertible("wrong_type", f"is a {type(value).__name__}, declared string")


_CONVERTERS: dict[str, Callable[[Any], FieldValue]] = {
    "float": _to_float,
    "integer": _to_integer,
    "unsigned": _to_unsigned,
    "boolean": _to_boolean,
    "string": _to_string,
}


def _long_integer(value: LongInteger, kind: str | None) -> FieldValue:
    if kind == "string":
        return value.digits
    if kind == "float" and math.isfinite(value):
        return float(value)
    digits = len(value.digits.lstrip("-"))
    raise _NotConvertible(
        "out_of_range",
        f"is an integer of {digits} digits, beyond 64 bits; declare the field "
        "string to keep its digits",
    )


def _shown(value: Any) -> str:
    return repr(value)[:64]


def _shortened(name: str) -> str:
    return name if len(name) <= 64 else f"{name[:64]}…"


def _stored_key_bytes(name: str) -> int:
    """Return about how many bytes a field key takes in line protocol.

    Escaping adds a byte for each comma, equals sign, space, newline and
    carriage return. Short keys are not measured: they cannot be too long.
    """
    if len(name) <= _SAFE_KEY_CHARS:
        return 0
    size = len(name.encode("utf-8", "surrogatepass"))
    return size + sum(name.count(char) for char in _ESCAPED_IN_KEYS)


def _load_leniently(payload: bytes, topic: str, refusal: str) -> Any:
    """Parse JSON with the stdlib parser, which reads what orjson refuses.

    `refusal` is orjson's reason for refusing the payload ("" if it did not),
    given as the detail when nesting is too deep for the stdlib parser.
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(
            "invalid_json", f"payload is not UTF-8 text (byte {exc.start})", topic=topic
        ) from None

    # Firmware sends an unavailable reading as NaN, nan, -nan or inf, which JSON
    # has no token for: spell them as the stdlib parser reads them.
    text = _NON_FINITE_TOKEN.sub(_standard_token, text)
    try:
        document = json.loads(text, parse_int=_integer)
    except ValueError as exc:
        # This parser's reason: orjson's may name what was just accepted.
        raise PayloadError("invalid_json", str(exc), topic=topic) from None
    except RecursionError:
        raise PayloadError("invalid_json", refusal, topic=topic) from None

    # Unlike orjson, the stdlib parser lets an escaped lone surrogate through.
    if _SURROGATE_ESCAPE.search(text) and _holds_lone_surrogate(document):
        raise PayloadError(
            "invalid_json",
            "a string holds an escaped lone surrogate (\\ud800-\\udfff), which "
            "UTF-8 cannot carry",
            topic=topic,
        )
    return document


def _standard_token(match: re.Match[str]) -> str:
    if match.group(2) is None:
        return match.group(0)
    if match.group(2).lower() == "nan":
        return "NaN"
    return "-Infinity" if match.group(1) else "Infinity"


def _integer(text: str) -> int | LongInteger:
    """Read a JSON integer as an int, or as a LongInteger beyond 64 bits."""
    if len(text) <= _INT64_CHARS:
        number = int(text)
        if INT64_MIN <= number <= UINT64_MAX:
            return number
    # Longer texts never reach int(), which refuses more than 4300 digits.
    return LongInteger(text)


def _holds_lone_surrogate(document: Any) -> bool:
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:
        # Too deep to check here; encode_line refuses such a point anyway.
        return False
    return False
