"""Putting devices on gateways: the site file says where, the gateway's config which driver.

A device is added to both at once.  Its driver settings are checked by the same
:func:`device_drivers.parse_driver_config` the edge agent runs on its ``drivers:`` entries, and
the whole gateway file by :func:`edge_agent.parse_gateway_config`, before anything is written;
the site file by the hub's own model (:mod:`hub.site_edit`).  Each gateway file that changed is
reported, so that it can be pushed to its gateway.

Where a device goes inside a driver's settings depends on the driver: most drivers read several
devices and list them (``devices:``, ``readers:``, ``sensors:``, ``inputs:``); a UART sensor or a
Wiegand converter is one device per driver instance.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from device_drivers import (
    DriverConfigError,
    DriverError,
    DriverNotAvailableError,
    available_types,
    driver_class,
    parse_driver_config,
)
from edge_agent import ConfigError as GatewayConfigError
from edge_agent import parse_gateway_config
from hub.site_edit import (
    Change,
    ConflictError,
    InUseError,
    NotFoundError,
    Place,
    SiteEditError,
    SiteEditor,
    Status,
    YamlFile,
    delete_item,
    items_flow,
    node,
    plain,
    same_values,
    section,
)
from wire.placeholders import expand_placeholders

__all__ = [
    "SLOTS",
    "DeviceRequest",
    "DeviceSlot",
    "GatewayFile",
    "Outcome",
    "Provisioner",
    "Saved",
    "device_slot",
    "parse_settings",
]

_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# Secrets are often not set on the installer's laptop; a 32-hex-digit stand-in also passes the
# checks of keys (an OSDP secure channel key is 32 hex digits).
_STAND_IN = "0" * 32
DRIVER_PREFIX = "driver"
# Settings that hold secrets: only a ${NAME} placeholder goes into a gateway file, never the key.
SECRET_KEYS = frozenset({"password", "site_secret", "scbk"})
_PLACEHOLDER_ONLY = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


@dataclass(frozen=True, slots=True)
class DeviceSlot:
    """Where a driver's settings hold its devices.

    ``field`` is the list of devices (None: one device per driver instance, named by ``id_key``
    or, when that is absent, by the driver id); ``id_key`` the key of the device id in an entry;
    ``kind_key`` a key that takes the device's kind.
    """

    field: str | None
    id_key: str
    kind_key: str | None = None


SLOTS: dict[str, DeviceSlot] = {
    "ds18b20": DeviceSlot("sensors", "device"),
    "gpio": DeviceSlot("inputs", "device"),
    "mhz19": DeviceSlot(None, "device"),
    "modbus_rtu": DeviceSlot("devices", "id"),
    "osdp": DeviceSlot("readers", "id"),
    "pms5003": DeviceSlot(None, "device"),
    "simulated": DeviceSlot("devices", "id", kind_key="kind"),
    "wiegand": DeviceSlot(None, "device"),
}


def _config_model(driver_type: str) -> type[BaseModel]:
    try:
        return driver_class(driver_type).config_model
    except DriverNotAvailableError as exc:
        raise SiteEditError(
            str(exc), f"driver types here: {', '.join(available_types())}"
        ) from None


def device_slot(driver_type: str) -> DeviceSlot:
    """Where devices go in the settings of ``driver_type``.

    Plug-ins are read by convention: a ``devices`` list of entries with an ``id``, or a
    ``device`` field for one device per driver.
    """
    known = SLOTS.get(driver_type)
    if known is not None:
        return known
    fields = _config_model(driver_type).model_fields
    if "devices" in fields:
        return DeviceSlot("devices", "id")
    if "device" in fields:
        return DeviceSlot(None, "device")
    raise SiteEditError(
        f"driver type {driver_type!r} names its devices in a way anju device add does not know",
        "add the device to the gateway config by hand, then run anju device add again "
        "with the same settings to register its place",
    )


def item_model(driver_type: str, slot: DeviceSlot) -> type[BaseModel] | None:
    """The model of one entry of the driver's device list."""
    if slot.field is None:
        return None
    info = _config_model(driver_type).model_fields.get(slot.field)
    if info is None:
        return None
    for arg in typing.get_args(info.annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _entry_id(raw: Mapping[str, Any], slot: DeviceSlot) -> str | None:
    value = raw.get(slot.id_key)
    return None if value is None else str(value)


def _slot_of(raw: Mapping[str, Any]) -> DeviceSlot:
    """The slot of a driver entry as written, without importing its driver."""
    slot = SLOTS.get(str(raw.get("type")))
    if slot is not None:
        return slot
    return DeviceSlot("devices", "id") if "devices" in raw else DeviceSlot(None, "device")


def _driver_devices(raw: Mapping[str, Any]) -> list[tuple[int | None, str]]:
    """(index in the device list or None, device id) of every device of one driver entry."""
    slot = _slot_of(raw)
    if slot.field is None:
        return [(None, _entry_id(raw, slot) or str(raw.get("id")))]
    items = raw.get(slot.field)
    if not isinstance(items, list):
        return []
    return [
        (index, device_id)
        for index, item in enumerate(items)
        if isinstance(item, Mapping) and (device_id := _entry_id(item, slot)) is not None
    ]


# -- settings from the command line ------------------------------------------------------------


def parse_settings(pairs: Sequence[str], settings_file: Path | None = None) -> dict[str, Any]:
    """``key=value`` pairs (and a YAML file of the same) as a nested mapping.

    Values are YAML scalars (``3``, ``0.5``, ``true``, ``null``, text); dotted keys nest
    (``overrides.temperature.offset=-0.5``).  Pairs override the file.
    """
    settings: dict[str, Any] = {}
    if settings_file is not None:
        try:
            loaded = yaml.safe_load(settings_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise SiteEditError(f"cannot read {settings_file}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise SiteEditError(f"{settings_file} is not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SiteEditError(
                f"{settings_file} must be a mapping of settings",
                "e.g. unit: 3\nprofile: xy_md02\ndriver: {port: /dev/ttyUSB0}",
            )
        settings = _merge(settings, loaded or {})
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise SiteEditError(
                f"--set {pair!r} is not key=value",
                "e.g. --set unit=3 --set driver.port=/dev/ttyUSB0",
            )
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if isinstance(value, dict | list):  # "a: b" and "[x]" were meant as text
            value = text
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        settings = _merge(settings, nested)
    return settings


def _literal_secrets(value: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in SECRET_KEYS and item is not None:
                if not (isinstance(item, str) and _PLACEHOLDER_ONLY.match(item.strip())):
                    found.append(where)
            else:
                found.extend(_literal_secrets(item, where))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_literal_secrets(item, f"{path}.{index}"))
    return found


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _stand_ins(value: Any, *, source: str, unset: set[str]) -> Any:
    """``${NAME}`` expanded from the environment, or a stand-in where NAME is not set here."""
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            try:
                return str(expand_placeholders(match.group(0), source=source))
            except KeyError:
                unset.add(match.group(0))
                return _STAND_IN

        return _PLACEHOLDER.sub(one, value)
    if isinstance(value, list):
        return [_stand_ins(v, source=source, unset=unset) for v in value]
    if isinstance(value, dict):
        return {k: _stand_ins(v, source=source, unset=unset) for k, v in value.items()}
    return value


# -- the gateway config file -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Located:
    """Where a device sits in a gateway file: the driver, and the entry in its device list."""

    driver_index: int
    item_index: int | None  # None: the driver instance is the device


class GatewayFile:
    """One gateway config file, edited in place."""

    def __init__(self, doc: YamlFile, gateway: str) -> None:
        self.doc = doc
        self.gateway = gateway
        self.unset_placeholders: set[str] = set()

    @property
    def path(self) -> Path:
        """The file."""
        return self.doc.path

    @classmethod
    def load(cls, path: Path, gateway: str, *, site_id: str) -> GatewayFile:
        """Open a gateway's config file, which must be valid and be that gateway's.

        Raises:
            SiteEditError: if it is missing, invalid, or another gateway's or site's.
        """
        if not path.is_file():
            raise NotFoundError(
                f"no config file for gateway {gateway} at {path}",
                "provision the gateway first (it gets its config file then), "
                "or name its file with --gateway-config FILE",
            )
        gateway_file = cls(YamlFile.load(path, what="gateway config"), gateway)
        gateway_file.check(intro=f"gateway config {path} is not valid as it is")
        root = gateway_file.doc.root
        if str(root.get("gateway")) != gateway:
            raise SiteEditError(
                f"{path} is the config of gateway {root.get('gateway')!r}, not {gateway!r}",
                "name the right file with --gateway-config FILE",
            )
        if site_id and str(root.get("site")) != site_id:
            raise SiteEditError(
                f"{path} belongs to site {root.get('site')!r}, not {site_id!r}",
                "name the site file of that site with --site FILE",
            )
        return gateway_file

    def check(self, *, intro: str | None = None) -> None:
        """Validate the text about to be written as the edge agent would load it.

        Raises:
            SiteEditError: naming the field and reason.
        """
        source = str(self.path)
        try:
            data = yaml.safe_load(self.doc.dump())
            self.unset_placeholders = set()
            expanded = _stand_ins(data, source=source, unset=self.unset_placeholders)
            parse_gateway_config(expanded, source=source)
        except yaml.YAMLError as exc:
            raise SiteEditError(f"{intro or source}: not valid YAML: {exc}") from None
        except GatewayConfigError as exc:
            lead = intro or f"the change would make {source} invalid"
            raise SiteEditError(
                f"{lead}: {exc.field}: {exc.reason}",
                "fix the file by hand first" if intro else "nothing was written",
            ) from None

    def drivers(self) -> CommentedSeq:
        """The ``drivers:`` list, created if missing."""
        return section(self.doc.root, "drivers")

    def locate(self, device_id: str) -> list[Located]:
        """Every entry of ``device_id`` (a device may have several GPIO inputs)."""
        found: list[Located] = []
        drivers = self.doc.root.get("drivers")
        for index, raw in enumerate(drivers if isinstance(drivers, list) else []):
            if isinstance(raw, Mapping):
                found.extend(
                    Located(index, item_index)
                    for item_index, known in _driver_devices(raw)
                    if known == device_id
                )
        return found

    def inventory(self) -> dict[str, tuple[str, str]]:
        """Device id -> (driver id, driver type), read without validating anything."""
        out: dict[str, tuple[str, str]] = {}
        drivers = self.doc.root.get("drivers")
        for raw in drivers if isinstance(drivers, list) else []:
            if isinstance(raw, Mapping):
                for _, device_id in _driver_devices(raw):
                    out.setdefault(device_id, (str(raw.get("id")), str(raw.get("type"))))
        return out

    def references(self, device_id: str) -> list[str]:
        """What else in the file names the device: doors, local access lists."""
        root = self.doc.root
        found: list[str] = []
        for door in root.get("doors") or []:
            if not isinstance(door, Mapping):
                continue
            roles = [("contact", [door.get("contact")])]
            roles += [("reader", list(door.get("readers") or []))]
            roles += [("exit button", list(door.get("exit_buttons") or []))]
            found.extend(
                f"door {door.get('name')} ({role})"
                for role, ids in roles
                if device_id in [str(i) for i in ids]
            )
        access = root.get("access")
        allow = access.get("allow") if isinstance(access, Mapping) else None
        if isinstance(allow, Mapping) and device_id in [str(k) for k in allow]:
            found.append("access.allow")
        return found


# -- provisioning ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceRequest:
    """A device to add: its id, gateway, driver, kind, place and driver settings."""

    id: str
    gateway: str
    driver: str
    kind: str
    place: Place
    settings: Mapping[str, Any] = field(default_factory=dict)
    driver_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one device operation did."""

    device: str
    status: Status
    changes: tuple[Change, ...] = ()
    gateway: str | None = None
    driver_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The outcome as JSON-friendly data."""
        return {
            "device": self.device,
            "status": self.status,
            "gateway": self.gateway,
            "driver": self.driver_id,
            "changes": [c.as_dict() for c in self.changes],
        }


@dataclass(frozen=True, slots=True)
class Saved:
    """The files a save wrote: the site file, and each changed gateway config by gateway id."""

    site_file: Path | None
    gateway_files: dict[str, Path]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly."""
        return {
            "site_file": None if self.site_file is None else str(self.site_file),
            "gateway_files": {gw: str(path) for gw, path in self.gateway_files.items()},
        }


@dataclass(frozen=True, slots=True)
class _Plan:
    """A gateway-file change worked out and checked, not applied yet."""

    driver_index: int | None  # None: a new driver entry
    entry: dict[str, Any]  # the new driver entry, or the new device entry in the driver's list
    item_index: int | None  # the entry to replace in the driver's list; None: append
    driver_id: str
    unchanged: bool


class Provisioner:
    """Device operations on a site file and its gateways' config files; :meth:`save` writes."""

    def __init__(
        self,
        site: SiteEditor,
        *,
        gateway_configs: Mapping[str, Path] | None = None,
        gateway_dir: Path | None = None,
    ) -> None:
        self.site = site
        self._paths = dict(gateway_configs or {})
        self._dir = gateway_dir or site.path.parent / "gateways"
        self._files: dict[str, GatewayFile] = {}

    def gateway_path(self, gateway: str) -> Path:
        """The config file of a gateway: given, or ``<id>.yaml`` in the gateways directory."""
        return self._paths.get(gateway) or self._dir / f"{gateway}.yaml"

    def gateway_file(self, gateway: str) -> GatewayFile:
        """The (cached) config file of a gateway."""
        if gateway not in self._files:
            self._files[gateway] = GatewayFile.load(
                self.gateway_path(gateway), gateway, site_id=self.site.site_id()
            )
        return self._files[gateway]

    def unset_placeholders(self) -> set[str]:
        """Placeholders of the checked gateway files that this machine does not set."""
        return {p for f in self._files.values() for p in f.unset_placeholders}

    # -- add --

    def add(self, request: DeviceRequest, *, replace: bool = False) -> Outcome:
        """Add a device to the site file and to its gateway's config (in memory)."""
        gateway_file = self.gateway_file(request.gateway)
        changes: list[Change] = []
        old_entry = self.site.device(request.id)
        old_gateway = None if old_entry is None else str(old_entry.get("gateway"))
        if old_gateway is not None and old_gateway != request.gateway and not replace:
            raise ConflictError(
                f"device {request.id} is already on gateway {old_gateway}",
                "run again with --replace to move it to "
                f"{request.gateway} (it leaves {old_gateway}'s config)",
                f"or remove it first: anju device remove {request.id}",
            )
        moving_from = None
        if old_gateway is not None and old_gateway != request.gateway:
            moving_from = self.gateway_file(old_gateway)
        plan = self._plan(gateway_file, request, replace=replace)
        # Checked above, changed below: a refused device leaves both files as they were.
        if request.gateway not in self.site.gateway_ids():
            changes.append(self.site.add_gateway(request.gateway))
        site_change = self.site.add_device(
            request.id,
            gateway=request.gateway,
            kind=request.kind,
            place=request.place,
            replace=replace,
        )
        changes.append(site_change)
        if moving_from is not None:
            changes.extend(self._remove_from(moving_from, request.id))
        if not plan.unchanged:
            changes.append(self._apply(gateway_file, request.id, plan))
        status: Status = "unchanged"
        if any(c.status != "unchanged" for c in changes):
            existed = old_entry is not None or bool(gateway_file.locate(request.id))
            status = "replaced" if existed and site_change.status != "added" else "added"
        return Outcome(request.id, status, tuple(changes), request.gateway, plan.driver_id)

    def _plan(self, gateway_file: GatewayFile, request: DeviceRequest, *, replace: bool) -> _Plan:
        slot = device_slot(request.driver)
        device_settings, driver_settings = self._split(request, slot)
        drivers = gateway_file.doc.root.get("drivers")
        raws = [plain(d) for d in drivers] if isinstance(drivers, list) else []
        located = gateway_file.locate(request.id)
        if slot.field is None:
            plan = self._plan_single(request, slot, driver_settings, raws, located)
        else:
            holders = {loc.driver_index for loc in located}
            plan = self._plan_listed(
                request, slot, device_settings, driver_settings, raws, slot.field, holders
            )
        if located and not plan.unchanged and not replace:
            where = ", ".join(f"driver {raws[loc.driver_index].get('id')}" for loc in located)
            raise ConflictError(
                f"device {request.id} is already in {gateway_file.path} ({where}) "
                "with other settings",
                "run again with --replace to overwrite its settings",
                f"or remove it first: anju device remove {request.id}",
            )
        if not plan.unchanged:
            self._check_driver(request, slot, plan, raws, located)
        return plan

    @staticmethod
    def _split(request: DeviceRequest, slot: DeviceSlot) -> tuple[dict[str, Any], dict[str, Any]]:
        secrets = _literal_secrets(request.settings)
        if secrets:
            raise SiteEditError(
                f"device {request.id}: {', '.join(secrets)} is a secret; the gateway config "
                "holds only a ${NAME} placeholder for it",
                f"give --set '{secrets[0]}=${{NAME}}' and set NAME in the gateway's environment",
            )
        settings = dict(request.settings)
        prefixed = settings.pop(DRIVER_PREFIX, None) or {}
        if not isinstance(prefixed, Mapping):
            raise SiteEditError(
                "driver settings must be a mapping", "e.g. --set driver.port=/dev/ttyUSB0"
            )
        if slot.field is None:  # one device per driver: every setting is the driver's
            return {}, {**settings, **prefixed}
        model = item_model(request.driver, slot)
        item_fields = set(model.model_fields) if model is not None else set()
        driver_fields = set(_config_model(request.driver).model_fields)
        device_settings: dict[str, Any] = {}
        driver_settings: dict[str, Any] = {}
        for key, value in settings.items():
            # A key both levels know (interval_s, poll_interval_s) means the device's own.
            if key not in item_fields and key in driver_fields:
                driver_settings[key] = value
            else:
                device_settings[key] = value
        driver_settings.update(prefixed)
        for key in ("type", "id", slot.field):
            if key in driver_settings:
                raise SiteEditError(
                    f"driver setting {key!r} cannot be given here",
                    "the driver's type is --driver, its id --driver-id; devices are added one by "
                    "one with anju device add",
                )
        return device_settings, driver_settings

    def _plan_single(
        self,
        request: DeviceRequest,
        slot: DeviceSlot,
        driver_settings: Mapping[str, Any],
        raws: Sequence[Mapping[str, Any]],
        located: Sequence[Located],
    ) -> _Plan:
        driver_id = request.driver_id or request.id
        entry: dict[str, Any] = {"type": request.driver, "id": driver_id}
        if driver_id != request.id:
            entry[slot.id_key] = request.id
        entry.update({k: v for k, v in driver_settings.items() if k != slot.id_key})
        for loc in located:
            if same_values(raws[loc.driver_index], entry):
                return _Plan(loc.driver_index, entry, None, driver_id, unchanged=True)
        taken = [
            i
            for i, raw in enumerate(raws)
            if str(raw.get("id")) == driver_id and i not in {loc.driver_index for loc in located}
        ]
        if taken:
            raise ConflictError(
                f"gateway {request.gateway} already has a driver {driver_id!r} "
                f"({raws[taken[0]].get('type')})",
                "give this device's driver another id with --driver-id",
            )
        index = located[0].driver_index if located else None
        return _Plan(index, entry, None, driver_id, unchanged=False)

    def _plan_listed(
        self,
        request: DeviceRequest,
        slot: DeviceSlot,
        device_settings: Mapping[str, Any],
        driver_settings: Mapping[str, Any],
        raws: Sequence[Mapping[str, Any]],
        list_field: str,
        holders: Collection[int],
    ) -> _Plan:
        item: dict[str, Any] = {slot.id_key: request.id}
        if slot.kind_key is not None and slot.kind_key not in device_settings:
            item[slot.kind_key] = request.kind
        item.update({k: v for k, v in device_settings.items() if k != slot.id_key})
        index = self._pick_driver(request, driver_settings, raws, holders)
        if index is None:
            driver_id = request.driver_id or _new_driver_id(request.driver, raws)
            entry = {"type": request.driver, "id": driver_id, **driver_settings}
            entry[list_field] = [item]
            return _Plan(None, entry, None, driver_id, unchanged=False)
        raw = raws[index]
        driver_id = str(raw.get("id"))
        items = raw.get(list_field) or []
        for item_index, existing in enumerate(items):
            if isinstance(existing, Mapping) and _entry_id(existing, slot) == request.id:
                if same_values(existing, item):
                    return _Plan(index, item, item_index, driver_id, unchanged=True)
                return _Plan(index, item, item_index, driver_id, unchanged=False)
        return _Plan(index, item, None, driver_id, unchanged=False)

    @staticmethod
    def _pick_driver(
        request: DeviceRequest,
        driver_settings: Mapping[str, Any],
        raws: Sequence[Mapping[str, Any]],
        holders: Collection[int],
    ) -> int | None:
        """The driver entry to join: the named one, or the one of this type whose settings fit."""
        if request.driver_id is not None:
            for index, raw in enumerate(raws):
                if str(raw.get("id")) == request.driver_id:
                    if raw.get("type") != request.driver:
                        raise ConflictError(
                            f"driver {request.driver_id} on gateway {request.gateway} is a "
                            f"{raw.get('type')} driver, not {request.driver}",
                            "give another --driver-id for a new driver, or the right --driver",
                        )
                    _check_driver_settings(raw, driver_settings)
                    return index
            return None
        fitting = [
            index
            for index, raw in enumerate(raws)
            if raw.get("type") == request.driver
            and all(same_values(raw.get(k), v) for k, v in driver_settings.items())
        ]
        holding = [i for i in fitting if i in holders]
        if len(holding) == 1:  # the driver that already reads the device
            return holding[0]
        if len(fitting) > 1:
            names = ", ".join(str(raws[i].get("id")) for i in fitting)
            raise SiteEditError(
                f"gateway {request.gateway} has several {request.driver} drivers: {names}",
                "say which one with --driver-id, or tell them apart with its settings "
                "(e.g. --set driver.port=/dev/ttyUSB1)",
            )
        return fitting[0] if fitting else None

    def _check_driver(
        self,
        request: DeviceRequest,
        slot: DeviceSlot,
        plan: _Plan,
        raws: Sequence[Mapping[str, Any]],
        located: Sequence[Located],
    ) -> None:
        """Validate the driver entry as it would be, with the driver's own config model."""
        position: int | None = None if slot.field is None else 0
        if plan.driver_index is None or slot.field is None:
            candidate = dict(plan.entry)
        else:
            candidate = dict(raws[plan.driver_index])
            items = list(candidate.get(slot.field) or [])
            stale = {
                loc.item_index
                for loc in located
                if loc.driver_index == plan.driver_index and loc.item_index != plan.item_index
            }
            if plan.item_index is None:
                items.append(plan.entry)
                target = len(items) - 1
            else:
                items[plan.item_index] = plan.entry
                target = plan.item_index
            candidate[slot.field] = [item for i, item in enumerate(items) if i not in stale]
            position = target - sum(1 for i in stale if i is not None and i < target)
        source = f"gateway {request.gateway}: driver {plan.driver_id}"
        try:
            parse_driver_config(_stand_ins(candidate, source=source, unset=set()))
        except DriverNotAvailableError as exc:
            raise SiteEditError(
                str(exc), f"driver types here: {', '.join(available_types())}"
            ) from None
        except DriverConfigError as exc:
            raise _setting_error(request, slot, exc, position, plan.driver_id) from None
        except DriverError as exc:
            raise SiteEditError(f"{source}: {exc}", "nothing was written") from None

    @staticmethod
    def _apply(gateway_file: GatewayFile, device_id: str, plan: _Plan) -> Change:
        drivers = gateway_file.drivers()
        located = gateway_file.locate(device_id)
        target = (plan.driver_index, plan.item_index)
        if plan.driver_index is None:
            drivers.append(_driver_node(plan.entry))
            verb = "added"
        elif plan.item_index is None and _slot_of(drivers[plan.driver_index]).field is None:
            drivers[plan.driver_index] = _driver_node(plan.entry)
            target = (plan.driver_index, None)
            verb = "replaced"
        else:
            items = drivers[plan.driver_index][_slot_of(drivers[plan.driver_index]).field]
            entry = node(plan.entry, flow=items_flow(items, default=True))
            if plan.item_index is None:
                items.append(entry)
                verb = "added"
            else:
                items[plan.item_index] = entry
                verb = "replaced"
        # Entries of the device elsewhere in the file (another driver) go.
        stale = [loc for loc in located if (loc.driver_index, loc.item_index) != target]
        if stale:
            verb = "moved"
        _drop_entries(gateway_file, stale)
        return Change(
            "gateway config",
            gateway_file.gateway,
            "updated",
            f"{device_id} {verb} in driver {plan.driver_id}",
        )

    # -- move and remove --

    def move(self, device_id: str, place: Place) -> Outcome:
        """Give a device a new place: a site file change only, gateways know only ids."""
        change = self.site.move_device(device_id, place)
        entry = self.site.device(device_id) or {}
        gateway = str(entry.get("gateway")) if entry.get("gateway") else None
        return Outcome(device_id, change.status, (change,), gateway)

    def remove(self, device_id: str, *, gateway: str | None = None, force: bool = False) -> Outcome:
        """Remove a device from the site file and from its gateway's config (in memory)."""
        entry = self.site.device(device_id)
        gateway = str(entry["gateway"]) if entry is not None else gateway
        gateway_file: GatewayFile | None = None
        if gateway is not None:
            try:
                gateway_file = self.gateway_file(gateway)
            except NotFoundError:
                if entry is None:
                    raise
        located = gateway_file.locate(device_id) if gateway_file is not None else []
        if entry is None and not located:
            raise NotFoundError(
                f"no device {device_id!r} in {self.site.path}"
                + (f" nor in {gateway_file.path}" if gateway_file is not None else ""),
                "anju device list shows the devices",
            )
        if gateway_file is not None:
            references = gateway_file.references(device_id)
            if references and not force:
                raise InUseError(
                    f"device {device_id} is still named in {gateway_file.path}: "
                    + ", ".join(references),
                    references,
                    "take it out of the doors: or access: section of that file first, "
                    "or pass --force to remove it anyway (those entries then need fixing by hand)",
                )
        changes: list[Change] = []
        if entry is not None:
            changes.append(self.site.remove_device(device_id))
        if gateway_file is not None:
            changes.extend(self._remove_from(gateway_file, device_id))
        return Outcome(device_id, "removed", tuple(changes), gateway)

    @staticmethod
    def _remove_from(gateway_file: GatewayFile, device_id: str) -> list[Change]:
        located = gateway_file.locate(device_id)
        if not located:
            return []
        dropped = _drop_entries(gateway_file, located)
        detail = f"{device_id} removed" + (
            f", with driver(s) {', '.join(dropped)} left without devices" if dropped else ""
        )
        return [Change("gateway config", gateway_file.gateway, "updated", detail)]

    # -- saving --

    def check(self) -> None:
        """Validate everything that would be written."""
        self.site.check()
        for gateway_file in self._files.values():
            if gateway_file.doc.changed():
                gateway_file.check()

    def save(self) -> Saved:
        """Check every changed file, then write them; nothing is written if one is invalid."""
        self.check()
        written: dict[str, Path] = {}
        for gateway, gateway_file in self._files.items():
            if gateway_file.doc.write():
                written[gateway] = gateway_file.path
        site_written = self.site.save()
        return Saved(self.site.path if site_written else None, written)


def _driver_node(entry: Mapping[str, Any]) -> CommentedMap:
    """A new driver entry: block style, its device list one inline entry a line."""
    new = node(entry, flow=False)
    for value in new.values():
        if isinstance(value, CommentedSeq) and value and isinstance(value[0], CommentedMap):
            value.fa.set_block_style()
            for item in value:
                item.fa.set_flow_style()
    return typing.cast("CommentedMap", new)


def _drop_entries(gateway_file: GatewayFile, located: Iterable[Located]) -> list[str]:
    """Remove device entries; return the ids of the drivers removed with them.

    A driver left with no devices goes too, unless it still validates (a GPIO driver with relay
    outputs).
    """
    drivers = gateway_file.drivers()
    by_driver: dict[int, list[int | None]] = {}
    for loc in located:
        by_driver.setdefault(loc.driver_index, []).append(loc.item_index)
    dropped: list[str] = []
    for driver_index in sorted(by_driver, reverse=True):
        driver = drivers[driver_index]
        item_indexes = by_driver[driver_index]
        field_name = _slot_of(driver).field
        if field_name is None or None in item_indexes:
            dropped.append(str(driver.get("id")))
            delete_item(drivers, driver_index)
            continue
        items = driver[field_name]
        for item_index in sorted((i for i in item_indexes if i is not None), reverse=True):
            delete_item(items, item_index)
        if not items and not _still_valid(driver):
            dropped.append(str(driver.get("id")))
            delete_item(drivers, driver_index)
    return dropped


def _still_valid(driver: Mapping[str, Any]) -> bool:
    try:
        parse_driver_config(_stand_ins(plain(driver), source="<driver>", unset=set()))
    except DriverError:
        return False
    return True


def _check_driver_settings(raw: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    different = [k for k, v in settings.items() if not same_values(raw.get(k), v)]
    if different:
        shown = ", ".join(f"{k}={raw.get(k)!r}" for k in different)
        raise ConflictError(
            f"driver {raw.get('id')} has {shown}; changing it would change every device on it",
            "leave out these driver settings to join it as it is, "
            "or give another --driver-id for a new driver",
        )


def _new_driver_id(driver_type: str, raws: Sequence[Mapping[str, Any]]) -> str:
    taken = {str(raw.get("id")) for raw in raws}
    base = driver_type.replace("_", "-")
    number = 1
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def _setting_error(
    request: DeviceRequest,
    slot: DeviceSlot,
    exc: DriverConfigError,
    position: int | None,
    driver_id: str,
) -> SiteEditError:
    """A driver validation error, told in terms of the settings the installer gave."""
    reason = exc.reason.removeprefix("Value error, ")
    parts = exc.field.split(".")
    model = item_model(request.driver, slot)
    fields = sorted(set(model.model_fields) - {slot.id_key}) if model is not None else []
    driver_fields = set(_config_model(request.driver).model_fields) - {"type", "id"}
    settings_hints = (
        [f"settings of a {request.driver} device: {', '.join(fields)}"] if fields else []
    )
    settings_hints.append(
        f"settings of the {request.driver} driver: "
        + ", ".join(sorted(driver_fields - {slot.field or ""}))
    )
    if slot.field is None or position is None:
        return SiteEditError(
            f"device {request.id}: {request.driver} setting {exc.field} is not valid: {reason}",
            f"fix it (--set {exc.field}=VALUE) and run again; nothing was written",
            *settings_hints,
        )
    if parts[:2] == [slot.field, str(position)] and len(parts) > 2:
        setting = ".".join(parts[2:])
        return SiteEditError(
            f"device {request.id}: {request.driver} setting {setting} is not valid: {reason}",
            f"fix it (--set {setting}=VALUE) and run again; nothing was written",
            *settings_hints,
        )
    if parts[0] == slot.field:
        return SiteEditError(
            f"device {request.id} does not fit driver {driver_id} on gateway {request.gateway}: "
            f"{reason}",
            "change its settings and run again; nothing was written",
            "or put it on another driver: --driver-id NEW (with that driver's settings, "
            "e.g. --set driver.port=...)",
        )
    return SiteEditError(
        f"device {request.id}: {request.driver} driver setting {exc.field} is not valid: {reason}",
        f"fix it (--set driver.{exc.field}=VALUE) and run again; nothing was written",
        *settings_hints,
    )
