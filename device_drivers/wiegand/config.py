"""Settings of the Wiegand driver: one serial Wiegand converter and the reader behind it."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from device_drivers.base import DriverConfig
from device_drivers.wiegand.formats import ConverterFormat
from wire.topics import ID_PATTERN

__all__ = ["WiegandConfig"]


class WiegandConfig(DriverConfig):
    """One serial Wiegand converter (reference §2.6) with one reader (and its keypad)."""

    type: Literal["wiegand"] = Field(description="driver type")
    port: str = Field(
        min_length=1,
        description="serial port URL: /dev/ttyUSB0, socket://host:port (ser2net), rfc2217://...",
    )
    baud: int = Field(default=9600, gt=0, le=1_000_000, description="baud rate (8N1)")
    format: ConverterFormat = Field(
        description="the converter's output: hex_data, hex_frame, decimal or em4100"
    )
    frame_bits: Literal[26, 34] | None = Field(
        default=None,
        description="decimal only: the readers' frame length; guessed from the value when absent",
    )
    device: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="device id of the reader, as known to the hub's registry; the driver id "
        "when absent",
    )
    door: str | None = Field(
        default=None, min_length=1, max_length=64, description="name of the door the reader guards"
    )
    frame_gap_s: float = Field(
        default=0.1,
        gt=0,
        le=10,
        description="a frame's bytes arrive within this; a partial frame older than this when "
        "more bytes come is dropped as truncated",
    )
    keypad_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="an unfinished PIN entry is dropped after this"
    )
    bad_frames_to_fault: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="consecutive bad frames or failed port opens before device.fault",
    )
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=600, description="first wait before reopening a failed port"
    )
    reconnect_max_s: float = Field(
        default=30.0, gt=0, le=3600, description="longest wait between attempts to reopen the port"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.frame_bits is not None and self.format is not ConverterFormat.DECIMAL:
            msg = "frame_bits applies to the decimal format only"
            raise ValueError(msg)
        if self.reconnect_max_s < self.reconnect_min_s:
            msg = "reconnect_max_s must not be below reconnect_min_s"
            raise ValueError(msg)
        return self

    @property
    def device_id(self) -> str:
        """The reader's device id."""
        return self.device or self.id
