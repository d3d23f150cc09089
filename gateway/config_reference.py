"""The configuration reference, written from the configuration model itself.

`decor config reference > docs/configuration.md` renders every key of
`GatewayConfig`: its table, type, limits, default, environment variable and
description. A test compares the committed file with a fresh rendering, so
the documentation cannot drift from the code.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from gateway.config import ENV_PREFIX, ENV_SEPARATOR, GatewayConfig

__all__ = ["config_app", "render_reference"]

REFERENCE_PATH = Path("docs/configuration.md")
_TYPE_NAMES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "text",
    Path: "path",
}
_BOUNDS = (
    ("ge", "≥"),
    ("gt", ">"),
    ("le", "≤"),
    ("lt", "<"),
    ("min_length", "length ≥"),
    ("max_length", "length ≤"),
)

config_app = typer.Typer(
    help="Show what the configuration can hold.", no_args_is_help=True
)


@config_app.command("reference")
def reference() -> None:
    """Print the configuration reference (Markdown) generated from the model."""
    typer.echo(render_reference(), nl=False)


def render_reference() -> str:
    """Return the Markdown reference of every configuration key."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the configuration model (`gateway/config.py`) by",
        "`decor config reference > docs/configuration.md`; do not edit it by",
        "hand. `tests/test_config_reference.py` fails when this file and the",
        "model differ.",
        "",
        "The configuration is one TOML file (`decor run --config FILE`). Any key",
        f"can be set by an environment variable: `{ENV_PREFIX}` and the key path in",
        f"capitals, levels joined by `{ENV_SEPARATOR}`; list items by their index",
        f"(`{ENV_PREFIX}SUBSCRIPTIONS{ENV_SEPARATOR}0{ENV_SEPARATOR}QOS`). A value",
        "from the environment is read as a TOML value where it parses as one,",
        "and as text otherwise. An unknown key or a bad value stops the gateway",
        "with one line naming the key. Keys marked *secret* are never logged.",
        "",
    ]
    for section in _sections(GatewayConfig, (), ()):
        lines.extend(section)
    return "\n".join(lines).rstrip("\n") + "\n"


def _sections(
    model: type[BaseModel], path: tuple[str, ...], env: tuple[str, ...]
) -> Iterator[list[str]]:
    """Yield one Markdown section per table, the model's own keys first."""
    plain: list[tuple[str, FieldInfo]] = []
    nested: list[tuple[str, type[BaseModel], bool]] = []
    for name, info in model.model_fields.items():
        inner, is_list = _section_type(info.annotation)
        if inner is None:
            plain.append((name, info))
        else:
            nested.append((name, inner, is_list))

    yield _section(model, path, env, plain)
    for name, inner, is_list in nested:
        if is_list:
            yield from _sections(inner, (*path, name, "[]"), (*env, name, "0"))
        else:
            yield from _sections(inner, (*path, name), (*env, name))


def _section(
    model: type[BaseModel],
    path: tuple[str, ...],
    env: tuple[str, ...],
    fields: list[tuple[str, FieldInfo]],
) -> list[str]:
    if not path:
        title, where = "Top level", ""
    elif path[-1] == "[]":
        title = f"`[[{'.'.join(path[:-1])}]]`"
        where = ".".join(path[:-1]) + "[n]."
    else:
        title, where = f"`[{'.'.join(path)}]`", ".".join(path) + "."
    lines = [f"## {title}", ""]
    doc = inspect.getdoc(model)
    if doc:
        lines += [doc.splitlines()[0], ""]
    if path and path[-1] == "[]":
        lines += [
            "A list of tables: repeat the heading for each. At least one is required.",
            "",
        ]
    if not fields:
        return lines
    lines += [
        "| key | type | default | environment | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, info in fields:
        variable = ENV_PREFIX + ENV_SEPARATOR.join(
            part.upper() for part in (*env, name)
        )
        # Descriptions are plain text: a * or <...> must not turn into markup.
        meaning = (info.description or "").replace("*", "\\*").replace("<", "&lt;")
        if info.repr is False:
            meaning = f"*secret*. {meaning}"
        row = [
            f"`{where}{name}`",
            _type_text(info),
            _default_text(info),
            f"`{variable}`",
            meaning,
        ]
        lines.append("| " + " | ".join(_cell(text) for text in row) + " |")
    lines.append("")
    return lines


def _section_type(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """Return (the model of a nested table, whether it is a list of them)."""
    if _is_model(annotation):
        return annotation, False
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        if _is_model(item):
            return item, True
    return None, False


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _type_text(info: FieldInfo) -> str:
    text = _annotation_text(info.annotation)
    bounds = _bounds(info.metadata)
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _annotation_text(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        text = _annotation_text(base)
        bounds = [bound for meta in metadata for bound in _bounds(_flatten(meta))]
        return f"{text} ({', '.join(bounds)})" if bounds else text
    if origin is Literal:
        return "one of " + ", ".join(
            json.dumps(value) for value in get_args(annotation)
        )
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(annotation) if arg is not type(None)]
        text = " or ".join(_annotation_text(option) for option in options)
        return f"{text}, or unset" if len(options) < len(get_args(annotation)) else text
    if origin is list:
        (item,) = get_args(annotation)
        return f"list of {_annotation_text(item)}"
    if origin is dict:
        key, value = get_args(annotation)
        return f"table of {_annotation_text(key)} to {_annotation_text(value)}"
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _flatten(meta: Any) -> list[Any]:
    """Return the constraints of one Annotated item (a FieldInfo holds several)."""
    return list(meta.metadata) if isinstance(meta, FieldInfo) else [meta]


def _bounds(metadata: list[Any]) -> list[str]:
    found = []
    for meta in metadata:
        for attribute, sign in _BOUNDS:
            value = getattr(meta, attribute, None)
            if value is not None and isinstance(meta, annotated_types.BaseMetadata):
                found.append(f"{sign} {value}")
    return found


def _default_text(info: FieldInfo) -> str:
    if info.default_factory is not None:
        if isinstance(info.default_factory, type):
            value = info.default_factory()
        else:
            # Computed where the gateway runs (the client id from the host
            # name): its description says how.
            return "computed"
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float) and not isinstance(value, bool):
        # TOML reads 1_000_000 as written.
        large = isinstance(value, int) and value >= 10_000
        return f"`{value:_}`" if large else f"`{value}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    """Return text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")
