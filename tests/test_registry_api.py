"""The registry's HTTP API: CRUD, filters, pages, and who may do what."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gateway.api import create_app
from gateway.registry import DeviceIn, Registry
from gateway.registry.models import ApiToken
from gateway.registry.tokens import issue_token
from tests.registry_support import (  # noqa: F401 - fixtures
    ACTOR,
    city_registry,
    database_url,
    postgres_database,
    registry,
)
from tests.test_faults import free_port

DECOR = Path(sys.executable).with_name("decor")
GAUGE = {"device_id": "rg-001", "profile": "river_gauge", "agency": "pupr"}


@pytest.fixture
async def api(city_registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    """Give an HTTP client of the API on a registry with agencies and sites."""
    transport = httpx.ASGITransport(app=create_app(city_registry))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://registry"
    ) as client:
        yield client


@pytest.fixture
def tokens(city_registry: Registry) -> dict[str, dict[str, str]]:
    """Give Authorization headers of an admin, a technician and an operator token."""
    return {
        role: {
            "Authorization": "Bearer "
            + issue_token(city_registry, f"{role}-1", role, ACTOR).secret
        }
        for role in ("admin", "technician", "operator")
    }


async def test_api_without_token_gets_401_saying_what_is_missing(api, tokens):
    """Test that no token, a wrong scheme or an unknown token get a 401 saying why."""
    missing = await api.get("/devices")
    basic = await api.get("/devices", headers={"Authorization": "Basic YTpi"})
    unknown = await api.get("/devices", headers={"Authorization": "Bearer nope"})

    assert missing.status_code == basic.status_code == unknown.status_code == 401
    assert "missing API token" in missing.json()["detail"]
    assert "Authorization: Bearer <token>" in basic.json()["detail"]
    assert "not recognised" in unknown.json()["detail"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"


async def test_api_operator_token_cannot_create_or_change_anything(
    api, tokens, city_registry: Registry
):
    """Test that every write with an operator token is a 403 naming the role needed."""
    city_registry.add_device(DeviceIn(**GAUGE), ACTOR)
    operator = tokens["operator"]
    writes = [
        api.post("/devices", json={**GAUGE, "device_id": "rg-002"}, headers=operator),
        api.patch("/devices/rg-001", json={"notes": "x"}, headers=operator),
        api.post("/devices/rg-001/decommission", headers=operator),
        api.post("/sites", json={"site_id": "s", "name": "S"}, headers=operator),
        api.patch("/sites/panus", json={"name": "P"}, headers=operator),
        api.post("/sites/panus/decommission", headers=operator),
        api.post(
            "/cameras",
            json={"camera_id": "c", "agency": "pupr", "stream_url": "rtsp://h/s"},
            headers=operator,
        ),
        api.post("/agencies", json={"agency_id": "x", "name": "X"}, headers=operator),
        api.post("/tokens", json={"name": "t", "role": "admin"}, headers=operator),
    ]

    answers = [await write for write in writes]

    assert [a.status_code for a in answers] == [403] * len(writes)
    assert (
        "needs role admin or technician; token 'operator-1' has role operator"
        in (answers[0].json()["detail"])
    )
    assert "needs role admin;" in answers[-1].json()["detail"]
    device = (await api.get("/devices/rg-001", headers=operator)).json()
    assert device["notes"] == "" and device["status"] == "provisioned"
    assert city_registry.list_devices().total == 1
    assert city_registry.list_sites().total == 2


async def test_api_operator_token_is_refused_by_every_route_that_writes(
    api, tokens, city_registry: Registry
):
    """Test that each route other than GET answers an operator token with 403."""
    city_registry.add_device(DeviceIn(**GAUGE), ACTOR)
    ids = {"device_id": "rg-001", "site_id": "panus", "camera_id": "c", "name": "t"}
    audited = city_registry.audit_log(limit=1000).total
    # Every route the API documents, so a route added later is covered too.
    writes = [
        (method.upper(), path.format(**ids))
        for path, methods in create_app(city_registry).openapi()["paths"].items()
        for method in sorted(methods)
        if method != "get"
    ]

    answers = [
        await api.request(method, path, json={}, headers=tokens["operator"])
        for method, path in writes
    ]

    assert len(writes) >= 12, writes
    refused = [(w, a.status_code) for w, a in zip(writes, answers, strict=True)]
    assert all(code == 403 for _, code in refused), refused
    assert city_registry.audit_log(limit=1000).total == audited


async def test_api_technician_registers_changes_and_retires_a_device(api, tokens):
    """Test the life of a device through the API, audited under the token's name."""
    technician = tokens["technician"]

    created = await api.post("/devices", json=GAUGE, headers=technician)
    changed = await api.patch(
        "/devices/rg-001",
        json={"status": "active", "site": "panus"},
        headers=technician,
    )
    retired = await api.post("/devices/rg-001/decommission", headers=technician)
    again = await api.patch("/devices/rg-001", json={"notes": "x"}, headers=technician)
    history = await api.get(
        "/audit", params={"entity_id": "rg-001"}, headers=technician
    )

    assert created.status_code == 201, created.text
    assert created.json()["device"]["expected_cadence_s"] == 300.0
    assert created.json()["mqtt"] is None
    assert changed.json()["site"] == "panus"
    assert retired.json()["status"] == "decommissioned"
    assert again.status_code == 409
    assert "is decommissioned" in again.json()["detail"]
    entries = history.json()["items"]
    assert [e["action"] for e in entries] == ["decommission", "update", "create"]
    assert {e["actor"] for e in entries} == {"token:technician-1"}


