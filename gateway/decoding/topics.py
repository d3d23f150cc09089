"""Turn topic levels into tags by template: ``city/{agency}/+/{device_id}/#``."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["TopicTemplate"]

_NAMED_LEVEL = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
SKIP_NAME = "_"


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    """A compiled template: a literal, a named tag, or a skipped level per level.

    `{name}` captures a level as tag `name`; `+` or `{_}` matches any one level;
    a final `#` matches any remaining levels (none included) and ignores them.
    """

    text: str
    levels: tuple[str | None, ...]  # literal text, or None for a wildcard level
    names: tuple[str | None, ...]  # tag name per level, or None
    open_ended: bool

    @classmethod
    def parse(cls, text: str) -> TopicTemplate:
        """Compile a template; raises ValueError naming the bad level."""
        parts = text.split("/")
        open_ended = parts[-1] == "#"
        if open_ended:
            parts = parts[:-1]
        levels: list[str | None] = []
        names: list[str | None] = []
        for part in parts:
            named = _NAMED_LEVEL.match(part)
            if named:
                name = named.group(1)
                levels.append(None)
                names.append(None if name == SKIP_NAME else name)
            elif part == "+":
                levels.append(None)
                names.append(None)
            elif "{" in part or "}" in part or "#" in part or "+" in part:
                raise ValueError(
                    f"level {part!r} of topic template {text!r} must be literal text, "
                    "{name}, + or a final #"
                )
            else:
                levels.append(part)
                names.append(None)
        tag_names = [n for n in names if n]
        for name in tag_names:
            if tag_names.count(name) > 1:
                raise ValueError(f"topic template {text!r} names tag {name!r} twice")
        return cls(text, tuple(levels), tuple(names), open_ended)

    @property
    def tag_names(self) -> tuple[str, ...]:
        """Return the names of the tags this template captures."""
        return tuple(n for n in self.names if n)

    @property
    def topic_filter(self) -> str:
        """Return the MQTT topic filter that delivers the topics this matches."""
        levels = ["+" if level is None else level for level in self.levels]
        if self.open_ended:
            levels.append("#")
        return "/".join(levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """Return the captured levels of `topic`, or None if it does not match."""
        parts = topic.split("/")
        # A leading wildcard never matches a topic that starts with $ (MQTT 4.7.2),
        # so this agrees with the topic filter the broker uses.
        if topic.startswith("$") and (not self.levels or self.levels[0] is None):
            return None
        if len(parts) < len(self.levels) or (
            not self.open_ended and len(parts) != len(self.levels)
        ):
            return None
        captured: dict[str, str] = {}
        for part, literal, name in zip(parts, self.levels, self.names, strict=False):
            if literal is not None and part != literal:
                return None
            if name:
                captured[name] = part
        return captured
