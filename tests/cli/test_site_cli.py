"""`anju site|grid|building|unit|person` and `anju import` on a copy of the example config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.site import (
    ROLES,
    building_app,
    grid_app,
    import_command,
    person_app,
    site_app,
    unit_app,
)
from device_drivers.modbus import ModbusConfig
from edge_agent import load_gateway_config
from hub.registry import Registry, Role, load_site

CONFIG = Path(__file__).resolve().parents[2] / "config"

app = typer.Typer()
app.add_typer(site_app, name="site")
app.add_typer(grid_app, name="grid")
app.add_typer(building_app, name="building")
app.add_typer(unit_app, name="unit")
app.add_typer(person_app, name="person")
app.command("import")(import_command)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(CONFIG, tmp_path / "config")
    monkeypatch.setenv("ANJU_SITE_SECRET", "test-site-secret")
    return tmp_path / "config"


@pytest.fixture
def site(config: Path) -> Path:
    return config / "site.yaml"


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(
        app, [str(a) for a in args], catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str | Path) -> Any:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_roles_are_the_registry_roles() -> None:
    assert tuple(r.value for r in Role) == ROLES


def test_init_creates_a_site_and_re_running_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    code, out, _ = run("site", "init", "maple", "--name", "Maple Court", "--site", path)
    assert code == 0
    assert "site maple: added" in out
    assert "next: anju grid add" in out
    written = path.read_bytes()
    assert load_site(path).site.timezone == "Asia/Shanghai"

    code, out, _ = run("site", "init", "maple", "--name", "Maple Court", "--site", path)
    assert code == 0
    assert "site maple: unchanged" in out
    assert path.read_bytes() == written

    code, _, err = run("site", "init", "maple", "--name", "Maple Gardens", "--site", path)
    assert code == 2
    assert "already the site 'maple'" in err
    assert "--replace" in err
    assert path.read_bytes() == written


def test_site_show(site: Path) -> None:
    data = run_json("site", "show", "--site", site)
    assert data["site"] == {
        "id": "sunrise",
        "name": "Sunrise Garden Community",
        "timezone": "Asia/Shanghai",
    }
    assert data["escalation"]["department"] == ["sunrise-property"]
    code, out, _ = run("site", "show", "--site", site)
    assert code == 0
    assert "grid north North grid, worker Wang Fang (wang-fang)" in out
    assert "building 7: Building 7, 11 floors, 0 units listed, 3 devices" in out


def test_default_site_file_comes_from_the_hub_config(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config.parent)
    assert [g["id"] for g in run_json("grid", "list")] == ["north", "south"]
    monkeypatch.chdir(config)
    code, _, err = run("grid", "list")
    assert code == 2
    assert "--site FILE" in err


def test_grid_add_list_remove(site: Path) -> None:
    code, out, _ = run(
        "grid", "add", "east", "--name", "East grid", "--worker", "zhao-lei",
        "--area", "West gate", "--area", "Bike shed", "--site", site,
    )  # fmt: skip
    assert code == 0, out
    assert "grid east: added" in out
    written = site.read_bytes()
    code, out, _ = run(
        "grid", "add", "east", "--name", "East grid", "--worker", "zhao-lei",
        "--area", "West gate", "--area", "Bike shed", "--site", site,
    )  # fmt: skip
    assert "grid east: unchanged" in out
    assert site.read_bytes() == written

    grids = run_json("grid", "list", "--site", site)
    assert grids[-1] == {
        "id": "east",
        "name": "East grid",
        "worker": "zhao-lei",
        "worker_name": "Zhao Lei",
        "buildings": [],
        "areas": ["West gate", "Bike shed"],
    }
    code, out, _ = run("grid", "list", "--site", site)
    assert "Zhao Lei (zhao-lei)" in out

    code, _, err = run("grid", "add", "east", "--name", "Eastern grid", "--site", site)
    assert code == 2
    assert "grid east is already in" in err
    assert "run again with --replace" in err

    code, out, _ = run("grid", "remove", "east", "--site", site)
    assert code == 0
    assert "grid east: removed" in out
    assert "east" not in {g.id for g in load_site(site).grids}


def test_building_add_list_remove(site: Path) -> None:
    code, out, _ = run(
        "building", "add", "9", "--grid", "south", "--name", "Building 9", "--floors", "18",
        "--site", site,
    )  # fmt: skip
    assert code == 0
    assert "building 9: added" in out
    rows = run_json("building", "list", "--grid", "south", "--site", site)
    assert rows == [
        {"id": "5", "grid": "south", "name": "Building 5", "floors": 6, "units": 0, "devices": 3},
        {"id": "7", "grid": "south", "name": "Building 7", "floors": 11, "units": 0, "devices": 3},
        {"id": "9", "grid": "south", "name": "Building 9", "floors": 18, "units": 0, "devices": 0},
    ]
    code, _, err = run("building", "add", "10", "--grid", "west", "--site", site)
    assert code == 2
    assert "no grid 'west'" in err
    assert "anju grid add west" in err

    code, _, err = run("building", "remove", "7", "--site", site)
    assert code == 2
    assert "building 7 still has devices" in err
    assert "anju device move" in err
    code, out, _ = run("building", "remove", "9", "--site", site)
    assert code == 0
    assert "building 9: removed" in out


def test_unit_add_list_remove(site: Path) -> None:
    for number, floor in (("301", "3"), ("302", "3"), ("601", "6")):
        code, out, _ = run(
            "unit", "add", number, "--building", "5", "--floor", floor, "--site", site
        )
        assert code == 0, out
    written = site.read_bytes()
    code, out, _ = run("unit", "add", "302", "--building", "5", "--floor", "3", "--site", site)
    assert "unit 5/302: unchanged" in out
    assert site.read_bytes() == written

    rows = run_json("unit", "list", "--building", "5", "--site", site)
    assert rows[1] == {"building": "5", "number": "302", "floor": 3, "grid": "south", "devices": 3}
    assert len(rows) == 3

    code, _, err = run("unit", "add", "701", "--building", "5", "--floor", "7", "--site", site)
    assert code == 2
    assert "which has 6 floors" in err

    code, _, err = run("unit", "remove", "302", "--building", "5", "--site", site)
    assert code == 2
    assert "unit 5/302 still has devices" in err
    assert "--force" in err
    code, out, _ = run("unit", "remove", "301", "--building", "5", "--site", site)
    assert code == 0
    assert "unit 5/301: removed" in out
    assert [u.number for u in load_site(site).grids[1].buildings[0].units] == ["302", "601"]


def test_person_add_list_remove(site: Path) -> None:
    args = (
        "person", "add", "zhou-jie", "--name", "Zhou Jie", "--role", "property_manager",
        "--phone", "+86-138-0000-0010", "--email", "zhou@sunrise.example",
        "--wecom", "ZhouJie", "--dingtalk", "zhoujie", "--feishu", "ou_zj",
        "--tier", "department", "--site", site,
    )  # fmt: skip
    code, out, _ = run(*args)
    assert code == 0, out
    assert "person zhou-jie: added" in out
    assert "tier department: updated (zhou-jie joined)" in out
    written = site.read_bytes()
    code, out, _ = run(*args)
    assert "person zhou-jie: unchanged" in out
    assert site.read_bytes() == written

    people = run_json("person", "list", "--role", "property_manager", "--site", site)
    assert people == [
        {
            "id": "sunrise-property",
            "name": "Sunrise Property Services",
            "role": "property_manager",
            "contacts": {"phone": "+86-138-0000-0006"},
            "worker_of": [],
            "tiers": ["department"],
        },
        {
            "id": "zhou-jie",
            "name": "Zhou Jie",
            "role": "property_manager",
            "contacts": {
                "phone": "+86-138-0000-0010",
                "email": "zhou@sunrise.example",
                "wecom": "ZhouJie",
                "dingtalk": "zhoujie",
                "feishu": "ou_zj",
            },
            "worker_of": [],
            "tiers": ["department"],
        },
    ]
    code, out, _ = run("person", "list", "--site", site)
    assert "wecom: ZhouJie" in out

    code, _, err = run("person", "add", "x", "--name", "X", "--role", "mayor", "--site", site)
    assert code == 2
    assert "unknown role 'mayor'" in err
    assert "security_staff" in err

    code, _, err = run("person", "remove", "zhou-jie", "--site", site)
    assert code == 2
    assert "member of escalation tier department" in err
    code, out, _ = run("person", "remove", "zhou-jie", "--force", "--site", site)
    assert code == 0
    assert "tier department: updated (zhou-jie left)" in out
    assert load_site(site).escalation["department"] == ("sunrise-property",)


def test_comments_survive_commands(site: Path) -> None:
    run("grid", "add", "east", "--name", "East grid", "--site", site)
    run("building", "add", "9", "--grid", "east", "--site", site)
    run("building", "remove", "9", "--site", site)
    run("grid", "remove", "east", "--site", site)
    text = site.read_text(encoding="utf-8")
    original = (CONFIG / "site.yaml").read_text(encoding="utf-8")
    assert text == original


# -- anju import -------------------------------------------------------------------------------

CSV_OK = """\
type,id,gateway,driver,kind,building,floor,unit,area,grid,setting.unit,setting.profile,setting.driver.port
unit,,,,,3,5,501,,,,,
unit,,,,,3,5,502,,,,,
device,b3-5-501-th,gw-north,modbus_rtu,temp_humidity,3,,501,,,7,xy_md02,/dev/ttyUSB0
device,b3-5-502-th,gw-north,modbus_rtu,temp_humidity,3,,502,,,8,xy_md02,/dev/ttyUSB0
device,b3-5-501-smoke,gw-north,simulated,smoke,3,5,501,,,,,
device,west-cam,gw-gate,simulated,camera,,,,North parking,,,,
"""


def test_import_twice_is_idempotent(config: Path, site: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text(CSV_OK, encoding="utf-8")
    gateway = config / "gateways" / "gw-north.yaml"

    code, out, err = run("import", csv_file, "--site", site)
    assert code == 0, err
    assert "line 4: device b3-5-501-th: added" in out
    assert "6 added" in out
    assert "gateway gw-north's config changed" in out
    registry = Registry(load_site(site))
    assert registry.devices["b3-5-501-th"].floor == 5  # from the unit row
    assert registry.devices["west-cam"].grid == "north"
    north = load_gateway_config(gateway)
    modbus = next(d for d in north.drivers if isinstance(d, ModbusConfig))
    assert [d.id for d in modbus.devices] == ["b3-5-501-th", "b3-5-502-th"]
    load_gateway_config(config / "gateways" / "gw-gate.yaml")

    files = {p: p.read_bytes() for p in (site, gateway, config / "gateways" / "gw-gate.yaml")}
    result = run_json("import", csv_file, "--site", site)
    assert {row["status"] for row in result["rows"]} == {"unchanged"}
    assert result["written"] == {"site_file": None, "gateway_files": {}}
    assert {p: p.read_bytes() for p in files} == files


def test_import_reports_every_bad_row_and_writes_nothing(
    config: Path, site: Path, tmp_path: Path
) -> None:
    bad = (
        CSV_OK.replace(
            "device,b3-5-502-th,gw-north,modbus_rtu,temp_humidity,3,,502,,,8,",
            "device,b3-5-502-th,gw-north,modbus_rtu,temp_humidity,3,,502,,,300,",
        )
        + "device,b9-x,gw-north,simulated,smoke,9,1,,,,,,\nlamp,x,,,,,,,,,,,\n"
    )
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text(bad, encoding="utf-8")
    before = {p: p.read_bytes() for p in config.rglob("*.yaml")}

    code, _, err = run("import", csv_file, "--site", site)
    assert code == 2
    assert f"{csv_file}:5: device b3-5-502-th: modbus_rtu setting unit is not valid" in err
    assert f"{csv_file}:8: no building '9'" in err
    assert f"{csv_file}:9: type 'lamp' is not device or unit" in err
    assert "3 of 8 row(s) are not valid; nothing was written" in err
    assert {p: p.read_bytes() for p in config.rglob("*.yaml")} == before

    code, out, _ = run("import", csv_file, "--site", site, "--json")
    assert code == 2
    assert [e["line"] for e in json.loads(out)["errors"]] == [5, 8, 9]


def test_import_check_writes_nothing(config: Path, site: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text(CSV_OK, encoding="utf-8")
    before = {p: p.read_bytes() for p in config.rglob("*.yaml")}
    code, out, _ = run("import", csv_file, "--site", site, "--check")
    assert code == 0
    assert "nothing written (--check)" in out
    assert {p: p.read_bytes() for p in config.rglob("*.yaml")} == before


def test_import_refuses_unknown_columns(site: Path, tmp_path: Path) -> None:
    csv_file = tmp_path / "devices.csv"
    csv_file.write_text("type,id,colour\ndevice,x,red\n", encoding="utf-8")
    code, _, err = run("import", csv_file, "--site", site)
    assert code == 2
    assert "unknown column(s): colour" in err
    assert "setting.NAME" in err


def test_import_shows_progress_on_long_files(site: Path, tmp_path: Path) -> None:
    rows = [f"unit,,,,,7,{n // 4 + 1},{n:03d},,,,," for n in range(40)]
    csv_file = tmp_path / "units.csv"
    csv_file.write_text(CSV_OK.splitlines()[0] + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    code, out, err = run("import", csv_file, "--site", site)
    assert code == 0, err
    assert "40 added" in out
    assert len(load_site(site).grids[1].buildings[1].units) == 40
