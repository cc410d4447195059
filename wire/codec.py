"""Encode and decode v1 payloads (orjson), with errors that name the field and the reason."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from wire.errors import DecodeError
from wire.payloads import (
    SCHEMA_VERSION,
    Ack,
    Command,
    DataBatch,
    Event,
    GatewayState,
    Health,
    HubState,
    Reply,
)
from wire.topics import Channel

# A batch of 5000 readings with a few values each stays well under this.
MAX_PAYLOAD_BYTES = 512 * 1024

P = TypeVar("P", bound=BaseModel)

PAYLOAD_BY_CHANNEL: dict[Channel, type[BaseModel]] = {
    Channel.STATE: GatewayState,
    Channel.DATA: DataBatch,
    Channel.EVENT: Event,
    Channel.HEALTH: Health,
    Channel.ACK: Ack,
    Channel.CMD: Command,
    Channel.REPLY: Reply,
}


def encode(payload: BaseModel) -> bytes:
    """Serialise a payload to compact JSON bytes."""
    return orjson.dumps(payload.model_dump(exclude_none=True))


def _load_object(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise DecodeError("$", f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("$", f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise DecodeError("$", f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if version is None:
        raise DecodeError("v", "missing schema version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise DecodeError(
            "v", f"unsupported schema version {version!r} (expected {SCHEMA_VERSION})"
        )
    return obj


def _translate(exc: ValidationError) -> DecodeError:
    err = exc.errors(include_url=False)[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, DecodeError):
        return cause
    loc = [str(p) for p in err["loc"]]
    if loc and loc[-1] == "[key]":  # a mapping key (a value name) is what is wrong
        return DecodeError(".".join(loc[:-1]), f"invalid name: {err['msg']}")
    return DecodeError(".".join(loc) or "$", err["msg"])


def decode_as(model: type[P], raw: bytes) -> P:
    """Decode ``raw`` as ``model``.

    Raises:
        DecodeError: for oversize payloads, bad JSON, a wrong version or a schema violation.
    """
    obj = _load_object(raw)
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _translate(exc) from None


def decode(channel: Channel, raw: bytes) -> BaseModel:
    """Decode the payload of a gateway topic's channel."""
    return decode_as(PAYLOAD_BY_CHANNEL[channel], raw)


def decode_hub_state(raw: bytes) -> HubState:
    """Decode the hub's retained presence."""
    return decode_as(HubState, raw)
