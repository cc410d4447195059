"""The gateway bundle: everything a gateway needs to join, in a directory and a ``.tar.gz``.

Contents (the archive holds the same files, flat, owned by root):

- ``gateway.yaml``: the edge agent's config; from a template (the site's
  ``gateways/<id>.yaml``) when there is one, with the broker, the user and the TLS files set.
  Secrets appear only as ``${...}`` placeholders.
- ``secrets.env`` (0600): ``ANJU_MQTT_PASSWORD`` (password mode) and ``ANJU_SITE_SECRET`` when
  known; systemd reads it as the unit's ``EnvironmentFile``.
- ``ca.pem``: the site CA, which the gateway checks the broker against.
- ``client.pem`` and ``client.key`` (0600): the gateway's certificate and key (certificate mode).
- ``anju-edge.service``: the systemd unit that runs ``anju edge run``.

Enrolment works offline: copy the archive to the gateway and run the one command
:func:`enrol_command` prints.  It unpacks into the install directory, installs the unit and
(re)starts it, so the same command enrols a new gateway and installs a rotated credential; the
agent's queue in its state directory is not touched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import shlex
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from hub.broker.errors import BrokerError
from hub.broker.files import PUBLIC_MODE, SECRET_MODE, write_atomic

AuthMode = Literal["password", "cert"]

CONFIG_NAME = "gateway.yaml"
SECRETS_NAME = "secrets.env"
CA_NAME = "ca.pem"
CLIENT_CERT_NAME = "client.pem"
CLIENT_KEY_NAME = "client.key"
UNIT_NAME = "anju-edge.service"
BUNDLE_FILES = frozenset(
    {CONFIG_NAME, SECRETS_NAME, CA_NAME, CLIENT_CERT_NAME, CLIENT_KEY_NAME, UNIT_NAME}
)
MQTT_CREDENTIAL_VAR = "ANJU_MQTT_PASSWORD"
SITE_KEY_VAR = "ANJU_SITE_SECRET"
SYSTEMD_UNIT_DIR = PurePosixPath("/etc/systemd/system")
_SYSTEMD_STATE_ROOT = PurePosixPath("/var/lib")
_PLAIN_ENV_VALUE = re.compile(r"^[A-Za-z0-9_.+/=:@-]*$")
_MQTT_CREDENTIAL_KEYS = ("username", "password", "tls_ca_file", "tls_cert_file", "tls_key_file")

ConfigCheck = Callable[[Mapping[str, Any]], None]
"""Validates the generated ``gateway.yaml`` (placeholders unexpanded); raises ``ValueError``."""


@dataclasses.dataclass(frozen=True, slots=True)
class BundleOptions:
    """Where the bundle goes and where it will live on the gateway."""

    out_dir: Path
    template: Path | None = None
    broker_host: str | None = None
    install_dir: PurePosixPath = dataclasses.field(
        default_factory=lambda: PurePosixPath("/etc/anju")
    )
    data_dir: PurePosixPath = dataclasses.field(
        default_factory=lambda: PurePosixPath("/var/lib/anju-edge")
    )
    anju_bin: str = "/usr/local/bin/anju"
    site_secret: str | None = None
    check_config: ConfigCheck | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class BundleContent:
    """The credentials and broker coordinates a bundle carries."""

    site: str
    gateway: str
    auth: AuthMode
    host: str
    port: int
    ca_pem: bytes
    password: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Bundle:
    """A written bundle."""

    directory: Path
    archive: Path
    enrol_command: str
    has_site_secret: bool


def _load_template(path: Path, site: str, gateway: str) -> CommentedMap:
    yaml = YAML(typ="rt")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BrokerError(f"cannot read the template {path}: {exc.strerror}") from None
    except YAMLError as exc:
        raise BrokerError(f"the template {path} is not valid YAML: {exc}") from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise BrokerError(f"the template {path} must be a mapping (a gateway config)")
    for key, wanted in (("site", site), ("gateway", gateway)):
        if key in data and data[key] != wanted:
            raise BrokerError(
                f"the template {path} is for {key} {data[key]!r}, not {wanted!r}; "
                "pass the right --template"
            )
    return data


def _set_first(data: CommentedMap, position: int, key: str, value: Any) -> None:
    if key in data:
        data[key] = value
    else:
        data.insert(position, key, value)


def render_gateway_config(content: BundleContent, options: BundleOptions) -> str:
    """The text of ``gateway.yaml``."""
    data = (
        _load_template(options.template, content.site, content.gateway)
        if options.template is not None
        else CommentedMap()
    )
    install = options.install_dir
    _set_first(data, 0, "site", content.site)
    _set_first(data, 1, "gateway", content.gateway)
    _set_first(data, 2, "data_dir", str(options.data_dir))
    mqtt = data.get("mqtt")
    if not isinstance(mqtt, CommentedMap):
        mqtt = CommentedMap()
    for key in _MQTT_CREDENTIAL_KEYS:
        mqtt.pop(key, None)
    _set_first(mqtt, 0, "host", content.host)
    _set_first(mqtt, 1, "port", content.port)
    mqtt["username"] = content.gateway
    if content.auth == "password":
        mqtt["password"] = f"${{{MQTT_CREDENTIAL_VAR}}}"
    mqtt["tls_ca_file"] = str(install / CA_NAME)
    if content.auth == "cert":
        mqtt["tls_cert_file"] = str(install / CLIENT_CERT_NAME)
        mqtt["tls_key_file"] = str(install / CLIENT_KEY_NAME)
    _set_first(data, 3, "mqtt", mqtt)
    privacy = data.get("privacy")
    if not isinstance(privacy, CommentedMap):
        privacy = CommentedMap()
    if "site_secret" not in privacy and not privacy.get("send_raw_credentials", False):
        privacy["site_secret"] = f"${{{SITE_KEY_VAR}}}"
    _set_first(data, 4, "privacy", privacy)
    header = (
        f"# Edge agent of gateway {content.gateway} (site {content.site}), made by "
        f"`anju gateway` on {dt.datetime.now(dt.UTC):%Y-%m-%d}.\n"
        f"# Secrets come from {install / SECRETS_NAME} through the systemd unit; "
        "none is written here.\n"
    )
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return header + buffer.getvalue()


def _env_line(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise BrokerError(f"{name} may not hold a line break")
    if _PLAIN_ENV_VALUE.fullmatch(value):
        return f"{name}={value}\n"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{name}="{escaped}"\n'


def render_secrets_env(content: BundleContent, site_secret: str | None) -> str:
    """The text of ``secrets.env``."""
    lines = ["# Secrets of this gateway, read by systemd (EnvironmentFile). Keep it 0600.\n"]
    if content.password is not None:
        lines.append(_env_line(MQTT_CREDENTIAL_VAR, content.password))
    if site_secret is not None:
        lines.append(_env_line(SITE_KEY_VAR, site_secret))
    else:
        lines.append(f"# {SITE_KEY_VAR}=<the site's pseudonymisation key: add it here>\n")
    return "".join(lines)


def render_unit(content: BundleContent, options: BundleOptions) -> str:
    """The text of ``anju-edge.service``."""
    install = options.install_dir
    data_dir = options.data_dir
    if data_dir.is_relative_to(_SYSTEMD_STATE_ROOT) and data_dir != _SYSTEMD_STATE_ROOT:
        # systemd creates it, owned by the service, and keeps it across restarts.
        state = (
            f"StateDirectory={data_dir.relative_to(_SYSTEMD_STATE_ROOT)}\nStateDirectoryMode=0700"
        )
    else:
        state = f"ReadWritePaths={data_dir}"
    command = shlex.join([options.anju_bin, "edge", "run", "--config", str(install / CONFIG_NAME)])
    return f"""\
