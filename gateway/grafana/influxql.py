"""InfluxQL panel targets for the Grafana SDK, and how Grafana expands their macros.

grafana-foundation-sdk has no InfluxDB query type; its pattern for one is a
small class that serialises to the datasource's target JSON, done here.
`expand_query` does what Grafana does to a raw InfluxQL query before sending
it ($timeFilter, $__interval, template variables), so that tests can run every
generated query against a real InfluxDB.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants

__all__ = [
    "InfluxQLQuery",
    "InfluxQLTarget",
    "expand_query",
    "quote_identifier",
    "quote_string",
    "regex_of",
]

DATASOURCE_TYPE = "influxdb"
ResultFormat = Literal["time_series", "table"]
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


@dataclass
class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel, as Grafana stores it."""

    ref_id: str
    query: str
    datasource_uid: str
    result_format: ResultFormat = "time_series"
    alias: str = ""

    def to_json(self) -> dict[str, object]:
        """Return the target as Grafana's InfluxDB datasource stores it."""
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": {"type": DATASOURCE_TYPE, "uid": self.datasource_uid},
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias:
            payload["alias"] = self.alias
        return payload


class InfluxQLTarget(cogbuilder.Builder[InfluxQLQuery]):
    """Build an InfluxQLQuery for a panel's `with_target`."""

    def __init__(
        self,
        ref_id: str,
        query: str,
        datasource_uid: str,
        result_format: ResultFormat = "time_series",
        alias: str = "",
    ) -> None:
        self._query = InfluxQLQuery(ref_id, query, datasource_uid, result_format, alias)

    def build(self) -> InfluxQLQuery:
        """Return the query."""
        return self._query


def quote_identifier(name: str) -> str:
    """Return `name` as an InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """Return `value` as an InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def regex_of(values: Sequence[str]) -> str:
    """Return an InfluxQL regex matching exactly `values`, e.g. /^(a|b)$/."""
    if not values:
        # Matches nothing: an empty alternation would match everything.
        return "/^$a/"
    return "/^(" + "|".join(_regex_escape(v) for v in values) + ")$/"


def expand_query(
    query: str,
    *,
    time_filter: str = "time >= now() - 6h",
    interval: str = "1m",
    variables: Mapping[str, Sequence[str] | str] | None = None,
) -> str:
    """Return `query` with Grafana's macros and template variables filled in.

    A variable with several values becomes a regex alternation, as Grafana
    formats multi-value variables for InfluxDB; `${name:raw}` is inserted as
    written.

    Args:
        time_filter: what $timeFilter stands for (Grafana's time range).
        interval: what $__interval stands for.
        variables: template variable values by name.
    """
    values = dict(variables or {})
    values["timeFilter"] = time_filter
    values["__interval"] = interval

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name not in values:
            raise KeyError(f"query uses ${name}, which has no value: {query}")
        value = values[name]
        if isinstance(value, str):
            if match.group(2) == "raw" or name in ("timeFilter", "__interval"):
                return value
            return _regex_escape(value)
        return "(" + "|".join(_regex_escape(v) for v in value) + ")"

    return _VARIABLE.sub(substitute, query)


def _regex_escape(value: str) -> str:
    # Ids are letters, digits, "_", "." and "-"; "." and "/" matter in a regex.
    return re.sub(r"([.\\/^$|()\[\]{}*+?])", r"\\\1", value)
