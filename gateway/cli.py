"""The `decor` command: run the gateway, simulate devices, check a configuration."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from gateway.app import Gateway
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.stats import GatewayStats

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

app = typer.Typer(
    help="DeCOR Gateway: city sensor telemetry from MQTT into InfluxDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, highlight=False)

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help="Gateway configuration file (TOML).", show_default=True
    ),
]


@app.command()
def run(
    config: ConfigOption = Path("config/gateway.toml"),
    duration: Annotated[
        float | None,
        typer.Option(
            help="Stop by itself after this many seconds (default: run until "
            "SIGINT/SIGTERM)."
        ),
    ] = None,
    summary: Annotated[
        bool, typer.Option(help="Print a one-line summary every few seconds.")
    ] = True,
) -> None:
    """Run the gateway in the foreground until SIGINT or SIGTERM."""
    settings = _load_or_exit(config)
    _setup_logging(settings.log_level)
    try:
        gateway = Gateway(settings, source=str(config))
    except ConfigError as exc:
        _fail(str(exc))
    asyncio.run(_run_gateway(gateway, duration, summary))


@app.command()
def check(config: ConfigOption = Path("config/gateway.toml")) -> None:
    """Validate a configuration file (and DECOR_* overrides) without connecting."""
    settings = _load_or_exit(config)
    try:
        Gateway(settings, source=str(config))
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"{escape(str(config))}: configuration is valid", soft_wrap=True)


@app.command()
def simulate(
    host: Annotated[str, typer.Option(help="MQTT broker host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="MQTT broker port.")] = 18830,
    devices: Annotated[
        int, typer.Option(min=1, help="Simulated devices of each type.")
    ] = 4,
    interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds between two readings of a device.")
    ] = 5.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds.")
    ] = None,
    topic_prefix: Annotated[str, typer.Option(help="First topic level.")] = "city",
    seed: Annotated[int, typer.Option(help="Random seed, for repeatable runs.")] = 1,
    rain: Annotated[
        bool, typer.Option(help="Simulate a storm raising the rivers.")
    ] = True,
) -> None:
    """Publish readings from simulated river, rain and air-quality devices."""
    from devices.simulator import SimulationOptions, list_devices, run_simulation

    _setup_logging("info")
    options = SimulationOptions(
        host=host,
        port=port,
        devices_per_type=devices,
        interval_s=interval,
        duration_s=duration,
        topic_prefix=topic_prefix,
        seed=seed,
        rain_event=rain,
    )
    fleet = list_devices(options)
    console.print(
        f"Simulating {len(fleet)} devices on {host}:{port}, one reading each every "
        f"{interval:g} s"
    )
    published = 0

    def count(topic: str, payload: bytes) -> None:
        nonlocal published
        published += 1

    asyncio.run(_until_signal(run_simulation(options, on_publish=count)))
    console.print(f"Published {published:,} readings")


def main() -> None:
    """Entry point of the `decor` console script."""
    app()


async def _run_gateway(
    gateway: Gateway, duration_s: float | None, summary: bool
) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    extra: list[asyncio.Task[None]] = []
    if duration_s is not None:
        extra.append(asyncio.create_task(_set_after(stop, duration_s), name="duration"))
    if summary:
        extra.append(
            asyncio.create_task(_print_summaries(gateway.stats), name="console.summary")
        )
    try:
        await gateway.run(stop)
    finally:
        for task in extra:
            task.cancel()
        _print_summary_line(gateway.stats, None)


async def _until_signal(work: Coroutine[Any, Any, int]) -> int | None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    task = asyncio.ensure_future(work)
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
    stopper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return None


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)


async def _set_after(stop: asyncio.Event, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    logger.info("Ran for %.0f s as asked; stopping", delay_s)
    stop.set()


async def _print_summaries(stats: GatewayStats) -> None:
    previous = (time.monotonic(), 0)
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL_S)
        previous = _print_summary_line(stats, previous)


def _print_summary_line(
    stats: GatewayStats, previous: tuple[float, int] | None
) -> tuple[float, int]:
    now = time.monotonic()
    rate = ""
    if previous is not None:
        elapsed = max(now - previous[0], 1e-9)
        rate = f"{(stats.messages_received - previous[1]) / elapsed:8.1f} msg/s  "
    rejects = sum(stats.messages_rejected.values())
    reasons = ", ".join(
        f"{reason} {count}" for reason, count in stats.messages_rejected.most_common(3)
    )
    line = (
        f"{rate}received {stats.messages_received:,}  "
        f"stored {stats.points_written:,} points  "
        f"buffered {stats.points_buffered:,}  rejected {rejects:,}"
    )
    if reasons:
        line += f" ({reasons})"
    if stats.fields_rejected:
        line += f"  values left out {sum(stats.fields_rejected.values()):,}"
    console.print(line, soft_wrap=True)
    return now, stats.messages_received


def _load_or_exit(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail(str(exc))


def _fail(message: str) -> typer.Exit:
    # The message quotes operator input, which may hold rich markup like "[/]".
    console.print(
        f"[bold red]Configuration error:[/] {escape(message)}", soft_wrap=True
    )
    raise typer.Exit(code=2)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    # httpx logs every request at info, and gmqtt warns on every failed
    # connection attempt (with a traceback); we log each change of state
    # once, ourselves, and keep the libraries' own lines for debug runs.
    library_level = logging.DEBUG if level == "debug" else logging.ERROR
    for noisy in ("gmqtt", "gateway.sources.gmqtt", "httpx"):
        logging.getLogger(noisy).setLevel(library_level)