# anju edge agent of gateway {content.gateway} (site {content.site}).
[Unit]
Description=anju edge agent ({content.site}/{content.gateway})
Wants=network-online.target
After=network-online.target time-sync.target
# A gateway must come back by itself however often it fails: no start limit.
StartLimitIntervalSec=0

[Service]
Type=exec
ExecStart={command}
EnvironmentFile={install / SECRETS_NAME}
WorkingDirectory={data_dir}
{state}
Restart=always
RestartSec=5
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""


def enrol_command(
    archive_name: str,
    options: BundleOptions,
    *,
    systemd_dir: PurePosixPath = SYSTEMD_UNIT_DIR,
) -> str:
    """The one command, run on the gateway in the directory holding the archive, that enrols it.

    It unpacks as root (the archive's files are root's, with their modes), installs the unit
    and restarts the agent, so it serves a first enrolment and a credential rotation alike.
    """
    install = str(options.install_dir)
    unit_target = shlex.quote(str(systemd_dir / UNIT_NAME))
    steps = [
        f"install -d -m 0750 {shlex.quote(install)}",
        f"tar -xzf {shlex.quote(archive_name)} -C {shlex.quote(install)}",
        f"install -m 0644 {shlex.quote(str(options.install_dir / UNIT_NAME))} {unit_target}",
        "systemctl daemon-reload",
        "systemctl enable anju-edge",
        "systemctl restart anju-edge",
    ]
    return f"sudo sh -c {shlex.quote(' && '.join(steps))}"


