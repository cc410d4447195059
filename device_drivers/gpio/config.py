"""Settings of the GPIO driver: inputs (door contacts, exit buttons, leak probes) and relays."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from device_drivers.base import DriverConfig
from wire.topics import ID_PATTERN

__all__ = ["GpioConfig", "GpioInput", "GpioOutput", "InputKind", "PinFactoryName", "PinSpec"]

PinFactoryName = Literal["lgpio", "rpigpio", "pigpio", "native", "mock"]
_BCM_NAME = re.compile(r"^(?:GPIO|BCM)?(\d+)$")
_PIN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,7}(:\d{1,3})?$")
_MAX_BCM = 53


def _check_pin(value: int | str) -> int | str:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, str) and not _PIN_NAME.match(value):
        msg = "give a BCM number (17) or a gpiozero pin name (GPIO17, BOARD11, J8:11)"
        raise ValueError(msg)
    if isinstance(value, int) and not 0 <= value <= _MAX_BCM:
        msg = f"BCM pin numbers go from 0 to {_MAX_BCM}"
        raise ValueError(msg)
    return value


def _not_bool(value: object) -> object:
    if isinstance(value, bool):
        msg = "give a BCM number or a gpiozero pin name, not a boolean"
        raise ValueError(msg)  # noqa: TRY004 - pydantic wants ValueError
    return value


# A BCM number, or a gpiozero pin name: GPIO17, BCM17, BOARD11, J8:11, WPI0.
PinSpec = Annotated[int | str, BeforeValidator(_not_bool), AfterValidator(_check_pin)]


class InputKind(enum.StrEnum):
    """What is wired to an input, and so what it reports."""

    DOOR_CONTACT = "door_contact"  # door.contact {open} and the reading door_open
    EXIT_BUTTON = "exit_button"  # door.exit_request when pressed
    LEAK_PROBE = "leak_probe"  # alarm.water_leak {active} and the reading water_leak


def pin_key(pin: int | str) -> str:
    """A name for duplicate checks: 17, "17", "GPIO17" and "BCM17" are the same pin."""
    match = _BCM_NAME.match(str(pin).upper())
    return f"GPIO{int(match.group(1))}" if match else str(pin).upper()


class GpioInput(BaseModel):
    """One input pin.

    The pin is *active* as gpiozero says: with ``pull_up: true`` (a dry contact between the pin
    and GND) the contact is closed when the pin is low, and that is active.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = Field(pattern=ID_PATTERN, description="device id, as known to the hub's registry")
    kind: InputKind = Field(description="door_contact, exit_button or leak_probe")
    pin: PinSpec = Field(description="BCM number (17) or gpiozero pin name (GPIO17, BOARD11)")
    pull_up: bool | None = Field(
        default=True,
        description="true: internal pull-up, contact to GND (closed = low = active); false: "
        "pull-down; null: no internal resistor (opto-isolated boards), give active_state",
    )
    active_state: bool | None = Field(
        default=None,
        description="only with pull_up: null; true if a high pin means the contact is closed",
    )
    invert: bool = Field(
        default=False,
        description="door_contact: the door is open when the contact is open (inactive); invert "
        "for a contact that closes when the door opens.  exit_button: pressed is active; invert "
        "for a normally-closed button.  leak_probe: a leak closes the contact (active); invert "
        "for fail-safe normally-closed outputs, where an open loop or a cut wire is the alarm",
    )
    bounce_ms: float = Field(
        default=50.0,
        ge=0,
        le=5_000,
        description="a change counts once the pin has been steady this long (20-50 ms for door "
        "contacts and buttons, 50-200 ms for leak probes); 0 turns debouncing off",
    )
    door: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="door_contact, exit_button: name of the door, carried in the events",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.pull_up is None and self.active_state is None:
            msg = "a floating input (pull_up: null) needs active_state"
            raise ValueError(msg)
        if self.pull_up is not None and self.active_state is not None:
            msg = "active_state applies only to floating inputs (pull_up: null)"
            raise ValueError(msg)
        if self.door is not None and self.kind is InputKind.LEAK_PROBE:
            msg = "door applies to door_contact and exit_button inputs only"
            raise ValueError(msg)
        return self


class GpioOutput(BaseModel):
    """One relay output: a door strike, a siren, a valve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=ID_PATTERN, description="name commands use, e.g. east-gate-strike")
    pin: PinSpec = Field(description="BCM number (27) or gpiozero pin name (GPIO27, BOARD13)")
    active_high: bool = Field(
        default=True,
        description="false for the many relay boards that switch on a low pin",
    )
    initial_value: bool = Field(
        default=False,
        description="state at start and after close, the safe state: off keeps a fail-secure "
        "strike locked and a siren quiet",
    )


class GpioConfig(DriverConfig):
    """Settings of one GPIO driver: the inputs and relay outputs of one gateway's header."""

    type: Literal["gpio"] = Field(description="driver type")
    pin_factory: PinFactoryName | None = Field(
        default=None,
        description="gpiozero pin factory: lgpio (Pi 5 and others), rpigpio, pigpio, native, or "
        "mock (no hardware: demos and tests); null lets gpiozero choose "
        "(GPIOZERO_PIN_FACTORY, else lgpio first)",
    )
    inputs: tuple[GpioInput, ...] = Field(default=(), description="input pins")
    outputs: tuple[GpioOutput, ...] = Field(default=(), description="relay outputs")
    heartbeat_s: float | None = Field(
        default=300.0,
        ge=1,
        le=86_400,
        description="re-send each door contact's and leak probe's state as a reading this often, "
        "so absence rules see the input alive; null for changes only",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.inputs and not self.outputs:
            msg = "give at least one input or output"
            raise ValueError(msg)
        pins: dict[str, str] = {}
        kinds: set[tuple[str, InputKind]] = set()
        names: set[str] = set()
        for where, pin in [(f"inputs.{i}", x.pin) for i, x in enumerate(self.inputs)] + [
            (f"outputs.{i}", x.pin) for i, x in enumerate(self.outputs)
        ]:
            key = pin_key(pin)
            if key in pins:
                msg = f"{where}: pin {pin} is already used by {pins[key]}"
                raise ValueError(msg)
            pins[key] = where
        for spec in self.inputs:
            if (spec.device, spec.kind) in kinds:
                msg = f"device {spec.device!r} has two {spec.kind} inputs"
                raise ValueError(msg)
            kinds.add((spec.device, spec.kind))
        for out in self.outputs:
            if out.name in names:
                msg = f"output name {out.name!r} appears more than once"
                raise ValueError(msg)
            names.add(out.name)
        return self
