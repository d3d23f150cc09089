"""Case C20: a backlog too large for a proxy's request limit, on real servers.

A small reverse proxy on 127.0.0.1 stands where nginx would: it answers 413
with an HTML page when a write body exceeds its limit and forwards every other
request to the real InfluxDB 1.x (or VictoriaMetrics through the v2 API),
counting the write requests and the lines the server accepted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from gateway.config import InfluxConfig
from gateway.deadletters import DeadLetterStore
from gateway.sinks import BatchWriter, InfluxV1Sink, InfluxV2Sink, Sink
from gateway.sinks.base import (
    answer_text,
    body_bytes,
    classify_rejection,
    summarize_answer,
)
from gateway.stats import GatewayStats
from tests.conftest import INFLUX_V1_URL, VICTORIA_URL, wait_until

PROXY_LIMIT_BYTES = 1_048_576
BIG_FIELD_BYTES = 1_200_000
NORMAL_POINTS = 20_000
MAX_FLUSH_REQUESTS = 16
# What nginx answers for a body over client_max_body_size.
HTML_413 = (
    "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n"
    "<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n"
    "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class SizeLimitProxy:
    """A reverse proxy that refuses write bodies over a size, as nginx does."""

    def __init__(self, upstream: str, limit_bytes: int) -> None:
        self.upstream = upstream
        self.limit_bytes = limit_bytes
        self.url = ""
        # (body bytes, HTTP status) of every write request, in order.
        self.writes: list[tuple[int, int]] = []
        # How often each line was in a write the upstream server accepted.
        self.stored = collections.Counter[str]()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop listening and close the upstream connections."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Read the whole body before answering, as nginx's lingering close
        # does, so the client sees the 413 rather than a reset connection.
        body = await request.read()
        is_write = request.path.endswith("/write")
        if is_write and len(body) > self.limit_bytes:
            self.writes.append((len(body), 413))
            return web.Response(status=413, text=HTML_413, content_type="text/html")
        assert self._session is not None
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in ("content-type", "content-encoding", "authorization")
        }
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            payload = await answer.read()
            status = answer.status
            content_type = answer.headers.get("Content-Type")
        if is_write:
            self.writes.append((len(body), status))
            if status == 204:
                self.stored.update(body.decode().splitlines())
        response = web.Response(status=status, body=payload or None)
        if content_type and payload:
            response.headers["Content-Type"] = content_type
        return response


@pytest.fixture
async def size_limit_proxy() -> AsyncIterator[Callable[..., Any]]:
    """Give a factory of started proxies in front of an upstream URL."""
    proxies: list[SizeLimitProxy] = []

    async def make(
        upstream: str, limit_bytes: int = PROXY_LIMIT_BYTES
    ) -> SizeLimitProxy:
        proxy = SizeLimitProxy(upstream, limit_bytes)
        await proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.stop()


def backlog_lines(count: int, start_ns: int, tags: str = "") -> list[str]:
    """Return `count` points of about 80 bytes, one second apart, random values."""
    rng = random.Random(start_ns)
    return [
        f"backlog,device=dev-0042,site=depot-north{tags} "
        f"v={rng.uniform(0.1, 0.9):.15g} {start_ns + index * 1_000_000_000}"
        for index in range(count)
    ]


def big_line(time_ns: int, tags: str = "") -> str:
    """Return the misbehaving device's point, whose string field is 1.2 MB."""
    return f'backlog,device=dev-0099{tags} dump="{"x" * BIG_FIELD_BYTES}" {time_ns}'


class WriterRun:
    """A real BatchWriter over a real sink, with its counters and dead letters."""

    def __init__(
        self, sink: Sink, config: InfluxConfig, tmp_path: Path, **writer: Any
    ) -> None:
        self.stats = GatewayStats()
        self.dead_letters = DeadLetterStore(tmp_path / "dead-letters.jsonl", 10**8)
        self.writer = BatchWriter(sink, config, self.stats, self.dead_letters, **writer)

    async def flush(self, lines: list[str]) -> None:
        """Queue the lines at once, as after an outage, and wait until all are sent."""
        await self.writer.add(lines)
        assert await wait_until(lambda: self.writer.buffered == 0, timeout_s=60)

    def dead(self) -> list[dict[str, Any]]:
        """Return the dead-letter entries written so far."""
        path = self.dead_letters.path
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@contextlib.asynccontextmanager
async def running(run: WriterRun) -> AsyncIterator[BatchWriter]:
    """Run a writer's task for the block, then stop it and close its sink."""
    task = asyncio.create_task(run.writer.run(), name="test.influx.write")
    try:
        await asyncio.wait_for(run.writer.ready.wait(), timeout=10)
        yield run.writer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await run.writer.sink.close()
        run.dead_letters.close()