def _files(content: BundleContent, options: BundleOptions) -> dict[str, tuple[bytes, int]]:
    files: dict[str, tuple[bytes, int]] = {
        CONFIG_NAME: (render_gateway_config(content, options).encode(), 0o640),
        SECRETS_NAME: (render_secrets_env(content, options.site_secret).encode(), SECRET_MODE),
        CA_NAME: (content.ca_pem, PUBLIC_MODE),
        UNIT_NAME: (render_unit(content, options).encode(), PUBLIC_MODE),
    }
    if content.auth == "cert":
        if content.client_cert_pem is None or content.client_key_pem is None:
            raise BrokerError("certificate mode needs the client certificate and key")
        files[CLIENT_CERT_NAME] = (content.client_cert_pem, PUBLIC_MODE)
        files[CLIENT_KEY_NAME] = (content.client_key_pem, SECRET_MODE)
    return files


def _archive(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    now = int(dt.datetime.now(dt.UTC).timestamp())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in sorted(files):
            raw, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = mode
            info.mtime = now
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def _check_replaceable(directory: Path) -> None:
    # Only ever replace a directory that holds nothing but an earlier bundle.
    if not directory.exists():
        return
    if not directory.is_dir():
        raise BrokerError(f"{directory} exists and is not a bundle directory; choose another --out")
    strangers = sorted(p.name for p in directory.iterdir() if p.name not in BUNDLE_FILES)
    if strangers:
        raise BrokerError(
            f"{directory} holds files that are not part of a bundle ({', '.join(strangers)}); "
            "choose another --out"
        )


def write_bundle(content: BundleContent, options: BundleOptions) -> Bundle:
    """Write ``<out>/<gateway>/`` and ``<out>/<gateway>.tar.gz``, replacing an earlier bundle."""
    files = _files(content, options)
    if options.check_config is not None:
        yaml = YAML(typ="safe")
        try:
            options.check_config(yaml.load(files[CONFIG_NAME][0].decode()))
        except ValueError as exc:
            raise BrokerError(f"the generated {CONFIG_NAME} is not valid: {exc}") from None
    out = options.out_dir
    directory = out / content.gateway
    archive = out / f"{content.gateway}.tar.gz"
    _check_replaceable(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=f".{content.gateway}."))
    except OSError as exc:
        raise BrokerError(f"cannot create the bundle in {out}: {exc.strerror}") from None
    try:
        for name, (raw, mode) in files.items():
            write_atomic(staging / name, raw, mode=mode)
        write_atomic(archive, _archive(files), mode=SECRET_MODE)
        if directory.exists():
            shutil.rmtree(directory)
        staging.replace(directory)
    except OSError as exc:
        raise BrokerError(f"cannot write the bundle {directory}: {exc.strerror}") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Bundle(
        directory=directory,
        archive=archive,
        enrol_command=enrol_command(archive.name, options),
        has_site_secret=options.site_secret is not None,
    )
