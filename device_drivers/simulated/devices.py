"""Behaviour models of simulated devices, one class per device kind.

Each model keeps a small agenda of timed actions (a telemetry tick, the next random card read,
the door closing again, the end of an alarm).  The driver asks a model when it is next due and
then runs it at that instant; a model only ever produces outputs stamped with the instant it is
run at, so the driver can merge many models into one time-ordered stream.

Randomness comes from per-device generators seeded from the driver's seed and the device id with
a stable hash, so a device behaves the same whatever other devices share its driver.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import math
import random
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from device_drivers.base import DeviceEvent, DriverOutput, Sample
from device_drivers.simulated.config import SimulatedDevice
from device_drivers.simulated.kinds import DeviceKind
from device_drivers.simulated.scenario import (
    DeniedCardsIncident,
    DoorForcedIncident,
    DoorHeldOpenIncident,
    EmergencyButtonIncident,
    GasIncident,
    HeatIncident,
    Incident,
    IntrusionIncident,
    LineCrossingIncident,
    OfflineIncident,
    SilenceIncident,
    SmokeIncident,
    StuckIncident,
    TamperIncident,
    WaterLeakIncident,
)

__all__ = [
    "MODEL_BY_KIND",
    "Card",
    "CardPool",
    "DeviceModel",
    "SimContext",
    "create_model",
    "device_rng",
    "wiegand26",
]

_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 24 * _MS_PER_HOUR

Action = Callable[[int], Iterable[DriverOutput]]

# Relative activity of residents by local hour (0..23), 1.0 at the busiest hour: quiet nights,
# a morning and an evening peak.  Linear in between.
RESIDENTIAL_ACTIVITY = (
    0.08, 0.05, 0.04, 0.04, 0.05, 0.12, 0.45, 0.9, 1.0, 0.6, 0.5, 0.55,
    0.65, 0.55, 0.45, 0.45, 0.55, 0.85, 1.0, 0.95, 0.8, 0.6, 0.35, 0.15,
)  # fmt: skip
# Movement inside a dwelling: frequent by day, rare at night (a trip to the bathroom).
DWELLING_ACTIVITY = (
    0.03, 0.02, 0.02, 0.02, 0.03, 0.1, 0.5, 0.9, 1.0, 0.8, 0.7, 0.75,
    0.85, 0.7, 0.6, 0.6, 0.7, 0.85, 1.0, 1.0, 0.9, 0.75, 0.45, 0.12,
)  # fmt: skip
# How many people are at home, which drives indoor CO2: most at night and in the evening.
OCCUPANCY = (
    1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.85, 0.5, 0.3, 0.25, 0.25,
    0.3, 0.3, 0.25, 0.25, 0.3, 0.45, 0.7, 0.9, 1.0, 1.0, 1.0, 1.0,
)  # fmt: skip

# Card reads per hour, camera motions per hour, dwelling movements per hour at the busiest hour.
DEFAULT_RATE_PER_HOUR: Mapping[DeviceKind, float] = {
    DeviceKind.DOOR_READER: 30.0,
    DeviceKind.CAMERA: 12.0,
    DeviceKind.MOTION: 20.0,
}


def device_rng(seed: int, device_id: str, stream: str = "") -> random.Random:
    """A generator for one device (and one stream of it), stable across runs and platforms."""
    return random.Random((seed << 32) | zlib.crc32(f"{device_id}\x00{stream}".encode()))


def local_hour(ts_ms: int, tz: ZoneInfo) -> float:
    """Hour of the local day at ``ts_ms`` as a fraction: 14.5 is half past two in the afternoon."""
    local = dt.datetime.fromtimestamp(ts_ms / 1000, tz)
    return local.hour + local.minute / 60 + local.second / 3600


def profile_at(table: tuple[float, ...], hour: float) -> float:
    """Value of an hourly profile at ``hour``, interpolated linearly between hours."""
    low = int(hour) % 24
    frac = hour - math.floor(hour)
    return table[low] * (1 - frac) + table[(low + 1) % 24] * frac


def wiegand26(facility: int, number: int) -> int:
    """The 26-bit Wiegand (H10301) frame of a card.

    The frame is an even parity bit, the 8-bit facility code, the 16-bit card number and an odd
    parity bit.
    """
    data = (facility & 0xFF) << 16 | (number & 0xFFFF)
    even = (data >> 12).bit_count() & 1  # makes the first 13 bits even
    odd = 1 - ((data & 0xFFF).bit_count() & 1)  # makes the last 13 bits odd
    return even << 25 | data << 1 | odd


@dataclasses.dataclass(frozen=True, slots=True)
class Card:
    """A 26-bit Wiegand card."""

    facility: int
    number: int

    @property
    def raw(self) -> str:
        """The raw credential as every card driver reports it: ``"<bits>:<hex>"``.

        The hex is the whole frame with its parity bits, padded to whole bytes, so a simulated
        card gets the same pseudonym as the same card read by an OSDP or Wiegand reader.
        """
        return f"26:{wiegand26(self.facility, self.number):08x}"


class CardPool:
    """The residents' cards of one site, and a source of cards the site does not know."""

    def __init__(self, seed: int, size: int) -> None:
        rng = device_rng(seed, "cards")
        self.facility = rng.randint(1, 255)
        numbers = rng.sample(range(1, 65536), size)
        self.cards = tuple(Card(self.facility, number) for number in numbers)

    def resident(self, rng: random.Random) -> Card:
        """A card of some resident; a few residents come and go much more than others."""
        # Squaring skews the pick towards the start of the pool.
        return self.cards[int(rng.random() ** 2 * len(self.cards))]

    def unknown(self, rng: random.Random) -> Card:
        """A card of another site: a facility code this site does not use."""
        facility = (self.facility + rng.randint(1, 254)) % 256
        return Card(facility, rng.randint(1, 65535))


