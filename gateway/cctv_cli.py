"""`decor cctv`: sample cameras, serve their snapshots, probe one camera."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from gateway.config import GatewayConfig

__all__ = ["cctv_app"]

cctv_app = typer.Typer(
    help="Sample CCTV cameras: snapshots on disk, health in InfluxDB and on MQTT.",
    no_args_is_help=True,
)


@cctv_app.command("run")
def run(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Gateway configuration file (TOML).")
    ] = Path("config/gateway.toml"),
    duration: Annotated[
        float | None, typer.Option(help="Stop by itself after this many seconds.")
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(help="Serve /cameras/{id}/snapshot.jpg and the API on this port."),
    ] = None,
    http_host: Annotated[str, typer.Option(help="Address to serve HTTP on.")] = (
        "127.0.0.1"
    ),
) -> None:
    """Sample the [[cameras]] of a configuration until SIGINT or SIGTERM."""
    from gateway.cli import _load_or_exit
    from gateway.logs import secrets_in, setup_logging

    settings = _load_or_exit(config)
    setup_logging(settings.log_level, settings.log_format, secrets=secrets_in(settings))
    if not settings.cameras:
        typer.echo(f"{config}: no [[cameras]] to sample", err=True)
        raise typer.Exit(code=2)
    asyncio.run(_run(settings, duration, http_host, http_port))


@cctv_app.command("probe")
def probe(
    url: Annotated[str, typer.Argument(help="Camera URL (rtsp://, http://, file).")],
    transport: Annotated[str, typer.Option(help="RTSP transport: tcp or udp.")] = "tcp",
    timeout: Annotated[float, typer.Option(help="Open and read timeout, s.")] = 5.0,
    out: Annotated[
        Path | None, typer.Option(help="Write the frame here as JPEG.")
    ] = None,
) -> None:
    """Take one frame from a camera and say what it shows (or why it failed)."""
    from gateway.cctv.analysis import AnalysisSettings, FrameAnalyzer, encode_jpeg
    from gateway.cctv.sources import CameraError, SourceSettings, make_source
    from gateway.cctv.urls import redact_url

    settings = SourceSettings(
        url,
        rtsp_transport="udp" if transport == "udp" else "tcp",
        open_timeout_s=timeout,
        read_timeout_s=timeout,
        stall_timeout_s=timeout * 2,
        reconnect_each_sample=True,
    )
    source = make_source(settings, threading.BoundedSemaphore(1))
    started = time.monotonic()
    try:
        source.open()
        frame = None
        while frame is None:
            frame = source.poll(True)
    except CameraError as exc:
        typer.echo(f"{redact_url(url)}: {exc}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        source.close()
    facts = FrameAnalyzer(AnalysisSettings()).analyse(frame.image)
    typer.echo(
        f"{redact_url(url)}: {frame.width}x{frame.height} in "
        f"{time.monotonic() - started:.2f} s (decode {frame.decode_s * 1000:.1f} ms); "
        f"brightness {facts.brightness:.0f}, sharpness {facts.sharpness:.0f}"
        f"{', covered' if facts.covered else ''}{', blurred' if facts.blurred else ''}"
    )
    if out is not None:
        out.write_bytes(encode_jpeg(frame.image, 90))


async def _run(
    settings: GatewayConfig, duration: float | None, host: str, port: int | None
) -> None:
    from gateway.cctv.runner import run_cctv

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    await run_cctv(settings, stop, http_host=host, http_port=port)
