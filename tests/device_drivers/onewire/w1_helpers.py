"""A fake sysfs 1-Wire bus in a temporary directory, laid out like /sys/bus/w1/devices."""

from __future__ import annotations

import shutil
from pathlib import Path

from device_drivers.onewire import crc8_maxim

REFERENCE = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"


def w1_slave_text(milli_c: int, *, kernel_crc_ok: bool = True, damage_crc: bool = False) -> str:
    """What w1_therm shows for a 12-bit reading of ``milli_c`` (a multiple of 62.5)."""
    raw = round(milli_c / 62.5) & 0xFFFF
    pad = raw.to_bytes(2, "little") + bytes.fromhex("4b467fff0c10")
    crc = crc8_maxim(pad) ^ (0x55 if damage_crc else 0)
    shown = " ".join(f"{b:02x}" for b in (*pad, crc))
    verdict = "YES" if kernel_crc_ok else "NO"
    return f"{shown} : crc={crc:02x} {verdict}\n{shown} t={milli_c}\n"


class FakeW1Bus:
    """The ``devices`` directory of a w1 bus master, with sensors that come and go."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "w1_bus_master1").mkdir(exist_ok=True)

    def set(self, w1_id: str, content: str) -> None:
        """Plug in (or update) a sensor whose next read shows ``content``."""
        directory = self.root / w1_id
        directory.mkdir(exist_ok=True)
        (directory / "w1_slave").write_text(content, encoding="ascii")

    def remove(self, w1_id: str) -> None:
        """The sensor drops off the bus: the kernel removes its directory."""
        shutil.rmtree(self.root / w1_id, ignore_errors=True)
