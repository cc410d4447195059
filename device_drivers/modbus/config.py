"""Settings of the Modbus RTU driver: one serial bus, its line settings, the devices on it."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from device_drivers.base import DriverConfig
from device_drivers.modbus.profiles import (
    PROFILES,
    Encoding,
    FunctionCode,
    ValueSpec,
    WordOrder,
    plan_reads,
)
from device_drivers.serial_port import SerialSettings
from wire.events import EVENT_SPECS, ActiveFlag
from wire.topics import ID_PATTERN

__all__ = [
    "ALARM_EVENT_KINDS",
    "ModbusConfig",
    "ModbusDevice",
    "RegisterConfig",
    "ValueOverride",
]

VALUE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"

# Event kinds whose data is exactly {active}: the ones a register or input can raise by itself.
ALARM_EVENT_KINDS = frozenset(
    kind for kind, spec in EVENT_SPECS.items() if spec.data_model is ActiveFlag
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RegisterConfig(_Frozen):
    """One value of a custom register map (for devices no built-in profile describes)."""

    name: str = Field(
        pattern=VALUE_NAME_PATTERN,
        description="value name in readings, e.g. temperature, humidity, water_leak",
    )
    function: Literal[1, 2, 3, 4] = Field(
        description="1 coils, 2 discrete inputs, 3 holding registers, 4 input registers"
    )
    address: int = Field(ge=0, le=0xFFFF, description="protocol address (0-based) on the wire")
    encoding: Encoding | None = Field(
        default=None,
        description="bit (functions 1, 2), int16, uint16, int32, uint32, float32, sign10000; "
        "bit for functions 1 and 2 and uint16 for 3 and 4 when absent",
    )
    word_order: WordOrder = Field(
        default="big", description="32-bit values: big = high word first, little = low first"
    )
    scale: float = Field(default=1.0, description="factor applied to the raw number, e.g. 0.1")
    offset: float = Field(default=0.0, description="added after scaling")
    unit: str = Field(default="", max_length=16, description="unit after scaling, e.g. °C")
    invert: bool = Field(default=False, description="bits: report 1 when the input reads 0")
    event: str | None = Field(
        default=None,
        description="emit this {active} event when the value turns non-zero or back to zero: "
        + ", ".join(sorted(ALARM_EVENT_KINDS)),
    )

    @field_validator("event")
    @classmethod
    def _check_event(cls, value: str | None) -> str | None:
        if value is not None and value not in ALARM_EVENT_KINDS:
            known = ", ".join(sorted(ALARM_EVENT_KINDS))
            msg = f"event {value!r} cannot come from a register; use one of {known}"
            raise ValueError(msg)
        return value

    def to_spec(self) -> ValueSpec:
        """The register map entry this describes.

        Raises:
            ValueError: if the encoding does not fit the function code, or scale is zero.
        """
        function = FunctionCode(self.function)
        encoding = self.encoding
        if encoding is None:
            encoding = Encoding.BIT if function.reads_bits else Encoding.UINT16
        return ValueSpec(
            name=self.name,
            function=function,
            address=self.address,
            encoding=encoding,
            scale=self.scale,
            offset=self.offset,
            unit=self.unit,
            word_order=self.word_order,
            invert=self.invert,
            event=self.event,
        )

    @model_validator(mode="after")
    def _check_spec(self) -> Self:
        self.to_spec()  # ValueSpec checks encoding against function, scale, invert
        return self


class ValueOverride(_Frozen):
    """Replaces the scale and/or offset of one value of a profile (calibration, variants)."""

    scale: float | None = Field(default=None, description="new factor; the profile's if absent")
    offset: float | None = Field(default=None, description="new offset; the profile's if absent")

    @model_validator(mode="after")
    def _check_something(self) -> Self:
        if self.scale is None and self.offset is None:
            msg = "give scale, offset or both"
            raise ValueError(msg)
        return self


class ModbusDevice(_Frozen):
    """One device (slave) on the bus."""

    id: str = Field(pattern=ID_PATTERN, description="device id, as known to the hub's registry")
    unit: int = Field(ge=1, le=247, description="Modbus address (slave id) of the device, 1..247")
    profile: str | None = Field(
        default=None,
        description="built-in register map: " + ", ".join(sorted(PROFILES)),
    )
    registers: tuple[RegisterConfig, ...] | None = Field(
        default=None, min_length=1, description="custom register map, instead of a profile"
    )
    overrides: dict[str, ValueOverride] = Field(
        default_factory=dict,
        description="per value name: scale and/or offset replacing the map's, e.g. "
        "{temperature: {offset: -0.5}}",
    )
    poll_interval_s: float | None = Field(
        default=None,
        ge=0.1,
        le=86_400,
        description="how often to read this device; the driver's poll_interval_s when absent",
    )
    debounce_polls: int = Field(
        default=2,
        ge=1,
        le=20,
        description="consecutive polls an alarm input must agree on before its state changes",
    )

    @field_validator("profile")
    @classmethod
    def _check_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in PROFILES:
            known = ", ".join(sorted(PROFILES))
            msg = f"unknown profile {value!r}; built-in profiles: {known}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _check_map(self) -> Self:
        if (self.profile is None) == (self.registers is None):
            msg = "give either profile or registers, not both and not neither"
            raise ValueError(msg)
        base = self._base_specs()
        names = [spec.name for spec in base]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            msg = f"value name(s) {', '.join(duplicates)} appear more than once"
            raise ValueError(msg)
        unknown = sorted(set(self.overrides) - set(names))
        if unknown:
            msg = f"overrides name unknown value(s) {', '.join(unknown)}; known: {', '.join(names)}"
            raise ValueError(msg)
        plan_reads(self.value_specs())  # overlapping addresses
        return self

    def _base_specs(self) -> tuple[ValueSpec, ...]:
        if self.registers is not None:
            return tuple(register.to_spec() for register in self.registers)
        if self.profile is not None:
            return PROFILES[self.profile].values
        return ()

    def value_specs(self) -> tuple[ValueSpec, ...]:
        """The device's register map: its profile's or its own, with overrides applied."""
        specs = []
        for spec in self._base_specs():
            override = self.overrides.get(spec.name)
            if override is not None:
                spec = spec.with_calibration(scale=override.scale, offset=override.offset)  # noqa: PLW2901
            specs.append(spec)
        return tuple(specs)


class ModbusConfig(DriverConfig):
    """Settings of one Modbus RTU bus (one serial port) and the devices on it."""

    type: Literal["modbus_rtu"] = Field(description="driver type")
    port: str = Field(
        min_length=1,
        description="serial port or pyserial URL: /dev/ttyUSB0, /dev/serial/by-id/..., "
        "socket://host:port (ser2net, TCP-to-RS485 converters), rfc2217://host:port",
    )
    baudrate: int = Field(default=9600, ge=300, le=921_600, description="line speed")
    bytesize: Literal[7, 8] = Field(default=8, description="data bits")
    parity: Literal["N", "E", "O"] = Field(default="N", description="N, E (spec default) or O")
    stopbits: Literal[1, 2] = Field(default=1, description="stop bits")
    timeout_s: float = Field(
        default=0.5, ge=0.02, le=10, description="wait for an answer this long per attempt"
    )
    retries: int = Field(
        default=1, ge=0, le=5, description="attempts after the first before a poll fails"
    )
    poll_interval_s: float = Field(
        default=10.0, ge=0.1, le=86_400, description="how often each device is read"
    )
    request_gap_s: float = Field(
        default=0.05,
        ge=0,
        le=2,
        description="bus silence between two requests (cheap sensors want 50-200 ms)",
    )
    failures_to_fault: int = Field(
        default=3,
        ge=1,
        le=100,
        description="consecutive failed polls before a device reports device.fault",
    )
    reconnect_max_s: float = Field(
        default=30.0, ge=0.5, le=3_600, description="cap of the back-off when the port is gone"
    )
    devices: tuple[ModbusDevice, ...] = Field(
        min_length=1, max_length=247, description="the devices on this bus"
    )

    @field_validator("devices")
    @classmethod
    def _check_unique(cls, devices: tuple[ModbusDevice, ...]) -> tuple[ModbusDevice, ...]:
        ids: set[str] = set()
        units: dict[int, str] = {}
        for device in devices:
            if device.id in ids:
                msg = f"device id {device.id!r} appears more than once"
                raise ValueError(msg)
            ids.add(device.id)
            other = units.get(device.unit)
            if other is not None:
                msg = f"devices {other!r} and {device.id!r} share unit {device.unit} on one bus"
                raise ValueError(msg)
            units[device.unit] = device.id
        return devices

    @property
    def line(self) -> SerialSettings:
        """The serial line settings."""
        return SerialSettings(
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
        )
