"""`anju gateway push GW`: send a gateway its config over MQTT and report what it changed.

The config travels as its YAML file parses, with ``${NAME}`` placeholders unexpanded: the
gateway expands them from its own environment, so no secret leaves this machine.  The gateway
restarts only the drivers whose entries changed, rolls back a config whose new drivers fail to
start, and saves the config to its own file once it runs (see ``wire.payloads``, ``config``).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import aiomqtt
import orjson
import typer
from rich.console import Console
from rich.markup import escape

from wire import (
    CONFIG_COMMAND,
    MAX_PAYLOAD_BYTES,
    Command,
    ConfigApplied,
    ConfigPush,
    DecodeError,
    GatewayTopics,
    Reply,
    config_version,
    decode_as,
    encode,
)

if TYPE_CHECKING:
    from hub.config import HubMqttSettings
from wire.placeholders import ConfigFileError, read_yaml

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# Fields that hold secrets in a gateway config; each must be a ${NAME} placeholder.
SECRET_KEYS = frozenset({"password", "site_secret", "scbk"})
_PLACEHOLDER_ONLY = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}


class PushError(Exception):
    """A config that cannot be pushed, or a push that got no answer."""


def parse_broker(url: str) -> tuple[str, int, bool]:
    """``host``, ``port`` and whether to use TLS, from ``host[:port]`` or ``mqtt[s]://host:port``.

    Raises:
        PushError: if the URL is not one of those forms.
    """
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in {"", "/"}:
        msg = f"broker {url!r}: expected host[:port], mqtt://host:port or mqtts://host:port"
        raise PushError(msg)
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise PushError(f"broker {url!r}: the port is not a number from 1 to 65535") from None
    return parts.hostname, port, parts.scheme in {"mqtts", "ssl"}


def literal_secrets(value: Any, path: str = "") -> list[str]:
    """Dotted paths of secret fields that hold a literal instead of a ``${NAME}`` placeholder."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in SECRET_KEYS and item is not None and not _is_placeholder(item):
                found.append(where)
            else:
                found.extend(literal_secrets(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(literal_secrets(item, f"{path}.{index}"))
    return found


def _is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and _PLACEHOLDER_ONLY.fullmatch(value.strip()) is not None


def read_gateway_config(path: Path, gateway: str, site: str | None = None) -> dict[str, Any]:
    """The parsed config file of ``gateway``, as it will travel (JSON types only).

    Only what the push itself needs is checked here; the gateway validates the rest with its own
    drivers and environment.

    Raises:
        PushError: if the file does not load, belongs to another gateway or site, or holds a
            literal secret.
    """
    try:
        data = read_yaml(path)
    except ConfigFileError as problem:
        raise PushError(f"{path}: {problem}") from None
    if not isinstance(data, Mapping):
        raise PushError(f"{path}: a gateway config is a mapping (site:, gateway:, drivers:, ...)")
    # What the gateway will see: dates become strings, keys become strings.
    config: dict[str, Any] = orjson.loads(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))
    if config.get("gateway") != gateway:
        raise PushError(
            f"{path} is the config of gateway {config.get('gateway')!r}, not {gateway!r}"
        )
    if site is not None and config.get("site") != site:
        raise PushError(f"{path} is a config of site {config.get('site')!r}, not {site!r}")
    secrets = literal_secrets(config)
    if secrets:
        raise PushError(
            f"{path}: {', '.join(secrets)} must be a ${{NAME}} placeholder, not a literal: "
            "secrets stay in the gateway's environment"
        )
    return config


async def push_gateway_config(
    broker: str,
    site: str | None,
    gateway: str,
    config_path: Path,
    *,
    timeout_s: float = 30.0,
    username: str | None = None,
    password: str | None = None,
    tls_ca_file: Path | None = None,
) -> Reply:
    """Push a config file to a gateway and wait for its reply.

    ``site`` defaults to the config's own.  The reply's ``result`` is a
    :class:`wire.ConfigApplied`; ``ok`` is false when the gateway refused or rolled back the
    config, which leaves its previous config running.

    Raises:
        PushError: if the file cannot be pushed, the broker cannot be reached, or no reply came
            within ``timeout_s`` (then whether the gateway applied it is unknown).
    """
    config = read_gateway_config(config_path, gateway, site)
    try:
        topics = GatewayTopics(str(config.get("site", "")), gateway)
    except ValueError as exc:
        raise PushError(f"{config_path}: {exc}") from None
    push = ConfigPush(version=config_version(config), config=config)
    command = Command(id=uuid.uuid4().hex, ts=time.time_ns() // 1_000_000, args=push.model_dump())
    payload = encode(command)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PushError(f"{config_path}: {len(payload)} bytes, more than a command may carry")
    host, port, tls = parse_broker(broker)
    tls_context = None
    if tls or tls_ca_file is not None:
        tls_context = ssl.create_default_context(
            cafile=str(tls_ca_file) if tls_ca_file is not None else None
        )
    client = aiomqtt.Client(
        host,
        port,
        identifier=f"anju-push-{uuid.uuid4().hex[:12]}",
        username=username,
        password=password,
        clean_session=True,
        tls_context=tls_context,
    )
    try:
        async with client:
            # Subscribe first, so the reply cannot come before we listen.
            await client.subscribe(topics.reply, qos=1)
            await client.publish(topics.cmd(CONFIG_COMMAND), payload, qos=1)
            async with asyncio.timeout(timeout_s):
                async for message in client.messages:
                    try:
                        reply = decode_as(Reply, bytes(message.payload))
                    except DecodeError:
                        continue
                    if reply.id == command.id:
                        return reply
    except aiomqtt.MqttError as exc:
        raise PushError(f"broker {host}:{port}: {exc}") from None
    except TimeoutError:
        raise PushError(
            f"no reply from {gateway} within {timeout_s:g} s: it may be offline; "
            "whether it applied the config is unknown"
        ) from None
    raise PushError("the broker closed the connection before the gateway replied")


def push_command(
    gateway: Annotated[str, typer.Argument(help="gateway id")],
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="config file (default: config/gateways/GATEWAY.yaml)"),
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            "--broker",
            "-b",
            envvar="ANJU_BROKER",
            help="host[:port], mqtt://... or mqtts://... (default: the hub config's broker)",
        ),
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="site id (default: the config's)")
    ] = None,
    username: Annotated[
        str | None, typer.Option("--username", "-u", envvar="ANJU_MQTT_USERNAME", help="MQTT user")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option("--password", envvar="ANJU_MQTT_PASSWORD", help="MQTT password (env)"),
    ] = None,
    tls_ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="CA bundle of the broker; enables TLS")
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="seconds to wait for the gateway's reply")
    ] = 30.0,
    json_output: Annotated[bool, typer.Option("--json", help="print the reply as JSON")] = False,
    hub_config: Annotated[
        Path,
        typer.Option(
            "--hub-config", help="without --broker: the broker and the hub's MQTT user from here"
        ),
    ] = Path("config/hub.yaml"),
) -> None:
    """Push a gateway its config; it restarts only the drivers that changed.

    Without ``--broker`` the push goes through the hub's own broker connection as the hub
    config gives it (host, port, user, ``${ANJU_HUB_MQTT_PASSWORD}``, CA).

    A config whose new drivers fail to start is rolled back: the previous one keeps running.

    Exits with 1 when the gateway refused or rolled back the config, 2 when no reply came.
    """
    path = config if config is not None else Path("config") / "gateways" / f"{gateway}.yaml"
    if broker is None:
        hub_mqtt = _hub_mqtt(hub_config)
        broker = f"{hub_mqtt.host}:{hub_mqtt.port}" if hub_mqtt else "127.0.0.1:1883"
        if hub_mqtt is not None:
            username = username or hub_mqtt.username
            if password is None and hub_mqtt.password is not None:
                password = hub_mqtt.password.get_secret_value()
            tls_ca_file = tls_ca_file or hub_mqtt.tls_ca_file
    try:
        reply = asyncio.run(
            push_gateway_config(
                broker,
                site,
                gateway,
                path,
                timeout_s=timeout,
                username=username,
                password=password,
                tls_ca_file=tls_ca_file,
            )
        )
    except PushError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if json_output:
        dumped = reply.model_dump(exclude_none=True)
        sys.stdout.write(orjson.dumps(dumped, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _show(gateway, reply)
    if not reply.ok:
        raise typer.Exit(1)


def _hub_mqtt(path: Path) -> HubMqttSettings | None:
    """The hub config's broker settings; only its mqtt section is read and expanded."""
    from pydantic import ValidationError  # noqa: PLC0415

    from hub.config import HubMqttSettings  # noqa: PLC0415
    from wire.placeholders import ConfigFileError, expand_placeholders, read_yaml  # noqa: PLC0415

    if not path.is_file():
        return None
    try:
        raw = read_yaml(path)
        section = raw.get("mqtt", {}) if isinstance(raw, dict) else {}
        settings = HubMqttSettings.model_validate(expand_placeholders(section, source=str(path)))
    except (ConfigFileError, ValidationError, KeyError) as exc:
        err_console.print(f"[red]error:[/red] {escape(str(path))}: {escape(str(exc))}")
        err_console.print("  give --broker, --username and the password, or fix the hub config")
        raise typer.Exit(2) from None
    if settings.tls_ca_file is not None and not settings.tls_ca_file.is_absolute():
        settings = settings.model_copy(update={"tls_ca_file": path.parent / settings.tls_ca_file})
    return settings


def _show(gateway: str, reply: Reply) -> None:
    try:
        applied = ConfigApplied.model_validate(reply.result)
    except ValueError:
        applied = None
    version = applied.version if applied is not None else "?"
    if not reply.ok:
        what = "rolled back" if applied is not None and applied.rolled_back else "refused"
        err_console.print(
            f"[red]error:[/red] {escape(gateway)} {what} config {escape(version)}: "
            f"{escape(reply.error or 'no reason given')}"
        )
        if applied is not None and applied.restarted:
            err_console.print(
                f"  restarted with their previous settings: {_ids(applied.restarted)}"
            )
        err_console.print("  the previous config is still running")
        return
    console.print(f"[green]{escape(gateway)}[/green] runs config {escape(version)}")
    if applied is None:
        return
    for label, ids in (
        ("started", applied.started),
        ("restarted", applied.restarted),
        ("stopped", applied.stopped),
        ("unchanged", applied.unchanged),
    ):
        console.print(f"  {label:<10} {_ids(ids)}")
    if applied.changed:
        console.print(f"  also changed: {escape(', '.join(applied.changed))}")
    if not applied.persisted:
        console.print(
            "  [yellow]not saved on the gateway[/yellow] (it runs without a config file): "
            "a restart of the agent goes back to its old config"
        )


def _ids(ids: list[str]) -> str:
    return escape(", ".join(ids)) if ids else "-"
