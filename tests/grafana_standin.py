"""A strict stand-in for Grafana's HTTP API, built from the published contract.

No Grafana server can run on these machines. This one serves the routes of
`shared/grafana-contract/openapi-subset.json` (Grafana 11.4.0's own Swagger
description) and refuses any request that the description does not allow:
an unknown route or method, a missing or mistyped parameter, a body that
does not match its schema. Each refusal is also recorded in `violations`, so
a test can assert the client never sent one. Status codes and error bodies
are Grafana's, from `error-cases.json`: 401 without or with a wrong token,
404, 409 for a taken datasource name or folder uid, 412 for a dashboard
version conflict and (before Grafana 11.3) a dashboard title taken in its
folder.

It keeps state in memory, the way Grafana's legacy API behaves: ids, uids,
versions, folders, dashboards, datasources and alert rule groups.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

CONTRACT_DIR = Path(__file__).resolve().parents[2] / "shared" / "grafana-contract"
SPEC_URI = "urn:grafana-openapi-subset"
EXPRESSION_UID = "__expr__"
# Routes grafana-client calls that the Swagger file does not describe.
_EXTRA_ROUTES = {("GET", "/frontend/settings")}
_SCALAR_TYPES = {"integer": int, "string": str, "boolean": bool, "number": (int, float)}


def load_error_bodies() -> dict[str, Any]:
    """Return error-cases.json by case id."""
    cases = json.loads((CONTRACT_DIR / "error-cases.json").read_text("utf-8"))["cases"]
    return {case["id"]: case for case in cases}


class ApiError(Exception):
    """An answer other than success: a status and Grafana's body (None: empty)."""

    def __init__(self, status: int, body: dict[str, Any] | None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


@dataclass
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    operation: dict[str, Any]

    @property
    def literal_segments(self) -> int:
        return sum(1 for part in self.template.split("/") if part and "{" not in part)


@dataclass
class GrafanaState:
    """Grafana's stored objects, as the legacy API sees them."""

    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (folder uid, group title) -> {"interval": int, "rules": [...]}
    rule_groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    dashboard_versions: dict[str, int] = field(default_factory=dict)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class GrafanaStandIn:
    """Grafana's HTTP API on a loopback port, checked against the contract.

    Args:
        token: the service-account token it accepts (Bearer).
        version: the Grafana version it claims; below 11.3 dashboard titles
            must be unique within a folder (412 name-exists).
    """

    def __init__(
        self, token: str = "glsa_standin_token", version: str = "11.4.0"
    ) -> None:
        self.token = token
        self.version = version
        self.state = GrafanaState()
        self.violations: list[str] = []
        self.requests: list[tuple[str, str, int]] = []
        # Called with (method, path) before a request is handled: lets a test
        # change Grafana's state between a client's read and its write.
        self.before_request: Callable[[str, str], None] | None = None
        self._lock = threading.RLock()
        self._errors = load_error_bodies()
        self._spec = json.loads(
            (CONTRACT_DIR / "openapi-subset.json").read_text("utf-8")
        )
        self._schemas = Registry().with_resource(
            SPEC_URI, Resource.from_contents(self._spec, default_specification=DRAFT4)
        )
        self._routes = self._build_routes()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> str:
        """Serve on a free loopback port; return the base URL."""
        standin = self

        class Handler(_Handler):
            owner = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="grafana-standin", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # What tests do to Grafana's state directly, as a user in the UI would

    def edit_dashboard_by_hand(
        self, uid: str, change: Callable[[dict[str, Any]], None]
    ) -> None:
        """Change a stored dashboard as a save from the UI would: new version."""
        with self._lock:
            stored = self.state.dashboards[uid]
            change(stored["dashboard"])
            stored["dashboard"]["version"] += 1
            self.state.dashboard_versions[uid] = stored["dashboard"]["version"]

    def add_folder(self, uid: str, title: str) -> None:
        """Store a folder, as a user creating one in the UI."""
        with self._lock:
            self._create_folder({"uid": uid, "title": title})

    def add_dashboard(
        self, dashboard: dict[str, Any], folder_uid: str, version: int
    ) -> None:
        """Store a dashboard at a given version, as if saved that often in the UI."""
        with self._lock:
            model = copy.deepcopy(dashboard)
            model["id"] = self.state.new_id()
            model["version"] = version
            self.state.dashboards[model["uid"]] = {
                "dashboard": model,
                "folderUid": folder_uid,
            }
            self.state.dashboard_versions[model["uid"]] = version

    def dashboard(self, uid: str) -> dict[str, Any]:
        """Return a stored dashboard's JSON model."""
        with self._lock:
            return copy.deepcopy(self.state.dashboards[uid]["dashboard"])

    # Routing and validation

    def _build_routes(self) -> list[Route]:
        routes = []
        for template, operations in self._spec["paths"].items():
            regex = (
                "^"
                + re.sub(
                    r"\{[^/]+\}",
                    "([^/]+)",
                    re.escape(template).replace(r"\{", "{").replace(r"\}", "}"),
                )
                + "$"
            )
            for method, operation in operations.items():
                if method == "parameters":
                    continue
                routes.append(
                    Route(method.upper(), template, re.compile(regex), operation)
                )
        # /datasources/uid/{uid} before /datasources/{id}: literal segments win.
        routes.sort(key=lambda r: -r.literal_segments)
        return routes

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """Answer one request: (status, JSON body or None for an empty one)."""
        split = urlsplit(raw_path)
        if not split.path.startswith("/api/"):
            return 404, {"message": "Not found"}
        path = split.path[len("/api") :]
        if len(path) > 1:
            path = path.rstrip("/")  # grafana-client posts to /serviceaccounts/
        query = parse_qs(split.query)
        if self.before_request is not None:
            self.before_request(method, path)
        try:
            with self._lock:
                return self._answer(method, path, query, headers, body)
        except ApiError as exc:
            return exc.status, exc.body

    def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, Any]:
        if (method, path) in _EXTRA_ROUTES:
            self._authenticate(headers)
            return 200, {"buildInfo": {"version": self.version}}
        route, params = self._route(method, path)
        if path != "/health":
            self._authenticate(headers)
        payload = self._validate(route, params, query, headers, body)
        handler = _HANDLERS.get((route.method, route.template))
        if handler is None:
            raise self._violation(
                f"{method} {route.template} is in the contract but the stand-in "
                "does not "
                "serve it",
                status=501,
            )
        return handler(self, params, query, payload)

    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            allowed = True
            if route.method == method:
                names = re.findall(r"\{([^/]+)\}", route.template)
                return route, {
                    n: unquote(v) for n, v in zip(names, match.groups(), strict=True)
                }
        if allowed:
            raise self._violation(
                f"{method} {path}: method not in the contract", status=405
            )
        raise self._violation(
            f"{method} {path}: no such route in the contract", status=404
        )

    def _authenticate(self, headers: dict[str, str]) -> None:
        given = headers.get("authorization", "")
        if not given:
            raise ApiError(401, self._errors["auth-missing"]["body"])
        if given != f"Bearer {self.token}":
            raise ApiError(401, self._errors["auth-bad-token"]["body"])

    def _validate(
        self,
        route: Route,
        params: dict[str, str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Any:
        payload: Any = None
        for parameter in route.operation.get("parameters", []):
            where, name = parameter["in"], parameter["name"]
            if where == "path":
                self._check_scalar(route, name, params.get(name), parameter)
            elif (
                where == "query" and name in query and parameter.get("type") != "array"
            ):
                self._check_scalar(route, name, query[name][0], parameter)
            elif where == "body":
                if not body:
                    if parameter.get("required"):
                        raise self._violation(
                            f"{route.method} {route.template}: body required"
                        )
                    continue
                try:
                    payload = json.loads(body)
                except ValueError as exc:
                    raise self._violation(
                        f"{route.method} {route.template}: body is not JSON: {exc}"
                    ) from exc
                validator = Draft4Validator(
                    parameter["schema"] | {}, registry=self._schemas
                )
                if "$ref" in parameter["schema"]:
                    validator = Draft4Validator(
                        {"$ref": SPEC_URI + parameter["schema"]["$ref"]},
                        registry=self._schemas,
                    )
                errors = sorted(
                    validator.iter_errors(payload), key=lambda e: e.json_path
                )
                if errors:
                    first = errors[0]
                    raise self._violation(
                        f"{route.method} {route.template}: body {first.json_path}: "
                        f"{first.message}"
                    )
        known = {
            p["name"]
            for p in route.operation.get("parameters", [])
            if p["in"] == "query"
        }
        unknown = set(query) - known
        if unknown:
            raise self._violation(
                f"{route.method} {route.template}: unknown query parameters "
                f"{sorted(unknown)}"
            )
        return payload

    def _check_scalar(
        self, route: Route, name: str, value: str | None, parameter: dict[str, Any]
    ) -> None:
        if value is None:
            if parameter.get("required"):
                raise self._violation(
                    f"{route.method} {route.template}: {name} required"
                )
            return
        kind = parameter.get("type", "string")
        if kind == "integer" and not re.fullmatch(r"-?\d+", value):
            raise self._violation(
                f"{route.method} {route.template}: {name} must be an integer, "
                f"got {value!r}"
            )
        if kind == "boolean" and value not in ("true", "false"):
            raise self._violation(
                f"{route.method} {route.template}: {name} must be a boolean, "
                f"got {value!r}"
            )

    def _violation(self, text: str, status: int = 400) -> ApiError:
        self.violations.append(text)
        return ApiError(status, {"message": f"stand-in: {text}"})

    # Objects

    def _create_folder(self, body: dict[str, Any]) -> dict[str, Any]:
        title = (body.get("title") or "").strip()
        if not title:
            raise ApiError(400, {"message": "folder title cannot be empty"})
        uid = body.get("uid") or f"f{self.state.new_id()}"
        if uid in self.state.folders or uid in self.state.dashboards:
            raise ApiError(
                409, {"message": "a folder/dashboard with the same uid already exists"}
            )
        folder = {
            "id": self.state.new_id(),
            "uid": uid,
            "title": title,
            "version": 1,
            "url": f"/dashboards/f/{uid}/",
            "parentUid": body.get("parentUid", ""),
        }
        self.state.folders[uid] = folder
        return folder


def _datasource_out(datasource: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in datasource.items() if k != "secureJsonData"}
    shown["secureJsonFields"] = {k: True for k in datasource.get("secureJsonData", {})}
    return shown


def _get_datasource(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    stored = standin.state.datasources.get(params["uid"])
    if stored is None:
        raise ApiError(404, {"message": "Data source not found"})
    return 200, _datasource_out(stored)


def _post_datasource(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    if any(d["name"] == body.get("name") for d in standin.state.datasources.values()):
        raise ApiError(409, standin._errors["datasource-name-exists"]["body"])
    uid = body.get("uid") or f"ds{standin.state.next_id}"
    if uid in standin.state.datasources:
        raise ApiError(
            409,
            {"message": "data source with the same uid already exists", "traceID": ""},
        )
    stored = {
        "access": "proxy",
        "isDefault": False,
        "jsonData": {},
        "user": "",
        "url": "",
        **body,
        "uid": uid,
        "id": standin.state.new_id(),
        "orgId": 1,
        "version": 1,
        "readOnly": False,
    }
    standin.state.datasources[uid] = stored
    return 200, {
        "datasource": _datasource_out(stored),
        "id": stored["id"],
        "message": "Datasource added",
        "name": stored["name"],
    }


def _put_datasource(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    stored = standin.state.datasources.get(params["uid"])
    if stored is None:
        raise ApiError(404, {"message": "Data source not found"})
    if stored["readOnly"]:
        raise ApiError(403, {"message": "Cannot update read-only data source"})
    if "version" in body and body["version"] < stored["version"]:
        raise ApiError(
            409,
            {
                "message": "Datasource has already been updated by someone else. "
                "Please reload and try again",
                "traceID": "",
            },
        )
    if any(
        d["name"] == body.get("name") and u != params["uid"]
        for u, d in standin.state.datasources.items()
    ):
        raise ApiError(
            409,
            {
                "message": "Failed to update datasource: data source with the same "
                "name already exists",
                "traceID": "",
            },
        )
    updated = {k: v for k, v in body.items() if k != "version"}
    stored.update(updated)
    stored["version"] += 1
    return 200, {
        "datasource": _datasource_out(stored),
        "id": stored["id"],
        "message": "Datasource updated",
        "name": stored["name"],
    }


def _get_folder(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    folder = standin.state.folders.get(params["folder_uid"])
    if folder is None:
        raise ApiError(404, {"status": "not-found", "message": "folder not found"})
    return 200, folder


def _post_folder(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    return 200, standin._create_folder(body)


def _put_folder(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    folder = standin.state.folders.get(params["folder_uid"])
    if folder is None:
        raise ApiError(404, {"status": "not-found", "message": "folder not found"})
    if not body.get("overwrite") and body.get("version") != folder["version"]:
        raise ApiError(
            412,
            {
                "status": "version-mismatch",
                "message": "the folder has been changed by someone else",
            },
        )
    if body.get("title"):
        folder["title"] = body["title"]
    folder["version"] += 1
    return 200, folder


def _get_dashboard(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    stored = standin.state.dashboards.get(params["uid"])
    if stored is None:
        raise ApiError(404, {"message": "Dashboard not found"})
    model = stored["dashboard"]
    return 200, {
        "dashboard": copy.deepcopy(model),
        "meta": {
            "folderUid": stored["folderUid"],
            "version": model["version"],
            "slug": _slug(model["title"]),
            "provisioned": False,
            "url": f"/d/{model['uid']}/{_slug(model['title'])}",
        },
    }


def _post_dashboard(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    model = copy.deepcopy(body.get("dashboard") or {})
    title = (model.get("title") or "").strip()
    if not title:
        raise ApiError(
            400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        )
    folder_uid = body.get("folderUid", "")
    if folder_uid and folder_uid not in standin.state.folders:
        raise ApiError(400, {"message": "folder not found", "status": "not-found"})
    overwrite = bool(body.get("overwrite"))
    uid = model.get("uid") or f"d{standin.state.new_id()}"
    existing = standin.state.dashboards.get(uid)
    if (
        existing
        and not overwrite
        and model.get("version") != existing["dashboard"]["version"]
    ):
        raise ApiError(412, standin._errors["dashboard-version-mismatch"]["body"])
    if _version_tuple(standin.version) < (11, 3) and not overwrite:
        for other_uid, other in standin.state.dashboards.items():
            if (
                other_uid != uid
                and other["folderUid"] == folder_uid
                and other["dashboard"]["title"] == title
            ):
                raise ApiError(
                    412,
                    {
                        "message": "A dashboard with the same name in the folder "
                        "already exists",
                        "status": "name-exists",
                    },
                )
    version = existing["dashboard"]["version"] + 1 if existing else 1
    model.update(
        uid=uid,
        version=version,
        id=existing["dashboard"]["id"] if existing else standin.state.new_id(),
    )
    standin.state.dashboards[uid] = {"dashboard": model, "folderUid": folder_uid}
    standin.state.dashboard_versions[uid] = version
    return 200, {
        "id": model["id"],
        "uid": uid,
        "url": f"/d/{uid}/{_slug(title)}",
        "status": "success",
        "version": version,
        "slug": _slug(title),
    }


def _search(
    standin: GrafanaStandIn,
    params: dict[str, str],
    query: dict[str, list[str]],
    body: Any,
) -> tuple[int, Any]:
    words = query.get("query", [""])[0].lower()
    folders = set(query.get("folderUIDs", []))
    hits = []
    for uid, stored in sorted(standin.state.dashboards.items()):
        model = stored["dashboard"]
        if words in model["title"].lower() and (
            not folders or stored["folderUid"] in folders
        ):
            hits.append(
                {
                    "uid": uid,
                    "title": model["title"],
                    "type": "dash-db",
                    "folderUid": stored["folderUid"],
                    "tags": model.get("tags", []),
                    "uri": f"db/{_slug(model['title'])}",
                    "url": f"/d/{uid}",
                }
            )
    return 200, hits


def _get_rule_group(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    group = standin.state.rule_groups.get((params["FolderUID"], params["Group"]))
    if group is None:
        raise ApiError(404, None)
    return 200, {
        "title": params["Group"],
        "folderUid": params["FolderUID"],
        "interval": group["interval"],
        "rules": copy.deepcopy(group["rules"]),
    }


def _put_rule_group(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    folder_uid, title = params["FolderUID"], params["Group"]
    if folder_uid not in standin.state.folders:
        raise ApiError(400, {"message": f"folder does not exist: {folder_uid}"})
    if (
        body.get("title", title) != title
        or body.get("folderUid", folder_uid) != folder_uid
    ):
        raise ApiError(
            400, {"message": "rule group title and folder must match the path"}
        )
    interval = body.get("interval", 60)
    if interval <= 0 or interval % 10:
        raise ApiError(
            400, {"message": f"invalid interval {interval}: must be a multiple of 10 s"}
        )
    rules = []
    titles: set[str] = set()
    for rule in body.get("rules", []):
        _check_rule(standin, rule, folder_uid, title)
        if rule["title"] in titles:
            raise ApiError(
                400,
                {"message": f"rule title {rule['title']!r} is used twice in the group"},
            )
        titles.add(rule["title"])
        for (other_folder, other_title), group in standin.state.rule_groups.items():
            if (other_folder, other_title) != (folder_uid, title) and any(
                r["uid"] == rule["uid"] for r in group["rules"]
            ):
                raise ApiError(
                    400, {"message": f"rule uid {rule['uid']} belongs to another group"}
                )
        stored = {
            **copy.deepcopy(rule),
            "folderUID": folder_uid,
            "ruleGroup": title,
            "orgID": 1,
            "provenance": "api",
            "id": standin.state.new_id(),
            "updated": datetime.now(UTC).isoformat(),
        }
        rules.append(stored)
    standin.state.rule_groups[(folder_uid, title)] = {
        "interval": interval,
        "rules": rules,
    }
    return 200, {
        "title": title,
        "folderUid": folder_uid,
        "interval": interval,
        "rules": rules,
    }


def _check_rule(
    standin: GrafanaStandIn, rule: dict[str, Any], folder_uid: str, group: str
) -> None:
    # What Grafana's provisioning API refuses with 400 {"message": ...}.
    if rule.get("folderUID") not in (None, folder_uid) or rule.get("ruleGroup") not in (
        None,
        group,
    ):
        raise ApiError(
            400, {"message": "rule folderUID and ruleGroup must match the group"}
        )
    refs = [query.get("refId") for query in rule.get("data", [])]
    if rule.get("condition") not in refs:
        raise ApiError(
            400,
            {
                "message": f"condition {rule.get('condition')} is not a refId of "
                "the rule's data"
            },
        )
    for query in rule["data"]:
        source = query.get("datasourceUid")
        if source != EXPRESSION_UID and source not in standin.state.datasources:
            raise ApiError(
                400, {"message": f"invalid alert rule: data source {source} not found"}
            )
        model = query.get("model", {})
        if source == EXPRESSION_UID and model.get("type") not in (
            "math",
            "reduce",
            "threshold",
            "resample",
            "classic_conditions",
        ):
            raise ApiError(
                400, {"message": f"unknown expression type {model.get('type')!r}"}
            )
    if not re.fullmatch(r"\d+[smhd]", rule.get("for", "")):
        raise ApiError(400, {"message": f"invalid for duration {rule.get('for')!r}"})


def _health(
    standin: GrafanaStandIn, params: dict[str, str], query: Any, body: Any
) -> tuple[int, Any]:
    return 200, {"commit": "standin", "database": "ok", "version": standin.version}


_HANDLERS: dict[tuple[str, str], Callable[..., tuple[int, Any]]] = {
    ("GET", "/health"): _health,
    ("GET", "/datasources/uid/{uid}"): _get_datasource,
    ("POST", "/datasources"): _post_datasource,
    ("PUT", "/datasources/uid/{uid}"): _put_datasource,
    ("GET", "/folders/{folder_uid}"): _get_folder,
    ("POST", "/folders"): _post_folder,
    ("PUT", "/folders/{folder_uid}"): _put_folder,
    ("GET", "/dashboards/uid/{uid}"): _get_dashboard,
    ("POST", "/dashboards/db"): _post_dashboard,
    ("GET", "/search"): _search,
    ("GET", "/v1/provisioning/folder/{FolderUID}/rule-groups/{Group}"): _get_rule_group,
    ("PUT", "/v1/provisioning/folder/{FolderUID}/rule-groups/{Group}"): _put_rule_group,
}


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: GrafanaStandIn

    def log_message(self, format: str, *args: Any) -> None:
        return  # the test output stays quiet; requests are recorded instead

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload = self.owner.handle(self.command, self.path, headers, body)
        self.owner.requests.append((self.command, self.path, status))
        data = b"" if payload is None or status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve
