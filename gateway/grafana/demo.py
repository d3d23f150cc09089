"""The demo city in a registry: the simulator's agencies, sites and devices, placed.

`python -m gateway.grafana.demo grafana/` registers the demo fleet of
`make demo` in a throwaway registry and writes Grafana's file provisioning for
it; the output is committed in `grafana/` for the compose deployment.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from devices.profiles import load_profiles
from devices.simulator import SimulationOptions, list_devices
from gateway.grafana.bundle import InfluxSource, build_bundle
from gateway.grafana.city import read_city
from gateway.grafana.files import write_files
from gateway.grafana.naming import Generation
from gateway.registry import AgencyIn, CameraIn, DeviceIn, Registry, SiteIn

__all__ = ["DEMO_AGENCIES", "SUB_DISTRICTS", "seed_demo_registry", "site_id_of"]

ACTOR = "demo"
DEMO_AGENCIES = {
    "dinas-pupr": "Dinas PUPR Kota Depok",
    "bpbd": "BPBD Kota Depok",
    "dlhk": "DLHK Kota Depok",
}
# Approximate centres of Depok's sub-districts (kecamatan), degrees.
SUB_DISTRICTS = {
    "Beji": (-6.3754, 106.8176),
    "Bojongsari": (-6.4081, 106.7284),
    "Cilodong": (-6.4351, 106.8393),
    "Cimanggis": (-6.3713, 106.8631),
    "Cinere": (-6.3339, 106.7835),
    "Cipayung": (-6.4289, 106.8007),
    "Limo": (-6.3645, 106.7785),
    "Pancoran Mas": (-6.3989, 106.8063),
    "Sawangan": (-6.4135, 106.7560),
    "Sukmajaya": (-6.3985, 106.8418),
    "Tapos": (-6.4275, 106.8852),
}
# Demo cameras at river gauge sites (the CCTV sampler's test clip in the demo).
DEMO_CAMERAS = (
    ("cam-ciliwung-panus", "dinas-pupr", "Ciliwung, Pancoran Mas"),
    ("cam-pesanggrahan-sawangan", "dinas-pupr", "Pesanggrahan, Sawangan"),
)

logger = logging.getLogger(__name__)


def site_id_of(site_name: str) -> str:
    """Return the registry id of a simulator site name, e.g. "ciliwung-pancoran-mas"."""
    return site_name.lower().replace(",", "").replace(" ", "-")


def seed_demo_registry(
    registry: Registry, options: SimulationOptions | None = None
) -> None:
    """Register the simulator's agencies, sites, devices and the demo cameras."""
    fleet = list_devices(options or SimulationOptions(faulty_every_s=5.0), start_s=0.0)
    for agency_id, name in DEMO_AGENCIES.items():
        registry.add_agency(AgencyIn(agency_id=agency_id, name=name), ACTOR)
    site_names = sorted({d.site for d in fleet} | {c[2] for c in DEMO_CAMERAS})
    registry.add_sites([_site(name) for name in site_names], ACTOR)
    registry.add_devices(
        [
            DeviceIn(
                device_id=device.device_id,
                profile=device.device_type,
                agency=device.agency,
                site=site_id_of(device.site),
                status="active",
            )
            for device in fleet
        ],
        ACTOR,
    )
    registry.add_cameras(
        [
            CameraIn(
                camera_id=camera_id,
                agency=agency,
                site=site_id_of(site),
                status="active",
                stream_url=f"rtsp://127.0.0.1:8554/{camera_id}",
                password="",
            )
            for camera_id, agency, site in DEMO_CAMERAS
        ],
        ACTOR,
    )


def _site(name: str) -> SiteIn:
    # "Ciliwung, Pancoran Mas" lies in the sub-district after the comma; a
    # small offset per river keeps two gauges of one sub-district apart.
    area = name.split(", ")[-1]
    latitude, longitude = SUB_DISTRICTS[area]
    offset = {"Ciliwung": 0.004, "Pesanggrahan": -0.004}.get(name.split(", ")[0], 0.0)
    return SiteIn(
        site_id=site_id_of(name),
        name=name,
        area=area,
        latitude=round(latitude + offset, 4),
        longitude=round(longitude + offset, 4),
    )


def main(out_dir: str) -> None:
    """Write the demo city's Grafana file provisioning to `out_dir`."""
    with tempfile.TemporaryDirectory() as scratch:
        registry = Registry.open(
            f"sqlite:///{Path(scratch) / 'demo.db'}", profiles=load_profiles()
        )
        try:
            seed_demo_registry(registry)
            city = read_city(registry, load_profiles())
        finally:
            registry.close()
    # As the compose deployment reaches InfluxDB and the gateway's API.
    influx = InfluxSource("http://influxdb:8086", "1.x", "decor")
    bundle = build_bundle(
        city, Generation(gateway_api_url="http://localhost:8080"), influx
    )
    written = write_files(bundle, Path(out_dir))
    logger.info("Wrote %d files to %s", len(written), out_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(sys.argv[1] if len(sys.argv) > 1 else "grafana")
