"""The device kinds the simulator can play, and which of them report telemetry."""

from __future__ import annotations

import enum


class DeviceKind(enum.StrEnum):
    """Families of simulated devices."""

    TEMP_HUMIDITY = "temp_humidity"
    CO2 = "co2"
    PM25 = "pm25"
    WATER_LEAK = "water_leak"
    SMOKE = "smoke"
    GAS = "gas"
    DOOR_READER = "door_reader"
    CAMERA = "camera"
    EMERGENCY_BUTTON = "emergency_button"
    MOTION = "motion"


# Kinds that send a periodic reading (values or at least a battery heartbeat).
TELEMETRY_KINDS = frozenset(
    {
        DeviceKind.TEMP_HUMIDITY,
        DeviceKind.CO2,
        DeviceKind.PM25,
        DeviceKind.WATER_LEAK,
        DeviceKind.SMOKE,
        DeviceKind.GAS,
        DeviceKind.EMERGENCY_BUTTON,
    }
)
# Kinds whose ordinary life is a random stream of events (door reads, motion).
ACTIVITY_KINDS = frozenset({DeviceKind.DOOR_READER, DeviceKind.CAMERA, DeviceKind.MOTION})