def v1_config(url: str, database: str, batch_size: int) -> InfluxConfig:
    """Return a v1 writer configuration with quick retries."""
    return InfluxConfig.model_validate(
        {
            "url": url,
            "api": "v1",
            "database": database,
            "batch_size": batch_size,
            "flush_interval_s": 0.05,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
        }
    )


def stored_values(influx: Any) -> dict[int, float]:
    """Return the backlog's v field by timestamp, as InfluxDB 1.x holds it."""
    return {row["time"]: row["v"] for row in influx.rows("backlog")}


def expected_values(lines: list[str]) -> dict[int, float]:
    """Return the v field by timestamp that the backlog lines carry."""
    return {
        int(line.rsplit(" ", 1)[1]): float(line.split(" v=")[1].split(" ")[0])
        for line in lines
    }


@pytest.mark.parametrize(
    ("batch_size", "big_index"),
    [(5000, NORMAL_POINTS // 2), (25_000, NORMAL_POINTS)],
    ids=["default-batches", "one-request"],
)
async def test_too_large_backlog_is_cut_by_bytes_through_a_real_413_proxy(
    influx_v1, size_limit_proxy, tmp_path, batch_size, big_index
):
    """Test that C20's backlog is stored once, in few requests, the big point kept."""
    proxy = await size_limit_proxy(INFLUX_V1_URL)
    config = v1_config(proxy.url, influx_v1.database, batch_size)
    start_ns = (int(time.time()) - 2 * NORMAL_POINTS) * 1_000_000_000
    normal = backlog_lines(NORMAL_POINTS, start_ns)
    big = big_line(start_ns + 500_000_000)
    run = WriterRun(InfluxV1Sink(config), config, tmp_path)

    async with running(run):
        await run.flush(normal[:big_index] + [big] + normal[big_index:])
        first = list(proxy.writes)

    # Every normal point stored, each in exactly one accepted request.
    assert len(first) <= MAX_FLUSH_REQUESTS, first
    assert run.stats.write_requests == len(first)
    assert proxy.stored == collections.Counter(normal)
    assert stored_values(influx_v1) == expected_values(normal)
    assert influx_v1.query("SELECT COUNT(dump) FROM backlog") == []
    # The big point went alone once, was refused, and was not sent again.
    assert first.count((len(big) + 1, 413)) == 1
    [entry] = run.dead()
    assert entry["reason"] == "too_large"
    assert entry["kind"] == "point"
    assert entry["detail"].startswith(
        f"point of 1.2 MB ({len(big):,} bytes) exceeds the server's request limit (< 1."
    ), entry["detail"]
    assert entry["detail"].endswith("HTTP 413: 413 Request Entity Too Large")
    assert entry["payload"].startswith('backlog,device=dev-0099 dump="xxxx')
    assert run.stats.points_rejected == {"too_large": 1}
    assert run.stats.points_written == NORMAL_POINTS


async def test_too_large_limit_learned_once_serves_the_next_flush_without_413(
    influx_v1, size_limit_proxy, tmp_path
):
    """Test that a second backlog is cut to the learned limit: no 413 at all."""
    proxy = await size_limit_proxy(INFLUX_V1_URL)
    config = v1_config(proxy.url, influx_v1.database, 25_000)
    start_ns = (int(time.time()) - 2 * NORMAL_POINTS) * 1_000_000_000
    first = backlog_lines(NORMAL_POINTS, start_ns)
    later = backlog_lines(NORMAL_POINTS, start_ns + NORMAL_POINTS * 10**9)
    run = WriterRun(InfluxV1Sink(config), config, tmp_path)

    async with running(run):
        await run.flush(first)
        refused = sum(status == 413 for _, status in proxy.writes)
        del proxy.writes[:]
        await run.flush(later)

    assert refused >= 1
    # 1.6 MB in requests of at least half the limit: at most four.
    assert 2 <= len(proxy.writes) <= 4, proxy.writes
    assert all(status == 204 for _, status in proxy.writes), proxy.writes
    assert proxy.stored == collections.Counter(first + later)
    assert stored_values(influx_v1) == expected_values(first + later)
    assert run.dead() == []


async def test_too_large_configured_max_request_bytes_avoids_every_413(
    influx_v1, size_limit_proxy, tmp_path
):
    """Test that max_request_bytes below the proxy's limit cuts before sending."""
    proxy = await size_limit_proxy(INFLUX_V1_URL)
    config = v1_config(proxy.url, influx_v1.database, 25_000)
    lines = backlog_lines(NORMAL_POINTS, time.time_ns() // 10**9 * 10**9 - 10**14)
    sink = InfluxV1Sink(config)
    run = WriterRun(sink, config, tmp_path, max_request_bytes=1_000_000)

    async with running(run):
        await run.flush(lines)

    assert [status for _, status in proxy.writes] == [204, 204]
    assert max(size for size, _ in proxy.writes) <= 1_000_000
    assert stored_values(influx_v1) == expected_values(lines)


# aiohttp warns (ResourceWarning, ignored by default outside tests) when a
# request body over 1 MiB is given as bytes, which influxdb-client does.
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_too_large_413_from_the_v2_client_is_cut_the_same_way(
    victoria, size_limit_proxy, tmp_path
):
    """Test that influxdb-client's 413 with an HTML body is cut and kept the same."""
    proxy = await size_limit_proxy(VICTORIA_URL)
    config = InfluxConfig.model_validate(
        {
            "url": proxy.url,
            "api": "v2",
            "batch_size": 25_000,
            "flush_interval_s": 0.05,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
        }
    )
    run_tag = uuid.uuid4().hex[:10]
    start_ns = (int(time.time()) - 2 * NORMAL_POINTS) * 1_000_000_000
    normal = backlog_lines(NORMAL_POINTS, start_ns, tags=f",run={run_tag}")
    big = big_line(start_ns, tags=f",run={run_tag}")
    run = WriterRun(InfluxV2Sink(config), config, tmp_path)

    async with running(run):
        await run.flush([big] + normal)

    assert len(proxy.writes) <= MAX_FLUSH_REQUESTS, proxy.writes
    assert proxy.stored == collections.Counter(normal)
    [entry] = run.dead()
    assert entry["reason"] == "too_large"
    assert entry["detail"].startswith(f"point of 1.2 MB ({len(big):,} bytes)")
    # The body came as bytes; the detail holds its words, not a bytes repr.
    assert entry["detail"].endswith("HTTP 413: 413 Request Entity Too Large")
    expected_ms = [start_ns // 10**6 + index * 1000 for index in range(NORMAL_POINTS)]
    # VictoriaMetrics keeps a sample sent twice twice, so this finds duplicates.
    assert await victoria_timestamps(victoria, f'backlog_v{{run="{run_tag}"}}') == (
        expected_ms
    )


async def victoria_timestamps(victoria: Any, selector: str) -> list[int]:
    """Poll VictoriaMetrics until the series' samples stop growing; return times."""
    timestamps: list[int] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        series = victoria.export(selector)
        found = sorted(t for s in series for t in s["timestamps"])
        if found and found == timestamps:
            break
        timestamps = found
        await asyncio.sleep(0.3)
    return timestamps


@pytest.mark.parametrize(
    "body",
    [
        "",
        HTML_413,
        '{"code":"request too large","message":"unable to read data: points batch '
        'is too large"}',
    ],
    ids=["empty", "nginx-html", "influxdb-json"],
)
def test_classify_rejection_names_every_413_too_large(body):
    """Test that a 413 is too_large whatever its body, even an empty one."""
    assert classify_rejection(body, 413) == ("too_large", {})


def test_summarize_answer_gives_the_gist_of_html_json_and_text():
    """Test that an error answer is shown on one line: title, message or text."""
    assert summarize_answer(HTML_413) == "413 Request Entity Too Large"
    html = "<html><body><h1>Too big</h1>\n</body></html>"
    assert summarize_answer(html) == "Too big"
    json_body = '{"code":"invalid","message":"bad\\nline"}'
    assert summarize_answer(json_body) == "bad line"
    assert summarize_answer("plain\r\ntext ") == "plain text"


def test_answer_text_decodes_a_bytes_body_as_text():
    """Test that influxdb-client's bytes body becomes text, not a bytes repr."""
    assert answer_text(HTML_413.encode()) == HTML_413
    assert answer_text(b"\xff ok") == "\ufffd ok"
    assert answer_text(None) == ""
    assert answer_text("as is") == "as is"


def test_body_bytes_counts_utf8_bytes_and_one_newline_per_line():
    """Test that the body size is what the sink sends: UTF-8 plus newlines."""
    lines = ["m v=1 1", 'm s="é" 2']

    assert body_bytes(lines) == len(("\n".join(lines) + "\n").encode("utf-8"))
    assert body_bytes([]) == 0
