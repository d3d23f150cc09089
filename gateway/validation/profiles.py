"""Device profiles for the quality checks: the shipped ones and the operator's."""

from __future__ import annotations

import logging
from pathlib import Path

from devices.profiles import (
    PROFILE_SUFFIX,
    DeviceProfile,
    load_profile_file,
    load_profiles,
)
from gateway.errors import ConfigError

__all__ = ["DeviceProfile", "load_quality_profiles"]

logger = logging.getLogger(__name__)

PROFILES_DIR_KEY = "quality.profiles_dir"


def load_quality_profiles(
    profiles_dir: Path | None = None, source: str = ""
) -> dict[str, DeviceProfile]:
    """Return the shipped profiles, then those in `profiles_dir`, by device type.

    A profile in `profiles_dir` replaces a shipped one of the same device
    type. Raises ConfigError naming the file when one cannot be read.

    Args:
        profiles_dir: a directory of `*.toml` profiles; None: shipped ones only.
        source: the configuration file that named `profiles_dir`, for errors.
    """
    profiles = load_profiles()
    if profiles_dir is None:
        return profiles
    defined_in: dict[str, Path] = {}
    for path in _profile_files(profiles_dir, source):
        try:
            profile = load_profile_file(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(str(exc), key=PROFILES_DIR_KEY, source=source) from None
        earlier = defined_in.setdefault(profile.device_type, path)
        if earlier != path:
            raise ConfigError(
                f"{earlier.name} and {path.name} both define device type "
                f"{profile.device_type!r}; keep one",
                key=PROFILES_DIR_KEY,
                source=source,
            )
        if profile.device_type in profiles:
            logger.info(
                "Profile of %s from %s replaces the shipped one",
                profile.device_type,
                path,
            )
        profiles[profile.device_type] = profile
    return profiles


def _profile_files(directory: Path, source: str) -> list[Path]:
    if not directory.is_dir():
        raise ConfigError(
            f"{str(directory)!r} is not a directory of device profiles",
            key=PROFILES_DIR_KEY,
            source=source,
        )
    return sorted(directory.glob("*" + PROFILE_SUFFIX))
