"""Realistic, seeded simulators of every device family, driven by a scenario of incidents.

Used by the demo (on a scaled clock), by tests (on a manual clock) and by installers who want
to see data flow before any hardware is wired.  Configure it like any driver::

    - type: simulated
      id: sim-b3
      seed: 7
      devices:
        - {id: b3-2-201-smoke, kind: smoke}
        - {id: east-gate-reader, kind: door_reader, door: east-gate}
      scenario_file: scenarios/fire.yaml
"""

from __future__ import annotations

from device_drivers.simulated.config import SimulatedConfig, SimulatedDevice, check_incidents
from device_drivers.simulated.driver import SimulatedDriver
from device_drivers.simulated.kinds import DeviceKind
from device_drivers.simulated.scenario import (
    Incident,
    PlaceLookup,
    PlaceRef,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
)

__all__ = [
    "DeviceKind",
    "Incident",
    "PlaceLookup",
    "PlaceRef",
    "Scenario",
    "ScenarioError",
    "SimulatedConfig",
    "SimulatedDevice",
    "SimulatedDriver",
    "check_incidents",
    "load_scenario",
    "parse_duration",
    "parse_scenario",
]
