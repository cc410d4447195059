"""Settings of the simulated driver: which devices to play, how often, and which scenario."""

from __future__ import annotations

import zoneinfo
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from device_drivers.base import DriverConfig
from device_drivers.simulated.kinds import ACTIVITY_KINDS, DeviceKind
from device_drivers.simulated.scenario import (
    DoorHeldOpenIncident,
    PlaceRef,
    Scenario,
    ScenarioError,
    SmokeIncident,
)
from wire.topics import ID_PATTERN

__all__ = ["SimulatedConfig", "SimulatedDevice", "check_incidents"]

# Options that only mean something for some kinds; giving them elsewhere is a config mistake.
_KIND_OPTIONS: dict[str, frozenset[DeviceKind]] = {
    "door": frozenset({DeviceKind.DOOR_READER}),
    "held_open_after_s": frozenset({DeviceKind.DOOR_READER}),
    "zone": frozenset({DeviceKind.CAMERA}),
    "line": frozenset({DeviceKind.CAMERA}),
    "rate_per_hour": ACTIVITY_KINDS,
}


class SimulatedDevice(BaseModel):
    """One simulated device."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="device id, as known to the hub's registry")
    kind: DeviceKind = Field(description="what kind of device to simulate")
    interval_s: float | None = Field(
        default=None,
        ge=1,
        le=86_400,
        description="telemetry period of this device; the driver's interval_s when absent",
    )
    rate_per_hour: float | None = Field(
        default=None,
        ge=0,
        le=100_000,
        description="door_reader, camera, motion: random activity per hour at the busiest "
        "time of day (0 for none); a per-kind default when absent",
    )
    door: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="door_reader: name of the door it guards; the device id when absent",
    )
    held_open_after_s: float = Field(
        default=30.0,
        gt=0,
        le=3_600,
        description="door_reader: how long the door may stay open before door.held_open",
    )
    zone: str = Field(
        default="perimeter",
        min_length=1,
        max_length=64,
        description="camera: zone named in its motion and intrusion events",
    )
    line: str = Field(
        default="line-1",
        min_length=1,
        max_length=64,
        description="camera: virtual line named in its line-crossing events",
    )

    @model_validator(mode="after")
    def _check_kind_options(self) -> Self:
        for option in sorted(self.model_fields_set & _KIND_OPTIONS.keys()):
            kinds = _KIND_OPTIONS[option]
            if self.kind not in kinds:
                allowed = ", ".join(sorted(kinds))
                msg = f"{option} applies to {allowed} devices only, not to {self.kind}"
                raise ValueError(msg)
        return self


class SimulatedConfig(DriverConfig):
    """Settings of one simulated driver instance."""

    type: Literal["simulated"] = Field(description="driver type")
    seed: int = Field(
        default=0,
        ge=0,
        lt=2**32,
        description="random seed; the same seed and clock give exactly the same outputs",
    )
    interval_s: float = Field(
        default=10.0, ge=1, le=86_400, description="telemetry period of each device, in seconds"
    )
    timezone: str = Field(
        default="UTC",
        description="IANA time zone of the site, for daily cycles (e.g. Asia/Shanghai)",
    )
    cards: int = Field(
        default=40,
        ge=1,
        le=10_000,
        description="number of residents' cards, shared by every door reader of this driver",
    )
    devices: tuple[SimulatedDevice, ...] = Field(
        min_length=1, description="the devices this driver simulates"
    )
    scenario: Scenario | None = Field(
        default=None, description="incidents to play, inline; see also scenario_file"
    )
    scenario_file: Path | None = Field(
        default=None, description="YAML file of incidents to play, read at open()"
    )

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            msg = f"unknown time zone {value!r}"
            raise ValueError(msg) from None
        return value

    @field_validator("devices")
    @classmethod
    def _check_unique_ids(cls, devices: tuple[SimulatedDevice, ...]) -> tuple[SimulatedDevice, ...]:
        seen: set[str] = set()
        for device in devices:
            if device.id in seen:
                msg = f"device id {device.id!r} appears more than once"
                raise ValueError(msg)
            seen.add(device.id)
        return devices

    @field_validator("scenario")
    @classmethod
    def _check_scenario(cls, scenario: Scenario | None, info: ValidationInfo) -> Scenario | None:
        devices = info.data.get("devices")
        if scenario is not None and devices is not None:
            check_incidents(scenario, devices)
        return scenario

    @model_validator(mode="after")
    def _check_one_scenario(self) -> Self:
        if self.scenario is not None and self.scenario_file is not None:
            msg = "give scenario or scenario_file, not both"
            raise ValueError(msg)
        return self

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        """The site's time zone."""
        return zoneinfo.ZoneInfo(self.timezone)


def check_incidents(scenario: Scenario, devices: Sequence[SimulatedDevice]) -> None:
    """Check that the incidents of ``devices`` fit them; incidents of other devices are skipped.

    Raises:
        ScenarioError: naming the incident and field, if an incident is still given by place,
            or does not fit the kind or settings of the device it names.
    """
    by_id = {device.id: device for device in devices}
    for index, incident in enumerate(scenario.incidents):
        if incident.device is None:
            raise ScenarioError(
                "place",
                "incident given by place: resolve the scenario (Scenario.resolve) first",
                index=index,
            )
        device = by_id.get(incident.device)
        if device is not None and device.kind not in incident.kinds:
            raise ScenarioError(
                "device",
                f"{device.id} is of kind {device.kind}; do: {incident.do} needs a device of kind "
                + " or ".join(sorted(incident.kinds)),
                index=index,
            )
        if isinstance(incident, SmokeIncident):
            for i, ref in enumerate(incident.heat):
                if isinstance(ref, PlaceRef):
                    raise ScenarioError(
                        f"heat.{i}", "given by place: resolve the scenario first", index=index
                    )
                target = by_id.get(ref)
                if target is not None and target.kind != DeviceKind.TEMP_HUMIDITY:
                    raise ScenarioError(
                        f"heat.{i}",
                        f"{ref} is of kind {target.kind}, not temp_humidity",
                        index=index,
                    )
        if (
            isinstance(incident, DoorHeldOpenIncident)
            and device is not None
            and incident.open_s <= device.held_open_after_s
        ):
            raise ScenarioError(
                "open_s",
                f"must exceed the reader's held_open_after_s ({device.held_open_after_s:g} s)",
                index=index,
            )
