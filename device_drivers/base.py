"""The driver contract: a small async resource that yields typed samples and events."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar, Generic, Self, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from device_drivers.clock import Clock
from wire.topics import ID_PATTERN


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """Telemetry values of one device at one instant."""

    device: str
    ts_ms: int
    values: Mapping[str, float]


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A discrete event of one device.

    ``credential`` carries a raw card or credential number read by the driver.  It never goes
    into ``data``: the edge agent replaces it with a keyed pseudonym in ``data["credential"]``
    before anything is queued, so the raw number never leaves the gateway.
    """

    device: str
    ts_ms: int
    kind: str
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    credential: str | None = dataclasses.field(default=None, repr=False)


DriverOutput: TypeAlias = Sample | DeviceEvent


class DriverConfig(BaseModel):
    """Base of every driver's settings; a concrete config narrows ``type`` to a literal."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: str = Field(description="driver type, selects the driver and its settings model")
    id: str = Field(pattern=ID_PATTERN, description="name of this driver instance on the gateway")


C = TypeVar("C", bound=DriverConfig)


class Driver(abc.ABC, Generic[C]):
    """One driver instance.  Use as ``async with driver: async for out in driver.outputs()``."""

    type_key: ClassVar[str]
    config_model: ClassVar[type[DriverConfig]]

    def __init__(self, config: C, *, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._opened = False  # set by open()
        self._iterating = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    @abc.abstractmethod
    def device_ids(self) -> tuple[str, ...]:
        """Ids of the devices this driver reads."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Open ports and connections; raise :class:`DriverIOError` if the device is absent."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release everything.  Idempotent, and must release the port even if closing fails."""

    @contextlib.contextmanager
    def _consuming(self) -> Iterator[None]:
        """The guard of :meth:`outputs`: the driver is open, and it has one consumer at a time.

        Raises:
            RuntimeError: if the driver is not open or its outputs are already being iterated.
        """
        if not self._opened:
            msg = "open() the driver before iterating its outputs"
            raise RuntimeError(msg)
        if self._iterating:
            msg = "outputs() is already being iterated"
            raise RuntimeError(msg)
        self._iterating = True
        try:
            yield
        finally:
            self._iterating = False

    @abc.abstractmethod
    def outputs(self) -> AsyncIterator[DriverOutput]:
        """Yield samples and events as the devices produce them, until closed."""