async def test_api_refuses_bad_devices_naming_field_and_reason(api, tokens):
    """Test that a bad body, unknown profile or taken id get 422/409 with reasons."""
    technician = tokens["technician"]
    await api.post("/devices", json=GAUGE, headers=technician)

    bad_id = await api.post(
        "/devices", json={**GAUGE, "device_id": "a/b"}, headers=technician
    )
    bad_profile = await api.post(
        "/devices",
        json={**GAUGE, "device_id": "x1", "profile": "kettle"},
        headers=technician,
    )
    taken = await api.post("/devices", json=GAUGE, headers=technician)
    missing = await api.get("/devices/nope", headers=technician)

    assert bad_id.status_code == 422
    assert bad_id.json()["detail"][0]["loc"] == ["body", "device_id"]
    assert bad_profile.status_code == 422
    assert bad_profile.json()["field"] == "profile"
    assert "unknown profile 'kettle'" in bad_profile.json()["detail"]
    assert taken.status_code == 409
    assert missing.status_code == 404
    assert "no device 'nope'" in missing.json()["detail"]


async def test_api_lists_devices_filtered_and_paged(api, tokens):
    """Test that filters narrow the listing and pages follow id order with a total."""
    technician = tokens["technician"]
    for number in range(5):
        await api.post(
            "/devices", json={**GAUGE, "device_id": f"rg-{number}"}, headers=technician
        )
    await api.post(
        "/devices",
        json={"device_id": "aq-1", "profile": "air_quality", "agency": "dlh"},
        headers=technician,
    )

    page = await api.get(
        "/devices",
        params={"agency": "pupr", "limit": 2, "offset": 2},
        headers=tokens["operator"],
    )
    too_big = await api.get("/devices", params={"limit": 5000}, headers=technician)

    body = page.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 2)
    assert [d["device_id"] for d in body["items"]] == ["rg-2", "rg-3"]
    assert too_big.status_code == 422


async def test_api_cameras_never_show_passwords(api, tokens):
    """Test that a camera's password goes in but never comes out of the API."""
    created = await api.post(
        "/cameras",
        json={
            "camera_id": "cam-1",
            "agency": "pupr",
            "stream_url": "rtsp://admin:pa55-word@10.0.0.7/h264",
        },
        headers=tokens["technician"],
    )
    listed = await api.get("/cameras", headers=tokens["operator"])
    audit = await api.get("/audit", headers=tokens["operator"])

    assert created.status_code == 201, created.text
    assert created.json()["stream_url"] == "rtsp://10.0.0.7/h264"
    assert created.json()["has_password"] is True
    for answer in (created, listed, audit):
        assert "pa55-word" not in answer.text


async def test_api_admin_manages_tokens_and_revoked_tokens_stop_working(api, tokens):
    """Test that a token an admin creates works at once and stops once revoked."""
    created = await api.post(
        "/tokens",
        json={"name": "field-tablet", "role": "technician"},
        headers=tokens["admin"],
    )
    new = {"Authorization": f"Bearer {created.json()['token']}"}
    before = await api.get("/devices", headers=new)

    await api.delete("/tokens/field-tablet", headers=tokens["admin"])
    after = await api.get("/devices", headers=new)
    listed = await api.get("/tokens", headers=tokens["admin"])

    assert before.status_code == 200
    assert after.status_code == 401
    assert created.json()["token"] not in listed.text


async def test_api_serves_openapi_docs(api):
    """Test that /docs and the OpenAPI document are served without a token."""
    docs = await api.get("/docs")
    schema = await api.get("/openapi.json")

    assert docs.status_code == 200
    assert "/devices/{device_id}/decommission" in schema.json()["paths"]


def test_tokens_are_stored_hashed(city_registry: Registry):
    """Test that the database holds a token's SHA-256, never the token."""
    issued = issue_token(city_registry, "ops-wall", "operator", ACTOR)

    with city_registry.sessions() as session:
        stored = session.scalars(select(ApiToken)).one()

    assert issued.secret not in repr(vars(stored))
    assert len(stored.token_sha256) == 64
    assert stored.token_sha256 != issued.secret


async def test_decor_api_serves_the_registry_over_a_socket(tmp_path: Path):
    """Test that `decor api` serves the registry over HTTP, tokens and all."""
    database_url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = Registry.open(database_url)
    secret = issue_token(registry, "wall", "operator", ACTOR).secret
    registry.close()
    config = tmp_path / "gateway.toml"
    config.write_text('[[subscriptions]]\ntopic = "x/#"\n')
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DECOR_")}
    environ["DECOR_REGISTRY__DATABASE_URL"] = database_url
    log = tmp_path / "api.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [str(DECOR), "api", "--config", str(config), "--port", str(port)],
            env=environ,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            assert await _answers(client, server), log.read_text()
            missing = await client.get("/devices")
            listed = await client.get(
                "/devices", headers={"Authorization": f"Bearer {secret}"}
            )
    finally:
        server.terminate()
        server.wait(timeout=10)

    assert missing.status_code == 401
    assert listed.json() == {"items": [], "total": 0, "limit": 100, "offset": 0}


async def _answers(client: httpx.AsyncClient, server: subprocess.Popen[bytes]) -> bool:
    for _ in range(200):
        if server.poll() is not None:
            return False
        try:
            if (await client.get("/health")).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    return False
