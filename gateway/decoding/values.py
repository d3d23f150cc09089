"""Turn payload values into field values of one stable type each.

A field keeps one type for its whole life: InfluxDB refuses a float into an
integer field ("field type conflict"). So undeclared numbers are always
floats, and a declared type is enforced strictly: a value that does not fit
is left out with its reason, never truncated or stored as another type.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from gateway.decoding.base import FieldReject
from gateway.errors import PayloadError
from gateway.points import INT64_MAX, INT64_MIN, FieldValue, Unsigned

__all__ = [
    "FieldTyper",
    "flatten",
    "get_path",
    "load_json",
]

KEY_SEPARATOR = "_"
MAX_NESTING_DEPTH = 16
UINT64_MAX = 2**64 - 1
# A JSON string (skipped whole, even if unterminated, so the scan stays linear),
# or a bare NaN / nan / -nan / inf / Infinity token outside strings.
_NON_FINITE_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"?|(?<![\w.])(-?)(nan|inf(?:inity)?)(?![\w.])',
    re.IGNORECASE | re.DOTALL,
)
_TRUE_TEXT = frozenset({"true", "on", "yes", "1"})
_FALSE_TEXT = frozenset({"false", "off", "no", "0"})


def load_json(payload: bytes, topic: str) -> Any:
    """Parse a JSON payload; NaN/Infinity tokens become non-finite floats.

    Raises PayloadError("invalid_json") for anything else that is not JSON.
    """
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        error = PayloadError("invalid_json", str(exc), topic=topic)

    # Firmware sends an unavailable reading as NaN, nan, -nan or inf, which JSON
    # has no token for, so orjson refuses the whole document. Read those tokens
    # as non-finite floats instead; only those fields are then left out.
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise error from None
    found = 0

    def standard_token(match: re.Match[str]) -> str:
        nonlocal found
        if match.group(2) is None:
            return match.group(0)
        found += 1
        if match.group(2).lower() == "nan":
            return "NaN"
        return "-Infinity" if match.group(1) else "Infinity"

    text = _NON_FINITE_TOKEN.sub(standard_token, text)
    if not found:
        raise error from None
    try:
        document = json.loads(text)
        # The stdlib parser is laxer than orjson (lone surrogates, integers past
        # 64 bits); refuse here whatever orjson would have refused.
        orjson.dumps(document)
    except (ValueError, TypeError, RecursionError):
        raise error from None
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
        if value is None:
            return FieldReject(name, "null_value", "value is null")
        if isinstance(value, float) and not math.isfinite(value):
            return FieldReject(
                name, "non_finite", f"value is {value}, which InfluxDB cannot store"
            )
        kind = self._declared.get(name)
        try:
            if kind is None:
                return _default_type(name, value)
            return _CONVERTERS[kind](value)
        except _NotConvertible as exc:
            return FieldReject(name, exc.reason, f"{_shown(value)} {exc.detail}")


class _NotConvertible(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


def _default_type(name: str, value: Any) -> FieldValue | FieldReject:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return FieldReject(name, "unsupported_value", f"unsupported {type(value).__name__}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _NotConvertible("wrong_type", "is a boolean, declared float")
    if isinstance(value, int | float):
        return float(value)
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
    if isinstance(value, bool | int | float):
        # The JSON spelling, so true stays "true" and 1e3 stays a number's text.
        return orjson.dumps(value).decode()
    raise _NotConvertible("wrong_type", f"is a {type(value).__name__}, declared string")


_CONVERTERS = {
    "float": _to_float,
    "integer": _to_integer,
    "unsigned": _to_unsigned,
    "boolean": _to_boolean,
    "string": _to_string,
}


def _shown(value: Any) -> str:
    return repr(value)[:64]
