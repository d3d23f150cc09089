"""Simulated city sensors for the DeCOR Gateway demo and tests, at real Depok sites.

River gauges, rain gauges and air-quality stations: `run_simulation` publishes
their telemetry over MQTT; `load_profiles` tells what each device type sends,
in which units and ranges. `CommandableDevice` is a gauge or a sluice gate
that also answers commands.
"""

from devices.actuators import ACTUATOR_TYPES, CommandableDevice
from devices.profiles import (
    DeviceProfile,
    FieldSpec,
    flatten_payload,
    load_profile,
    load_profiles,
)
from devices.simulator import (
    DEVICE_TYPES,
    SimulatedDevice,
    SimulationOptions,
    list_devices,
    run_simulation,
)

__all__ = [
    "ACTUATOR_TYPES",
    "DEVICE_TYPES",
    "CommandableDevice",
    "DeviceProfile",
    "FieldSpec",
    "SimulatedDevice",
    "SimulationOptions",
    "flatten_payload",
    "list_devices",
    "load_profile",
    "load_profiles",
    "run_simulation",
]
