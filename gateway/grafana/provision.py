"""Push a bundle to a running Grafana through its HTTP API, with grafana-client.

Provisioning is idempotent: each object is read first and written only when
it differs from what is generated. A dashboard carries a fingerprint of the
content the gateway wrote (tag `decor-hash:<digest>`), so a dashboard edited
by hand in Grafana is told apart from one that is merely out of date: it is
reported and kept, and overwritten only when forced. A dashboard whose uid or
title belongs to someone else's dashboard is never overwritten.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal
from urllib.parse import quote

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException

from gateway.grafana.alerting import GeneratedRuleGroup
from gateway.grafana.bundle import Bundle, Folder
from gateway.grafana.dashboards import GeneratedDashboard
from gateway.grafana.naming import MANAGED_TAG

__all__ = ["Change", "GrafanaUnreachable", "ProvisionReport", "provision"]

logger = logging.getLogger(__name__)

HASH_TAG_PREFIX = "decor-hash:"
HASH_CHARS = 16
# Keys Grafana adds to or manages in a stored dashboard, left out of the
# fingerprint.
_DASHBOARD_VOLATILE = ("id", "version")
# Keys of a stored datasource that provisioning sets and compares.
_DATASOURCE_KEYS = ("name", "type", "access", "url", "user", "isDefault", "jsonData")
_RULE_KEYS = (
    "uid",
    "title",
    "condition",
    "data",
    "noDataState",
    "execErrState",
    "for",
    "labels",
    "annotations",
)
Kind = Literal["datasource", "folder", "dashboard", "rule group"]
Action = Literal["create", "update", "unchanged", "kept", "overwritten", "failed"]


class GrafanaUnreachable(Exception):
    """Grafana cannot be reached or refuses the credentials: nothing can proceed."""


@dataclass(frozen=True)
class Change:
    """What provisioning did (or, in a dry run, would do) to one object."""

    kind: Kind
    uid: str
    title: str
    action: Action
    detail: str = ""


@dataclass
class ProvisionReport:
    """Every object's change, in the order they were handled."""

    changes: list[Change] = field(default_factory=list)

    @property
    def changed(self) -> list[Change]:
        """Return the objects created, updated or overwritten."""
        return [
            c for c in self.changes if c.action in ("create", "update", "overwritten")
        ]

    @property
    def problems(self) -> list[Change]:
        """Return the objects kept against the plan or that failed."""
        return [c for c in self.changes if c.action in ("kept", "failed")]


def provision(
    api: GrafanaApi, bundle: Bundle, *, dry_run: bool = False, force: bool = False
) -> ProvisionReport:
    """Create or update the bundle's objects in Grafana; return what changed.

    One object's failure (a 412 or 409 Grafana gives) is reported and the
    others go on. Raises GrafanaUnreachable when Grafana cannot be reached or
    refuses the token (401), since then nothing else can succeed.

    Args:
        dry_run: read only; report what would change.
        force: overwrite dashboards edited by hand since the gateway wrote them.
    """
    report = ProvisionReport()
    # grafana-client has no type hints: its calls are made through Any.
    client: Any = api
    steps: list[tuple[Kind, str, str, Callable[[], Change]]] = []
    for datasource in bundle.datasources:
        steps.append(
            (
                "datasource",
                datasource["uid"],
                datasource["name"],
                partial(_datasource, client, datasource, dry_run),
            )
        )
    for folder in bundle.folders:
        steps.append(
            (
                "folder",
                folder.uid,
                folder.title,
                partial(_folder, client, folder, dry_run),
            )
        )
    for dashboard in bundle.dashboards:
        steps.append(
            (
                "dashboard",
                dashboard.uid,
                dashboard.title,
                partial(_dashboard, client, dashboard, dry_run, force),
            )
        )
    for group in bundle.rule_groups:
        steps.append(
            (
                "rule group",
                f"{group.folder_uid}/{group.title}",
                group.title,
                partial(_rule_group, client, group, dry_run),
            )
        )
    for kind, uid, title, step in steps:
        try:
            change = step()
        except GrafanaException as exc:
            if exc.status_code in (0, 401):
                problem = "refused the credentials" if exc.status_code else "failed"
                raise GrafanaUnreachable(f"Grafana {problem}: {_message(exc)}") from exc
            change = Change(kind, uid, title, "failed", _message(exc))
        except OSError as exc:
            raise GrafanaUnreachable(f"Grafana cannot be reached: {exc}") from exc
        _log(change, dry_run)
        report.changes.append(change)
    return report


