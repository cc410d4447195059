"""Settings of the DS18B20 driver: where the 1-Wire bus is, which sensors, how often."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device_drivers.base import DriverConfig
from wire.topics import ID_PATTERN

__all__ = ["W1_DEVICES", "Ds18b20Config", "Ds18b20Sensor"]

W1_DEVICES = Path("/sys/bus/w1/devices")
# Family 0x28 (DS18B20) and the 48-bit serial number, as w1 names the device directory.
W1_ID_PATTERN = r"^28-[0-9a-f]{12}$"


class Ds18b20Sensor(BaseModel):
    """One DS18B20 on the bus."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    w1_id: str = Field(
        pattern=W1_ID_PATTERN,
        description="1-Wire id, the name of its directory under the bus, e.g. 28-0316a27963ff",
    )
    device: str = Field(pattern=ID_PATTERN, description="device id, as known to the hub's registry")
    offset_c: float = Field(
        default=0.0,
        ge=-10,
        le=10,
        description="calibration offset added to every reading, in °C",
    )

    @field_validator("w1_id", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class Ds18b20Config(DriverConfig):
    """Settings of one DS18B20 driver: the sensors of one 1-Wire bus master."""

    type: Literal["ds18b20"] = Field(description="driver type")
    root: Path = Field(
        default=W1_DEVICES,
        description="directory holding the 28-* device directories (the sysfs w1 bus)",
    )
    sensors: tuple[Ds18b20Sensor, ...] = Field(min_length=1, description="the sensors to read")
    interval_s: float = Field(
        default=60.0, ge=1, le=86_400, description="seconds between readings of every sensor"
    )
    min_c: float = Field(
        default=-55.0, ge=-55, le=125, description="readings below this are rejected, in °C"
    )
    max_c: float = Field(
        default=125.0, ge=-55, le=125, description="readings above this are rejected, in °C"
    )
    read_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="a read that takes longer (a conversion takes up to 750 ms) is a failure",
    )
    failures_to_fault: int = Field(
        default=3,
        ge=1,
        le=1_000,
        description="consecutive failed readings of a sensor (gone, CRC error, power-on value, "
        "out of range) before its device.fault",
    )

    @field_validator("sensors")
    @classmethod
    def _check_unique(cls, sensors: tuple[Ds18b20Sensor, ...]) -> tuple[Ds18b20Sensor, ...]:
        for attr in ("w1_id", "device"):
            seen: set[str] = set()
            for sensor in sensors:
                value = getattr(sensor, attr)
                if value in seen:
                    msg = f"{attr} {value!r} appears more than once"
                    raise ValueError(msg)
                seen.add(value)
        return sensors

    @model_validator(mode="after")
    def _check_range(self) -> Self:
        if self.min_c >= self.max_c:
            msg = "min_c must be below max_c"
            raise ValueError(msg)
        return self
