"""Each module's __all__ lists names that exist, so the public API stays honest."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import gateway

MODULES = sorted(
    ["gateway"]
    + [info.name for info in pkgutil.walk_packages(gateway.__path__, "gateway.")]
)
PACKAGES = sorted(
    ["gateway"]
    + [
        info.name
        for info in pkgutil.walk_packages(gateway.__path__, "gateway.")
        if info.ispkg
    ]
)


@pytest.mark.parametrize("name", MODULES)
def test_public_names_of_module_exist(name):
    """Test that every name in a module's __all__ exists, once."""
    module = importlib.import_module(name)
    public = getattr(module, "__all__", [])

    missing = [item for item in public if not hasattr(module, item)]

    assert not missing, f"{name}.__all__ lists names it lacks: {missing}"
    assert len(public) == len(set(public)), f"{name}.__all__ repeats a name"


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_listed_by_every_package(name):
    """Test that every package of gateway lists its public names in __all__."""
    module = importlib.import_module(name)

    assert isinstance(getattr(module, "__all__", None), list | tuple)
    assert module.__all__, f"{name}.__all__ is empty"


def test_public_names_cover_the_expected_packages():
    """Test that the walk finds the pipeline stages, so the checks above run."""
    assert {"gateway.decoding", "gateway.sinks", "gateway.sources"} <= set(PACKAGES)
    assert "gateway.decoding.json_readings" in MODULES