def fingerprint(model: dict[str, Any]) -> str:
    """Return the digest of a dashboard's content, less volatile keys and hash tag."""
    content = {k: v for k, v in model.items() if k not in _DASHBOARD_VOLATILE}
    content["tags"] = [
        t for t in content.get("tags", []) if not t.startswith(HASH_TAG_PREFIX)
    ]
    text = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]


def stamped(model: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of a generated dashboard carrying its fingerprint tag."""
    result = copy.deepcopy(model)
    digest = fingerprint(result)
    result["tags"] = [*result.get("tags", []), HASH_TAG_PREFIX + digest]
    return result


def _datasource(api: Any, wanted: dict[str, Any], dry_run: bool) -> Change:
    uid, name = wanted["uid"], wanted["name"]
    stored = _get_or_none(lambda: api.datasource.get_datasource_by_uid(uid))
    if stored is None:
        if not dry_run:
            api.datasource.create_datasource(wanted)
        return Change("datasource", uid, name, "create")
    differs = [
        k for k in _DATASOURCE_KEYS if _normal(stored.get(k)) != _normal(wanted.get(k))
    ]
    if not differs:
        return Change("datasource", uid, name, "unchanged")
    if not dry_run:
        # The stored version guards against a concurrent edit (409 if stale).
        api.datasource.update_datasource_by_uid(
            uid, {**wanted, "version": stored.get("version", 0)}
        )
    return Change("datasource", uid, name, "update", "changed: " + ", ".join(differs))


def _folder(api: Any, wanted: Folder, dry_run: bool) -> Change:
    stored = _get_or_none(lambda: api.folder.get_folder(wanted.uid))
    if stored is None:
        if not dry_run:
            api.folder.create_folder(wanted.title, uid=wanted.uid)
        return Change("folder", wanted.uid, wanted.title, "create")
    if stored.get("title") == wanted.title:
        return Change("folder", wanted.uid, wanted.title, "unchanged")
    if not dry_run:
        api.folder.update_folder(
            wanted.uid,
            title=wanted.title,
            version=stored.get("version"),
            overwrite=False,
        )
    return Change(
        "folder",
        wanted.uid,
        wanted.title,
        "update",
        f"title was {stored.get('title')!r}",
    )


def _dashboard(
    api: Any, wanted: GeneratedDashboard, dry_run: bool, force: bool
) -> Change:
    model = stamped(wanted.model)
    stored = _get_or_none(lambda: api.dashboard.get_dashboard(wanted.uid))

    def save(version: int | None, note: str) -> None:
        if dry_run:
            return
        body = dict(model)
        if version is not None:
            body["version"] = version
        api.dashboard.update_dashboard(
            {
                "dashboard": body,
                "folderUid": wanted.folder_uid,
                "overwrite": False,
                "message": note,
            }
        )

    if stored is None:
        try:
            save(None, "Created by decor grafana provision")
        except GrafanaException as exc:
            if exc.status_code == 412 and _status_word(exc) == "name-exists":
                return Change(
                    "dashboard",
                    wanted.uid,
                    wanted.title,
                    "failed",
                    f"title {wanted.title!r} is already used by another dashboard in "
                    f"folder {wanted.folder_uid} ({_holder(api, wanted)}); it was "
                    "left alone. Rename or move that dashboard, then provision again",
                )
            raise
        return Change("dashboard", wanted.uid, wanted.title, "create")

    current = stored.get("dashboard", {})
    meta = stored.get("meta", {})
    version = current.get("version")
    tags = current.get("tags", [])
    if MANAGED_TAG not in tags:
        return Change(
            "dashboard",
            wanted.uid,
            wanted.title,
            "kept",
            f"uid {wanted.uid} belongs to a dashboard the gateway did not make "
            f"({current.get('title')!r}); never overwritten",
        )
    written = next(
        (t[len(HASH_TAG_PREFIX) :] for t in tags if t.startswith(HASH_TAG_PREFIX)), ""
    )
    edited = written != fingerprint(current)
    new_digest = fingerprint(model)
    if (
        not edited
        and written == new_digest
        and meta.get("folderUid") == wanted.folder_uid
    ):
        return Change("dashboard", wanted.uid, wanted.title, "unchanged")
    if edited and not force:
        return Change(
            "dashboard",
            wanted.uid,
            wanted.title,
            "kept",
            f"edited in Grafana since the gateway wrote it (version {version}); kept. "
            "Run with --force to overwrite the edits",
        )
    try:
        save(version, "Updated by decor grafana provision")
    except GrafanaException as exc:
        if exc.status_code != 412:
            raise
        # Changed between our read and our write: read again, decide again.
        return _dashboard(api, wanted, dry_run, force)
    if edited:
        return Change(
            "dashboard",
            wanted.uid,
            wanted.title,
            "overwritten",
            f"hand edits up to version {version} overwritten (--force)",
        )
    return Change("dashboard", wanted.uid, wanted.title, "update")


def _rule_group(api: Any, wanted: GeneratedRuleGroup, dry_run: bool) -> Change:
    uid = f"{wanted.folder_uid}/{wanted.title}"
    stored = _get_or_none(
        lambda: api.alertingprovisioning.get_rule_group(
            wanted.folder_uid, quote(wanted.title, safe="")
        )
    )
    if stored is None:
        action: Action = "create"
    elif stored.get("interval") == wanted.interval_s and _rules(
        stored.get("rules", [])
    ) == _rules(wanted.rules):
        return Change("rule group", uid, wanted.title, "unchanged")
    else:
        action = "update"
    if not dry_run:
        # grafana-client puts the title into the path as it is.
        api.alertingprovisioning.update_rule_group(
            wanted.folder_uid, quote(wanted.title, safe=""), wanted.api_body()
        )
    return Change("rule group", uid, wanted.title, action, f"{len(wanted.rules)} rules")


def _rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    picked = [{k: _normal(rule.get(k)) for k in _RULE_KEYS} for rule in rules]
    return sorted(picked, key=lambda rule: str(rule["uid"]))


def _normal(value: Any) -> Any:
    # Grafana may give back {} or None for a key the request left out.
    if value in ({}, None, ""):
        return None
    return json.loads(json.dumps(value, sort_keys=True))


def _get_or_none(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except GrafanaException as exc:
        if exc.status_code == 404:
            return None
        raise


def _holder(api: Any, wanted: GeneratedDashboard) -> str:
    try:
        hits = api.search.search_dashboards(
            query=wanted.title, folder_uids=[wanted.folder_uid], type_="dash-db"
        )
    except GrafanaException:
        return "its uid could not be read"
    uids = [h.get("uid") for h in hits if h.get("title") == wanted.title]
    return "uid " + ", ".join(str(u) for u in uids) if uids else "uid unknown"


def _status_word(exc: GrafanaException) -> str:
    body = exc.response if isinstance(exc.response, dict) else {}
    return str(body.get("status", ""))


def _message(exc: GrafanaException) -> str:
    body = exc.response if isinstance(exc.response, dict) else {}
    text = body.get("message") or exc.message
    extra = body.get("messageId") or body.get("status")
    return f"{exc.status_code} {text}" + (f" ({extra})" if extra else "")


def _log(change: Change, dry_run: bool) -> None:
    if change.action == "failed":
        logger.error(
            "Grafana %s %s not provisioned: %s", change.kind, change.uid, change.detail
        )
    elif change.action == "kept":
        logger.warning("Grafana %s %s kept: %s", change.kind, change.uid, change.detail)
    elif change.action == "overwritten":
        logger.warning("Grafana %s %s: %s", change.kind, change.uid, change.detail)
    elif change.action != "unchanged":
        logger.info(
            "%s Grafana %s %s",
            ("Would " + change.action) if dry_run else change.action.capitalize() + "d",
            change.kind,
            change.uid,
        )
