"""Settings of the UART sensor drivers: where the port is, how often to read, when to fault."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from device_drivers.base import DriverConfig
from device_drivers.uart.pms5003 import Particles
from wire.topics import ID_PATTERN

__all__ = ["Mhz19Config", "Pms5003Config", "UartSensorConfig"]


class UartSensorConfig(DriverConfig):
    """What every UART sensor driver needs: one port, one device, timing and fault rules."""

    port: str = Field(
        min_length=1,
        description="serial port: a device path (/dev/ttyAMA0, /dev/serial/by-id/...) or a "
        "pyserial URL (socket://host:port for ser2net, rfc2217://host:port)",
    )
    baudrate: int = Field(default=9600, gt=0, description="line speed; these sensors use 9600")
    device: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="device id, as known to the hub's registry; the driver id when absent",
    )
    interval_s: float = Field(
        default=30.0,
        ge=1,
        le=86_400,
        description="seconds between samples (and between queries, for sensors that are asked)",
    )
    timeout_s: float = Field(
        default=2.0,
        gt=0,
        le=3_600,
        description="how long to wait for a valid frame before counting a failure",
    )
    failures_to_fault: int = Field(
        default=3,
        ge=1,
        le=1_000,
        description="consecutive failures (no valid frame in time, a port error) before "
        "device.fault; one glitch on a noisy line is not a fault",
    )
    reconnect_max_s: float = Field(
        default=60.0,
        ge=1,
        le=3_600,
        description="longest wait between attempts to reopen a port that went away; the wait "
        "starts at 1 s and doubles",
    )
    warmup_s: float = Field(
        default=0.0,
        ge=0,
        le=3_600,
        description="after the port opens, valid frames count for health but are not reported "
        "for this long (PMS5003: 30 s after waking; MH-Z19: about 3 min after power-on)",
    )

    @property
    def device_id(self) -> str:
        """The id readings and events are reported under."""
        return self.device or self.id


class Pms5003Config(UartSensorConfig):
    """Settings of a Plantower PMS5003 particulate sensor."""

    type: Literal["pms5003"] = Field(description="driver type")
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=3_600,
        description="active mode: longest silence before a failure is counted (the sensor "
        "streams every 0.2-2.3 s); passive mode: how long to wait for the answer to a read",
    )
    mode: Literal["active", "passive"] = Field(
        default="active",
        description="active: the sensor streams frames by itself (its power-on default) and "
        "one per interval_s is reported; passive: the driver asks for one every interval_s",
    )
    set_mode: bool = Field(
        default=True,
        description="send the mode command whenever the port opens, so a sensor left in the "
        "other mode by another program does not stay silent",
    )
    particles: Particles = Field(
        default="atmospheric",
        description="which concentrations to report: atmospheric (ambient air, the usual "
        "choice) or standard (CF=1, the factory calibration particle)",
    )

    @model_validator(mode="after")
    def _check_timeout(self) -> Self:
        if self.mode == "passive" and self.timeout_s >= self.interval_s:
            msg = "timeout_s must be shorter than interval_s in passive mode"
            raise ValueError(msg)
        return self


class Mhz19Config(UartSensorConfig):
    """Settings of a Winsen MH-Z19 / MH-Z19B CO₂ sensor, asked for a reading every interval."""

    type: Literal["mhz19"] = Field(description="driver type")
    interval_s: float = Field(
        default=30.0,
        ge=5,
        le=86_400,
        description="seconds between queries; the sensor should not be asked more often than "
        "every 5 s",
    )
    abc: bool | None = Field(
        default=None,
        description="set automatic baseline correction when the port opens: true for rooms "
        "that see fresh air daily, false for rooms that never do; null leaves it as it is",
    )
    temperature: bool = Field(
        default=False,
        description="also report the sensor's internal temperature (undocumented, coarse, "
        "warmer than the room)",
    )

    @model_validator(mode="after")
    def _check_timeout(self) -> Self:
        if self.timeout_s >= self.interval_s:
            msg = "timeout_s must be shorter than interval_s"
            raise ValueError(msg)
        return self
