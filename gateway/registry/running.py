"""The registry inside `decor run`: devices checked per point, the API served.

`gateway/app.py` holds one `GatewayRegistry` when `[registry] check_devices`
or `serve_api` is on, and calls it at three places only: `start` before the
MQTT session opens, `admit` for the points of each message, and `stop` at
shutdown. Everything else about the registry stays in this package.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.points import Point
from gateway.registry.errors import RegistryError
from gateway.registry.lookup import DeviceDirectory
from gateway.registry.service import Registry
from gateway.validation.profiles import load_quality_profiles

if TYPE_CHECKING:
    import uvicorn

__all__ = ["Admit", "GatewayRegistry", "Refusal", "replay_admission"]

logger = logging.getLogger(__name__)

# Longest wait for the API's thread to finish its requests at shutdown.
API_STOP_WAIT_S = 5.0
_UNKNOWN_POLICY = {
    "refuse": "refused",
    "pending": "refused and registered as pending",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why some points of a message were refused: a dead-letter reason and detail."""

    reason: str
    detail: str


Admit = Callable[[Iterable[Point]], tuple[list[Point], list[Refusal]]]


class GatewayRegistry:
    """The registry as a running gateway uses it."""

    def __init__(self, config: GatewayConfig, source: str = "") -> None:
        self.config = config
        self.source = source
        self.settings = config.registry
        self.registry: Registry | None = None
        self.directory: DeviceDirectory | None = None
        self._stop = asyncio.Event()
        self._refresh_task: asyncio.Task[None] | None = None
        self._api_server: uvicorn.Server | None = None
        self._api_thread: threading.Thread | None = None
        self._api_registry: Registry | None = None

    @classmethod
    def from_config(
        cls, config: GatewayConfig, source: str = ""
    ) -> GatewayRegistry | None:
        """Return the registry link the configuration asks for, or None if off."""
        if not (config.registry.check_devices or config.registry.serve_api):
            return None
        return cls(config, source)

    async def start(self) -> None:
        """Open the registry, read the devices once, and serve the API if asked.

        Raises RegistryError when the database cannot be opened or read, and
        ConfigError when the API's address cannot be bound: the gateway must
        not start without what its configuration promises.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    def admit(self, points: Iterable[Point]) -> tuple[list[Point], list[Refusal]]:
        """Return the points admitted (tagged) and why the others were refused.

        Each distinct refusal is listed once, so a message of many points
        from one unknown device makes one dead letter.
        """
        if self.directory is None:
            return list(points), []
        return _admit(self.directory, points)

    async def stop(self) -> None:
        """Stop refreshing, stop the API, and close the database."""
        self._stop.set()
        if self._refresh_task is not None:
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        if self._api_server is not None and self._api_thread is not None:
            self._api_server.should_exit = True
            await asyncio.to_thread(self._api_thread.join, API_STOP_WAIT_S)
            if self._api_registry is not None:
                self._api_registry.close()
        if self.registry is not None:
            self.registry.close()

    async def _start(self) -> None:
        profiles = load_quality_profiles(self.config.quality.profiles_dir, self.source)
        if self.settings.check_devices:
            self.registry = await asyncio.to_thread(
                Registry.open, self.settings.database_url, profiles
            )
            quality = self.config.quality
            self.directory = DeviceDirectory(
                self.registry,
                refresh_interval_s=self.settings.refresh_interval_s,
                unknown_devices=self.settings.unknown_devices,
                device_tag=quality.device_tag,
                profile_tag=quality.profile_tag,
            )
            count = await asyncio.to_thread(self.directory.refresh)
            self.directory.loaded.set()
            logger.info(
                "Checking devices against the registry: %d registered, re-read "
                "every %g s; unknown devices are %s",
                count,
                self.settings.refresh_interval_s,
                _UNKNOWN_POLICY[self.settings.unknown_devices],
            )
            self._refresh_task = asyncio.create_task(
                self.directory.run(self._stop), name="registry.refresh"
            )
        if self.settings.serve_api:
            await self._start_api()

    async def _start_api(self) -> None:
        # Imported here: a gateway that does not serve the API never loads
        # FastAPI and uvicorn.
        import uvicorn

        from gateway.api import create_app_from_config

        host, port = self.settings.api_host, self.settings.api_port
        # Bound here rather than by uvicorn, which would exit the process
        # when the port is taken; this way the operator gets one clear line.
        try:
            listener = socket.create_server((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                key="registry.api_port",
                source=self.source,
            ) from None
        try:
            app = await asyncio.to_thread(
                create_app_from_config, self.config, self.source
            )
        except BaseException:
            listener.close()
            raise
        self._api_registry = app.state.registry
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level=self.config.log_level,
                lifespan="off",
                # Keep the gateway's log format (text or JSON, secrets masked).
                log_config=None,
            )
        )
        # Its own thread and event loop: the API's database queries are
        # blocking and must never hold up the MQTT receive loop.
        thread = threading.Thread(
            target=server.run, args=([listener],), name="registry.api", daemon=True
        )
        thread.start()
        self._api_server, self._api_thread = server, thread
        while not server.started and thread.is_alive():
            await asyncio.sleep(0.05)
        if not server.started:
            raise RegistryError(f"the HTTP API on {host}:{port} did not start")
        logger.info(
            "Serving the registry's HTTP API on http://%s:%d (docs at /docs)",
            host,
            port,
        )


@contextmanager
def replay_admission(config: GatewayConfig, source: str = "") -> Iterator[Admit | None]:
    """Give the registry check a dead-letter replay applies; None if it is off.

    A replay stores only what the running gateway would: devices registered
    and in service, tagged with their agency. It never registers pending ones.
    Raises RegistryError when the registry cannot be read.
    """
    if not config.registry.check_devices:
        yield None
        return
    profiles = load_quality_profiles(config.quality.profiles_dir, source)
    registry = Registry.open(config.registry.database_url, profiles)
    try:
        directory = DeviceDirectory(
            registry,
            refresh_interval_s=config.registry.refresh_interval_s,
            device_tag=config.quality.device_tag,
            profile_tag=config.quality.profile_tag,
        )
        directory.refresh()
        yield lambda points: _admit(directory, points)
    finally:
        registry.close()


def _admit(
    directory: DeviceDirectory, points: Iterable[Point]
) -> tuple[list[Point], list[Refusal]]:
    admitted: list[Point] = []
    refusals: dict[Refusal, None] = {}
    for point in points:
        admission = directory.admit(point)
        if admission.point is not None:
            admitted.append(admission.point)
        else:
            refusals[Refusal(admission.reason, admission.detail)] = None
    return admitted, list(refusals)