@dataclasses.dataclass(frozen=True, slots=True)
class SimContext:
    """What every device model of one driver shares."""

    seed: int
    tz: ZoneInfo
    interval_ms: int
    cards: CardPool


@dataclasses.dataclass(frozen=True, slots=True)
class _Window:
    """A span of time; ``end_ms`` of ``None`` means for good."""

    start_ms: int
    end_ms: int | None

    def __contains__(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms and (self.end_ms is None or ts_ms < self.end_ms)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class DeviceModel:
    """Behaviour common to every simulated device: the agenda, muting, stuck values, battery."""

    kind: ClassVar[DeviceKind]
    has_telemetry: ClassVar[bool] = False
    has_battery: ClassVar[bool] = False
    activity_profile: ClassVar[tuple[float, ...] | None] = None

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        self.spec = spec
        self.id = spec.id
        self.ctx = ctx
        # Incidents draw from their own stream so that adding one does not reshuffle the
        # device's ordinary life.
        self.rng = device_rng(ctx.seed, spec.id)
        self._incident_rng: random.Random | None = None
        self.start_ms = start_ms
        self.interval_ms = _ms(spec.interval_s) if spec.interval_s else ctx.interval_ms
        self._agenda: list[tuple[int, int, int, Action]] = []
        self._order = itertools.count()
        self._muted: list[_Window] = []
        self._stuck: list[_Window] = []
        self._stuck_values: dict[str, float] | None = None
        self._last_values: dict[str, float] | None = None
        self._battery_start = self.rng.uniform(55.0, 100.0)
        self._battery_drain_per_day = self.rng.uniform(0.02, 0.1)
        if self.has_telemetry:
            # A random phase keeps devices of one driver from reporting in the same millisecond.
            self.schedule(start_ms + self.rng.randrange(self.interval_ms), self._tick, late=True)
        rate = spec.rate_per_hour
        if rate is None:
            rate = DEFAULT_RATE_PER_HOUR.get(self.kind, 0.0)
        self._rate_per_ms = rate / _MS_PER_HOUR
        if self.activity_profile is not None and self._rate_per_ms > 0:
            self._schedule_activity(start_ms)

    @property
    def incident_rng(self) -> random.Random:
        """The generator of incidents, made on first use (most devices never have one)."""
        if self._incident_rng is None:
            self._incident_rng = device_rng(self.ctx.seed, self.id, "incidents")
        return self._incident_rng

    # -- agenda ---------------------------------------------------------------------------------

    def schedule(self, ts_ms: int, action: Action, *, late: bool = False) -> None:
        """Run ``action`` at ``ts_ms``; at the same instant, incidents go before ``late`` ones."""
        heapq.heappush(self._agenda, (ts_ms, 1 if late else 0, next(self._order), action))

    def emit_at(self, ts_ms: int, kind: str, data: Mapping[str, Any]) -> None:
        """Emit an event at ``ts_ms``."""
        frozen = dict(data)
        self.schedule(ts_ms, lambda now: [self.event(now, kind, frozen)])

    def event(
        self, ts_ms: int, kind: str, data: Mapping[str, Any], *, credential: str | None = None
    ) -> DeviceEvent:
        """An event of this device."""
        return DeviceEvent(self.id, ts_ms, kind, dict(data), credential=credential)

    def next_due(self) -> int | None:
        """When this device next has something to do, or ``None`` if never again."""
        while self._agenda:
            due = self._agenda[0][0]
            if not any(w.end_ms is None and w.start_ms <= due for w in self._muted):
                return due
            # Dead for good: nothing it would do from now on can be seen.
            self._agenda.clear()
        return None

    def next_is_routine(self) -> bool:
        """Whether the next action is routine (a telemetry tick, random activity)."""
        return bool(self._agenda) and self._agenda[0][1] == 1

    def run_due(self, now_ms: int) -> list[DriverOutput]:
        """Run every action due at ``now_ms`` and return what the device emits at that instant."""
        outputs: list[DriverOutput] = []
        while self._agenda and self._agenda[0][0] <= now_ms:
            _, _, _, action = heapq.heappop(self._agenda)
            outputs.extend(action(now_ms))
        if any(now_ms in window for window in self._muted):
            return []
        return outputs

    # -- incidents ------------------------------------------------------------------------------

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Schedule ``incident``, which names this device, to start at ``start_ms``.

        Raises:
            TypeError: if the incident does not fit this kind of device (checked earlier by
                :func:`~device_drivers.simulated.config.check_incidents`).
        """
        match incident:
            case SilenceIncident(duration=duration):
                self._muted.append(_Window(start_ms, start_ms + _ms(duration)))
            case OfflineIncident(duration=duration):
                end = None if duration is None else start_ms + _ms(duration)
                self._muted.append(_Window(start_ms, end))
            case StuckIncident(duration=duration) if self.has_telemetry:
                self._stuck.append(_Window(start_ms, start_ms + _ms(duration)))
            case _:
                msg = f"do: {incident.do} does not apply to {self.kind} device {self.id}"
                raise TypeError(msg)

    # -- telemetry ------------------------------------------------------------------------------

    def values(self, ts_ms: int) -> dict[str, float]:
        """Current readings of the device; called once per telemetry tick."""
        return {"battery": self.battery(ts_ms)} if self.has_battery else {}

    def battery(self, ts_ms: int) -> float:
        """Battery level in percent, draining slowly."""
        days = (ts_ms - self.start_ms) / _MS_PER_DAY
        return max(0.0, round(self._battery_start - self._battery_drain_per_day * days, 1))

    def _tick(self, now_ms: int) -> list[DriverOutput]:
        self.schedule(now_ms + self.interval_ms, self._tick, late=True)
        # Always compute, so the device's state and random stream move on while it is stuck.
        values = self.values(now_ms)
        if any(now_ms in window for window in self._stuck):
            if self._stuck_values is None:
                self._stuck_values = dict(self._last_values or values)
            values = dict(self._stuck_values)
        else:
            self._stuck_values = None
        self._last_values = values
        return [Sample(self.id, now_ms, values)] if values else []

    # -- random activity ------------------------------------------------------------------------

    def _schedule_activity(self, after_ms: int) -> None:
        # A Poisson process whose rate follows the time of day, drawn by thinning: candidates
        # at the peak rate, each kept with probability profile(hour).
        gap = max(1, math.ceil(self.rng.expovariate(self._rate_per_ms)))
        self.schedule(after_ms + gap, self._activity_candidate, late=True)

    def _activity_candidate(self, now_ms: int) -> list[DriverOutput]:
        self._schedule_activity(now_ms)
        profile = self.activity_profile
        if profile is None:
            return []
        if self.rng.random() >= profile_at(profile, local_hour(now_ms, self.ctx.tz)):
            return []
        return self.on_activity(now_ms)

    def on_activity(self, now_ms: int) -> list[DriverOutput]:
        """One random act of ordinary life (a card read, a movement)."""
        del now_ms
        return []


class _AlarmModel(DeviceModel):
    """A detector with a battery that raises ``alarm_kind`` while an incident lasts."""

    has_telemetry = True
    has_battery = True
    alarm_kind: ClassVar[str]

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self.active = 0

    def _start_alarm(self, start_ms: int, duration_s: float, extra: Mapping[str, Any]) -> None:
        def begin(now_ms: int) -> list[DriverOutput]:
            self.active += 1
            return [self.event(now_ms, self.alarm_kind, {"active": True, **extra})]

        def end(now_ms: int) -> list[DriverOutput]:
            self.active -= 1
            if self.active:
                return []
            return [self.event(now_ms, self.alarm_kind, {"active": False})]

        self.schedule(start_ms, begin)
        self.schedule(start_ms + _ms(duration_s), end)


class SmokeModel(_AlarmModel):
    """A smoke detector: ``smoke`` 0/1 and ``battery`` as a heartbeat, ``alarm.smoke``."""

    kind = DeviceKind.SMOKE
    alarm_kind = "alarm.smoke"

    def values(self, ts_ms: int) -> dict[str, float]:
        """Smoke state and battery."""
        return {"smoke": 1.0 if self.active else 0.0, **super().values(ts_ms)}

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Play a smoke incident (its heat part is played by the temperature sensors)."""
        if isinstance(incident, SmokeIncident):
            self._start_alarm(start_ms, incident.duration, {})
        else:
            super().apply(incident, start_ms)


class WaterLeakModel(_AlarmModel):
    """A leak sensor: ``water_leak`` 0/1 and ``battery`` as a heartbeat, ``alarm.water_leak``."""

    kind = DeviceKind.WATER_LEAK
    alarm_kind = "alarm.water_leak"

    def values(self, ts_ms: int) -> dict[str, float]:
        """Leak state and battery."""
        return {"water_leak": 1.0 if self.active else 0.0, **super().values(ts_ms)}

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Play a water leak."""
        if isinstance(incident, WaterLeakIncident):
            self._start_alarm(start_ms, incident.duration, {})
        else:
            super().apply(incident, start_ms)


class GasModel(_AlarmModel):
    """A mains-powered gas detector: ``gas`` in %LEL, ``alarm.gas`` with the level."""

    kind = DeviceKind.GAS
    alarm_kind = "alarm.gas"
    has_battery = False

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self._levels: list[float] = []

    def values(self, ts_ms: int) -> dict[str, float]:
        """Gas level: a little sensor noise around zero, or near the incident's level."""
        del ts_ms  # gas does not follow the time of day
        noise = self.rng.gauss(0.0, 1.0)
        if self._levels:
            level = max(self._levels)
            return {"gas": round(max(0.0, level + noise * level * 0.03), 1)}
        return {"gas": round(max(0.0, 0.2 + noise * 0.15), 1)}

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Play a gas leak."""
        if not isinstance(incident, GasIncident):
            super().apply(incident, start_ms)
            return
        level = float(incident.level)

        # The reading follows the alarm: up at the start, back to normal at the end.
        def rise(_now_ms: int) -> list[DriverOutput]:
            self._levels.append(level)
            return []

        def fall(_now_ms: int) -> list[DriverOutput]:
            self._levels.remove(level)
            return []

        self.schedule(start_ms, rise)
        self.schedule(start_ms + _ms(incident.duration), fall)
        self._start_alarm(start_ms, incident.duration, {"level": level})


@dataclasses.dataclass(frozen=True, slots=True)
class _HeatRamp:
    """A temperature that climbs linearly by ``rise`` over a span, then cools exponentially."""

    start_ms: int
    duration_ms: int
    rise: float
    cooling_ms: float = 20 * 60_000

    def at(self, ts_ms: int) -> float:
        if ts_ms < self.start_ms:
            return 0.0
        end = self.start_ms + self.duration_ms
        if ts_ms <= end:
            return self.rise * (ts_ms - self.start_ms) / self.duration_ms
        return self.rise * math.exp(-(ts_ms - end) / self.cooling_ms)


class TempHumidityModel(DeviceModel):
    """Indoor temperature and humidity with a daily cycle, slow drift and sensor noise."""

    kind = DeviceKind.TEMP_HUMIDITY
    has_telemetry = True

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self._mean = self.rng.uniform(19.0, 25.0)
        self._amplitude = self.rng.uniform(1.5, 3.5)
        self._humidity = self.rng.uniform(40.0, 65.0)
        self._drift = 0.0
        self._last_ms: int | None = None
        self._ramps: list[_HeatRamp] = []

    def values(self, ts_ms: int) -> dict[str, float]:
        """Temperature (°C) and relative humidity (%RH)."""
        hour = local_hour(ts_ms, self.ctx.tz)
        # Warmest at 15:00, coolest at 03:00, before dawn.
        cycle = self._amplitude * math.cos(2 * math.pi * (hour - 15) / 24)
        self._drift = _ar1(self.rng, self._drift, ts_ms - (self._last_ms or ts_ms), 3_600_000, 0.3)
        self._last_ms = ts_ms
        heat = sum(ramp.at(ts_ms) for ramp in self._ramps)
        temperature = self._mean + cycle + self._drift + heat + self.rng.gauss(0.0, 0.08)
        # Warmer air holds more water, so relative humidity falls about 6 % per °C.
        humidity = self._humidity * math.exp(-0.06 * (temperature - self._mean))
        humidity = min(99.0, max(3.0, humidity + self.rng.gauss(0.0, 0.4)))
        return {"temperature": round(temperature, 2), "humidity": round(humidity, 1)}

    def add_heat(self, start_ms: int, duration_s: float, rise: float | None = None) -> None:
        """Make the temperature climb by ``rise`` °C (about 30-40 when not given)."""
        if rise is None:
            rise = self.incident_rng.uniform(30.0, 40.0)
        self._ramps.append(_HeatRamp(start_ms, max(1, _ms(duration_s)), rise))

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Play a heat ramp."""
        if isinstance(incident, HeatIncident):
            self.add_heat(start_ms, incident.duration, incident.rise)
        else:
            super().apply(incident, start_ms)


def _ar1(rng: random.Random, value: float, dt_ms: int, tau_ms: float, std: float) -> float:
    """One step of a mean-reverting random walk with time constant ``tau_ms`` and spread ``std``.

    The spread does not depend on how often the walk is stepped.
    """
    keep = math.exp(-dt_ms / tau_ms)
    return value * keep + rng.gauss(0.0, std * math.sqrt(1 - keep * keep))


class Co2Model(DeviceModel):
    """Indoor CO2: outdoor baseline by day, higher with people at home in the evening and night."""

    kind = DeviceKind.CO2
    has_telemetry = True
    outdoor_ppm: ClassVar[float] = 420.0

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self._excess = self.rng.uniform(350.0, 900.0)
        self._level = self._target(start_ms)
        self._last_ms = start_ms

    def _target(self, ts_ms: int) -> float:
        occupancy = profile_at(OCCUPANCY, local_hour(ts_ms, self.ctx.tz))
        return self.outdoor_ppm + self._excess * occupancy

    def values(self, ts_ms: int) -> dict[str, float]:
        """CO2 in ppm."""
        # A room's air lags behind its occupants by about half an hour.
        keep = math.exp(-(ts_ms - self._last_ms) / (30 * 60_000))
        target = self._target(ts_ms)
        self._level = target + (self._level - target) * keep
        self._last_ms = ts_ms
        return {"co2": float(round(max(380.0, self._level + self.rng.gauss(0.0, 8.0))))}


class ParticulateModel(DeviceModel):
    """Particulate matter pm1 <= pm25 <= pm10 (µg/m³), wandering slowly around a local level."""

    kind = DeviceKind.PM25
    has_telemetry = True

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self._base = self.rng.uniform(12.0, 45.0)
        self._fine_ratio = self.rng.uniform(0.6, 0.75)
        self._coarse_ratio = self.rng.uniform(1.3, 1.7)
        self._log_dev = 0.0
        self._last_ms = start_ms

    def values(self, ts_ms: int) -> dict[str, float]:
        """pm1, pm25 and pm10 in µg/m³, as whole numbers like a PMS5003 reports them."""
        self._log_dev = _ar1(self.rng, self._log_dev, ts_ms - self._last_ms, 2 * 3_600_000, 0.35)
        self._last_ms = ts_ms
        # Worse in the morning and at night (traffic, heating, still air), cleaner mid-afternoon.
        hour = local_hour(ts_ms, self.ctx.tz)
        daily = 1 + 0.25 * math.cos(2 * math.pi * (hour - 5) / 24)
        pm25 = max(1.0, self._base * math.exp(self._log_dev) * daily)
        pm1 = pm25 * min(0.95, self._fine_ratio * math.exp(self.rng.gauss(0.0, 0.03)))
        pm10 = pm25 * max(1.05, self._coarse_ratio * math.exp(self.rng.gauss(0.0, 0.05)))
        r1, r25, r10 = round(pm1), round(pm25), round(pm10)
        return {"pm1": float(min(r1, r25)), "pm25": float(r25), "pm10": float(max(r10, r25))}


class EmergencyButtonModel(DeviceModel):
    """A resident's emergency button: a battery heartbeat, and ``emergency.button`` when pressed."""

    kind = DeviceKind.EMERGENCY_BUTTON
    has_telemetry = True
    has_battery = True

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Play a button press."""
        if isinstance(incident, EmergencyButtonIncident):
            self.emit_at(start_ms, "emergency.button", {"pressed": True})
        else:
            super().apply(incident, start_ms)


class MotionModel(DeviceModel):
    """A motion sensor inside a dwelling: ``presence.motion`` on movement, off after a while."""

    kind = DeviceKind.MOTION
    activity_profile = DWELLING_ACTIVITY
    # Like a PIR sensor's occupancy timeout: no new "on" while it is still on.
    hold_ms: ClassVar[int] = 90_000

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self._active_until: int | None = None

    def on_activity(self, now_ms: int) -> list[DriverOutput]:
        """Someone moves: on now, off when the hold time passes without movement."""
        started = self._active_until is None
        self._active_until = now_ms + self.hold_ms
        self.schedule(self._active_until, self._maybe_off)
        return [self.event(now_ms, "presence.motion", {"active": True})] if started else []

    def _maybe_off(self, now_ms: int) -> list[DriverOutput]:
        if self._active_until is None or now_ms < self._active_until:
            return []
        self._active_until = None
        return [self.event(now_ms, "presence.motion", {"active": False})]


class CameraModel(DeviceModel):
    """A camera's event metadata: motion, now and then a line crossing; incidents on demand."""

    kind = DeviceKind.CAMERA
    activity_profile = tuple(max(0.15, level) for level in RESIDENTIAL_ACTIVITY)
    line_crossing_share: ClassVar[float] = 0.1
    person_share: ClassVar[float] = 0.8

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self._moving = False

    def on_activity(self, now_ms: int) -> list[DriverOutput]:
        """Motion in view for a few seconds; sometimes someone crosses the line as well."""
        if self._moving:
            return []
        self._moving = True
        zone = self.spec.zone
        end_ms = now_ms + _ms(self.rng.uniform(5.0, 40.0))
        self.schedule(end_ms, self._motion_end)
        if self.rng.random() < self.line_crossing_share:
            data = {
                "line": self.spec.line,
                "direction": self.rng.choice(("in", "out")),
                "object": "person" if self.rng.random() < self.person_share else "vehicle",
            }
            self.emit_at(self.rng.randint(now_ms + 1, end_ms), "camera.line_crossed", data)
        return [self.event(now_ms, "camera.motion", {"active": True, "zone": zone})]

    def _motion_end(self, now_ms: int) -> list[DriverOutput]:
        self._moving = False
        return [self.event(now_ms, "camera.motion", {"active": False, "zone": self.spec.zone})]

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Play an intrusion, a line crossing or a tamper."""
        match incident:
            case IntrusionIncident():
                data = {"zone": incident.zone or self.spec.zone, "object": incident.object}
                self.emit_at(start_ms, "camera.intrusion", {**data, "active": True})
                end = start_ms + _ms(incident.duration)
                self.emit_at(end, "camera.intrusion", {**data, "active": False})
            case LineCrossingIncident():
                data = {
                    "line": incident.line or self.spec.line,
                    "direction": incident.direction,
                    "object": incident.object,
                }
                self.emit_at(start_ms, "camera.line_crossed", data)
            case TamperIncident():
                self.emit_at(start_ms, "camera.tamper", {"active": True})
                end = start_ms + _ms(incident.duration)
                self.emit_at(end, "camera.tamper", {"active": False})
            case _:
                super().apply(incident, start_ms)


class DoorReaderModel(DeviceModel):
    """A Wiegand card reader and its door contact.

    Residents badge in at random (more by day); most reads are granted and the door opens and
    closes a few seconds later.  Now and then a card is refused, or the door is held open.
    """

    kind = DeviceKind.DOOR_READER
    activity_profile = RESIDENTIAL_ACTIVITY
    deny_share: ClassVar[float] = 0.03
    held_open_share: ClassVar[float] = 0.01

    def __init__(self, spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> None:
        super().__init__(spec, ctx, start_ms)
        self.door = spec.door or spec.id
        self._held_after_ms = _ms(spec.held_open_after_s)
        self._open_since: int | None = None
        self._close_at = 0
        self._opening = 0  # counts openings, so a stale timer can tell it is stale

    def _access(
        self, ts_ms: int, card: Card, *, granted: bool, reason: str | None = None
    ) -> DeviceEvent:
        data: dict[str, Any] = {
            "format": "wiegand26",
            "bits": 26,
            "granted": granted,
            "door": self.door,
        }
        if reason is not None:
            data["reason"] = reason
        # The raw number goes beside the data; the edge agent pseudonymises it.
        return self.event(ts_ms, "door.access", data, credential=card.raw)

    def _denied(self, card: Card) -> Action:
        return lambda now_ms: [self._access(now_ms, card, granted=False, reason="unknown_card")]

    def on_activity(self, now_ms: int) -> list[DriverOutput]:
        """A resident badges in."""
        card = self.ctx.cards.resident(self.rng)
        if self.rng.random() < self.deny_share:
            return [self._access(now_ms, card, granted=False, reason="expired")]
        if self.rng.random() < self.held_open_share:
            open_s = self.spec.held_open_after_s + self.rng.uniform(10.0, 120.0)
        else:
            open_s = self.rng.uniform(3.0, 8.0)
        self._open_door(now_ms + _ms(self.rng.uniform(1.0, 3.0)), _ms(open_s))
        return [self._access(now_ms, card, granted=True)]

    def _open_door(self, open_ms: int, duration_ms: int, *, forced: bool = False) -> None:
        def opened(now_ms: int) -> list[DriverOutput]:
            outputs: list[DriverOutput] = []
            self._close_at = max(self._close_at, now_ms + duration_ms)
            if self._open_since is None:
                self._open_since = now_ms
                self._opening += 1
                outputs.append(
                    self.event(now_ms, "door.contact", {"open": True, "door": self.door})
                )
                opening = self._opening
                self.schedule(now_ms + self._held_after_ms, lambda t: self._held(t, opening))
            if forced:
                outputs.append(self.event(now_ms, "door.forced", {"door": self.door}))
            self.schedule(self._close_at, self._closed)
            return outputs

        self.schedule(open_ms, opened)

    def _held(self, now_ms: int, opening: int) -> list[DriverOutput]:
        # Stale when the door closed meanwhile, or is closing at this very instant.
        if self._open_since is None or opening != self._opening or now_ms >= self._close_at:
            return []
        open_s = (now_ms - self._open_since) / 1000
        return [self.event(now_ms, "door.held_open", {"open_s": open_s, "door": self.door})]

    def _closed(self, now_ms: int) -> list[DriverOutput]:
        if self._open_since is None or now_ms < self._close_at:
            return []  # already closed, or kept open by a later opening
        self._open_since = None
        return [self.event(now_ms, "door.contact", {"open": False, "door": self.door})]

    def apply(self, incident: Incident, start_ms: int) -> None:
        """Play a forced door, a door held open, or a burst of unknown cards."""
        match incident:
            case DoorForcedIncident():
                self._open_door(start_ms, _ms(incident.open_s), forced=True)
            case DoorHeldOpenIncident():
                card = self.ctx.cards.resident(self.incident_rng)
                self.schedule(start_ms, lambda now: [self._access(now, card, granted=True)])
                self._open_door(start_ms + 1500, _ms(incident.open_s))
            case DeniedCardsIncident():
                window_ms = _ms(incident.within)
                offsets = [
                    0,
                    *sorted(
                        self.incident_rng.randrange(window_ms) for _ in range(incident.count - 1)
                    ),
                ]
                # One stranger trying a couple of cards, not a new card per attempt.
                cards = [self.ctx.cards.unknown(self.incident_rng) for _ in range(2)]
                for offset in offsets:
                    card = self.incident_rng.choice(cards)
                    self.schedule(start_ms + offset, self._denied(card))
            case _:
                super().apply(incident, start_ms)


MODEL_BY_KIND: Mapping[DeviceKind, type[DeviceModel]] = {
    model.kind: model
    for model in (
        TempHumidityModel,
        Co2Model,
        ParticulateModel,
        WaterLeakModel,
        SmokeModel,
        GasModel,
        DoorReaderModel,
        CameraModel,
        EmergencyButtonModel,
        MotionModel,
    )
}


def create_model(spec: SimulatedDevice, ctx: SimContext, start_ms: int) -> DeviceModel:
    """The behaviour model for ``spec``, starting at ``start_ms``."""
    return MODEL_BY_KIND[spec.kind](spec, ctx, start_ms)
