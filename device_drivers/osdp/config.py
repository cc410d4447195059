"""Settings of the OSDP driver: one RS-485 line and the readers (PDs) polled on it."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from device_drivers.base import DriverConfig
from wire.topics import ID_PATTERN

__all__ = ["OsdpConfig", "OsdpReader"]

SCBK_HEX_DIGITS = 32
MAX_ADDRESS = 0x7E  # 0x7F is the broadcast address


class OsdpReader(BaseModel):
    """One OSDP reader (peripheral device) and the door it guards."""

    # A mistyped key must not end up in a log through a validation error.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str = Field(pattern=ID_PATTERN, description="device id, as known to the hub's registry")
    address: int = Field(ge=0, le=MAX_ADDRESS, description="the reader's OSDP address, 0..126")
    scbk: SecretStr | None = Field(
        default=None,
        description="secure channel base key of this reader, 32 hex digits; give it as "
        "${ENV_VAR}, never a literal.  With a key the reader must use the secure channel; "
        "without one it is polled in clear text",
    )
    door: str | None = Field(
        default=None, min_length=1, max_length=64, description="name of the door the reader guards"
    )
    contact_input: int | None = Field(
        default=None, ge=0, le=255, description="reader input wired to the door contact"
    )
    contact_open_when_active: bool = Field(
        default=True,
        description="whether an active contact input means the door is open (else closed)",
    )
    rex_input: int | None = Field(
        default=None, ge=0, le=255, description="reader input wired to the request-to-exit button"
    )
    strike_output: int | None = Field(
        default=None,
        ge=0,
        le=255,
        description="reader output driving the door strike, pulsed on every granted access",
    )
    strike_s: float = Field(
        default=5.0, ge=0.1, le=25.5, description="how long the strike stays released"
    )
    grant_window_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="after a grant or an exit request the door may open within this time",
    )
    held_open_s: float | None = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="a door open longer than this raises door.held_open; null: never",
    )
    keypad_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="an unfinished PIN entry is dropped after this"
    )

    @field_validator("scbk")
    @classmethod
    def _check_scbk(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value().strip()
        if len(key) != SCBK_HEX_DIGITS or any(c not in "0123456789abcdefABCDEF" for c in key):
            msg = "scbk must be 32 hex digits (a 16-byte AES key)"
            raise ValueError(msg)
        return SecretStr(key)

    @property
    def scbk_bytes(self) -> bytes | None:
        """The key as bytes."""
        return None if self.scbk is None else bytes.fromhex(self.scbk.get_secret_value())

    @property
    def has_door(self) -> bool:
        """Whether the reader watches a door (a contact or an exit button)."""
        return self.contact_input is not None or self.rex_input is not None


LogLevel = Literal["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"]


class OsdpConfig(DriverConfig):
    """One RS-485 line with the OSDP readers that the gateway polls as control panel."""

    model_config = ConfigDict(hide_input_in_errors=True)  # merged with DriverConfig's

    type: Literal["osdp"] = Field(description="driver type")
    port: str = Field(
        min_length=1,
        description="serial port URL: /dev/ttyUSB0, socket://host:port (ser2net), rfc2217://...",
    )
    baud: Literal[9600, 19200, 38400, 57600, 115200, 230400] = Field(
        default=9600, description="baud rate of the line (8N1)"
    )
    readers: tuple[OsdpReader, ...] = Field(
        min_length=1, max_length=126, description="the readers on this line"
    )
    offline_after_s: float = Field(
        default=3.0,
        ge=0.5,
        le=600,
        description="a reader without a valid reply for this long gets device.fault; libosdp "
        "waits about a second after a lost reply, so keep this above 1.5",
    )
    retry_min_s: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="first wait before reopening a failed port or re-probing an offline reader",
    )
    retry_max_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="longest wait between attempts to reopen the port or reach a reader",
    )
    log_level: LogLevel = Field(
        default="error", description="libosdp's own log level (it logs to stderr)"
    )

    @field_validator("readers")
    @classmethod
    def _check_unique(cls, readers: tuple[OsdpReader, ...]) -> tuple[OsdpReader, ...]:
        ids: set[str] = set()
        addresses: set[int] = set()
        for reader in readers:
            if reader.id in ids:
                msg = f"reader id {reader.id!r} appears more than once"
                raise ValueError(msg)
            if reader.address in addresses:
                msg = f"OSDP address {reader.address} is used by two readers"
                raise ValueError(msg)
            ids.add(reader.id)
            addresses.add(reader.address)
        return readers

    @model_validator(mode="after")
    def _check_retry(self) -> Self:
        if self.retry_max_s < self.retry_min_s:
            msg = "retry_max_s must not be below retry_min_s"
            raise ValueError(msg)
        return self
