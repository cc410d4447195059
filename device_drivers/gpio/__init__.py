"""GPIO inputs and relay outputs on the gateway's own header, through gpiozero.

Door contacts, exit (request-to-exit) buttons and leak probes are dry contacts between a pin
and GND with the internal pull-up (closed = low); relays drive door strikes and sirens.
Configure them like any driver::

    - type: gpio
      id: gpio-east-gate
      pin_factory: lgpio               # null lets gpiozero choose; mock for demos
      inputs:
        - {device: east-gate-contact, kind: door_contact, pin: 17, door: east-gate}
        - {device: east-gate-rex, kind: exit_button, pin: 22, door: east-gate, bounce_ms: 30}
        - {device: pump-room-leak, kind: leak_probe, pin: 23, invert: true, bounce_ms: 200}
      outputs:
        - {name: east-gate-strike, pin: 27, active_high: false}   # active-low relay board
        - {name: pump-room-siren, pin: 24}

Relays are driven through :meth:`GpioDriver.set_output` and :meth:`GpioDriver.pulse_output`.
"""

from __future__ import annotations

from device_drivers.gpio.config import (
    GpioConfig,
    GpioInput,
    GpioOutput,
    InputKind,
    PinFactoryName,
    PinSpec,
)
from device_drivers.gpio.driver import GpioDriver

__all__ = [
    "GpioConfig",
    "GpioDriver",
    "GpioInput",
    "GpioOutput",
    "InputKind",
    "PinFactoryName",
    "PinSpec",
]
