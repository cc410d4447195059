"""What ``anju edge run`` loads: the agent and the drivers its config names, nothing else.

Checked in a fresh interpreter: the test process itself has imported every driver by now.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import sys, asyncio
from pathlib import Path
sys.argv = ["anju", "edge", "run", "--config", sys.argv[1], "--log-level", "ERROR"]
from cli.stopping import STOP

def report():
    print("\\n".join(sorted(sys.modules)))
    STOP._on_signal(15, None)  # a clean stop, as SIGTERM would ask for

real_run = asyncio.run
def run(main):
    loop_main = main
    async def wrapped():
        asyncio.get_running_loop().call_later(1.0, report)
        return await loop_main
    return real_run(wrapped())
asyncio.run = run
from cli.entry import main
main()
"""


def test_edge_run_with_only_simulated_drivers_loads_no_other_driver_nor_the_hub(
    tmp_path: Path,
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": "s",
                "gateway": "gw",
                "data_dir": str(tmp_path / "edge"),
                "mqtt": {"host": "127.0.0.1", "port": 9, "reconnect_max_s": 0.1},
                "privacy": {"site_secret": "a-site-secret-for-this-test"},
                "drivers": [
                    {
                        "type": "simulated",
                        "id": "sim",
                        "interval_s": 1,
                        "devices": [{"id": "th", "kind": "temp_humidity"}],
                    }
                ],
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    modules = set(done.stdout.split())
    assert "device_drivers.simulated" in modules
    assert "edge_agent.agent" in modules
    drivers = {m.split(".")[1] for m in modules if m.startswith("device_drivers.") and "." in m}
    for other in ("osdp", "modbus", "gpio", "onewire", "uart", "wiegand"):
        assert other not in drivers, f"device_drivers.{other} was imported"
    heavy = (
        "hub",
        "rules",
        "dashboards",
        "cli.main",
        "typer",
        "rich",
        "httpx",
        "numpy",
        "pymodbus",
    )
    for name in heavy:
        assert name not in modules, f"{name} was imported"
