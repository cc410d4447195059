"""Editing the site file in place: comments kept, re-runs idempotent, never an invalid write."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from hub.registry import Registry, Role, load_site
from hub.site_edit import (
    ConflictError,
    InUseError,
    NotFoundError,
    Place,
    SiteEditError,
    SiteEditor,
)

CONFIG = Path(__file__).resolve().parents[2] / "config"
COMMENTS = (
    "# Sunrise Garden (朝阳花园): an example community with two grids, four buildings, three gateways.",
    "# Tiers above the grid worker, by issue class: composite → street block, hard → office.",
    "  # gw-south: buildings 5 and 7",
    "  # gw-gate: the east gate and the north parking",
)


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    shutil.copytree(CONFIG, tmp_path / "config")
    return tmp_path / "config" / "site.yaml"


def grow(editor: SiteEditor) -> list[str]:
    """A round of additions touching every kind of entry; returns their statuses."""
    changes = [
        *editor.add_person(
            "liu-yang",
            name="Liu Yang",
            role="grid_worker",
            contacts={"phone": "+86-138-0000-0009", "wecom": "LiuYang", "feishu": "ou_123"},
        ),
        editor.add_grid("east", name="East grid", worker="liu-yang", areas=["West gate"]),
        editor.add_building("9", grid="east", name="Building 9", floors=18),
        editor.add_unit("9", "1801", floor=18),
        editor.add_unit("9", "0101", floor=1),
        *editor.add_person(
            "guard-2",
            name="Night guard",
            role="security_staff",
            contacts={"dingtalk": "guard2"},
            tiers=["security"],
        ),
        editor.add_device(
            "b9-smoke", gateway="gw-north", kind="smoke", place=Place("9", unit="1801")
        ),
        editor.add_device(
            "wg-cam", gateway="gw-gate", kind="camera", place=Place(area="West gate")
        ),
    ]
    return [c.status for c in changes]


def test_opening_and_saving_changes_nothing(site_file: Path) -> None:
    before = site_file.read_bytes()
    editor = SiteEditor.open(site_file)
    assert not editor.changed()
    assert editor.save() is False
    assert site_file.read_bytes() == before


def test_additions_keep_comments_and_load(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    statuses = grow(editor)
    assert set(statuses) == {"added", "updated"}  # security tier: updated with guard-2
    assert editor.save() is True

    text = site_file.read_text(encoding="utf-8")
    for comment in COMMENTS:
        assert comment in text
    site = load_site(site_file)
    registry = Registry(site)
    worker = registry.grid_worker("east")
    assert worker is not None
    assert worker.id == "liu-yang"
    assert registry.people["liu-yang"].wecom == "LiuYang"
    assert registry.people["guard-2"].dingtalk == "guard2"
    assert "guard-2" in site.escalation["security"]
    building = next(b for g in site.grids for b in g.buildings if b.id == "9")
    assert [(u.number, u.floor) for u in building.units] == [("1801", 18), ("0101", 1)]
    smoke = registry.devices["b9-smoke"]
    assert (smoke.grid, smoke.floor, smoke.unit) == ("east", 18, "1801")  # floor from the unit
    assert smoke.labels["place"] == "Building 9, floor 18, unit 1801"
    assert registry.devices["wg-cam"].grid == "east"  # the grid that lists the area
    # The new device sits with its gateway's devices, above the next gateway's comment.
    lines = text.splitlines()
    assert lines.index("  # gw-south: buildings 5 and 7") == 1 + next(
        i for i, line in enumerate(lines) if "id: b9-smoke" in line
    )


def test_adding_again_is_a_no_op(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    grow(editor)
    editor.save()
    written = site_file.read_bytes()

    again = SiteEditor.open(site_file)
    assert set(grow(again)) == {"unchanged"}
    assert not again.changed()
    assert again.save() is False
    assert site_file.read_bytes() == written


def test_existing_entries_are_unchanged_when_re_added(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    assert (
        editor.add_grid(
            "north", name="North grid", worker="wang-fang", areas=["North parking"]
        ).status
        == "unchanged"
    )
    assert editor.add_building("3", grid="north", name="Building 3", floors=6).status == "unchanged"
    assert (
        editor.add_device(
            "b3-2-201-smoke",
            gateway="gw-north",
            kind="smoke",
            place=Place("3", floor=2, unit="201"),
        ).status
        == "unchanged"
    )
    assert (
        editor.init_site("sunrise", "Sunrise Garden Community", "Asia/Shanghai").status
        == "unchanged"
    )
    assert not editor.changed()


def test_a_different_entry_is_a_conflict_unless_replaced(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    with pytest.raises(ConflictError) as caught:
        editor.add_grid("north", name="North grid", worker="zhao-lei", areas=["North parking"])
    assert "worker" in caught.value.message
    assert any("--replace" in hint for hint in caught.value.hints)
    assert any("anju grid remove north" in hint for hint in caught.value.hints)
    assert not editor.changed()

    change = editor.add_grid(
        "north", name="North grid", worker="zhao-lei", areas=["North parking"], replace=True
    )
    assert change.status == "replaced"
    editor.save()
    site = load_site(site_file)
    north = next(g for g in site.grids if g.id == "north")
    assert north.worker == "zhao-lei"
    assert [b.id for b in north.buildings] == ["1", "3"]  # kept


def test_a_building_replaced_into_another_grid_moves(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    with pytest.raises(ConflictError):
        editor.add_building("5", grid="north", name="Building 5", floors=6)
    assert (
        editor.add_building("5", grid="north", name="Building 5", floors=6, replace=True).status
        == "moved"
    )
    editor.save()
    site = load_site(site_file)
    assert [b.id for b in site.grids[0].buildings] == ["1", "3", "5"]


def test_removing_what_is_referred_to_is_refused(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    with pytest.raises(InUseError) as caught:
        editor.remove_person("li-qiang")
    assert caught.value.blockers == ("member of escalation tier street_block",)
    assert any("--force" in hint for hint in caught.value.hints)

    with pytest.raises(InUseError) as caught:
        editor.remove_person("wang-fang")
    assert caught.value.blockers == ("worker of grid north",)
    assert any("anju grid add north" in hint for hint in caught.value.hints)

    with pytest.raises(InUseError) as caught:
        editor.remove_building("3", force=True)  # --force never removes devices
    assert "device b3-2-201-smoke" in caught.value.blockers
    assert any("anju device remove" in hint for hint in caught.value.hints)

    with pytest.raises(InUseError) as caught:
        editor.remove_grid("north")
    assert "devices" in caught.value.message
    assert not editor.changed()


def test_grid_with_buildings_needs_force(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    editor.add_grid("east", name="East grid")
    editor.add_building("9", grid="east")
    editor.add_unit("9", "101", floor=1)
    with pytest.raises(InUseError) as caught:
        editor.remove_grid("east")
    assert caught.value.blockers == ("building 9",)
    with pytest.raises(InUseError):
        editor.remove_building("9")  # it has a unit
    changes = editor.remove_grid("east", force=True)
    assert [(c.what, c.id, c.status) for c in changes] == [
        ("grid", "east", "removed"),
        ("building", "9", "removed"),
    ]
    editor.save()
    assert "east" not in {g.id for g in load_site(site_file).grids}


def test_forced_person_removal_clears_references(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    changes = editor.remove_person("wang-fang", force=True)
    assert [str(c) for c in changes] == [
        "person wang-fang: removed",
        "grid north: updated (no worker now)",
    ]
    editor.remove_person("li-qiang", force=True)
    editor.save()
    site = load_site(site_file)
    assert next(g for g in site.grids if g.id == "north").worker is None
    assert site.escalation["street_block"] == ()
    assert "# Tiers above the grid worker" in site_file.read_text(encoding="utf-8")


def test_unit_with_devices_needs_force(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    editor.add_unit("3", "201", floor=2)
    with pytest.raises(InUseError) as caught:
        editor.remove_unit("3", "201")
    assert "device b3-2-201-smoke" in caught.value.blockers
    assert editor.remove_unit("3", "201", force=True)[0].status == "removed"
    with pytest.raises(NotFoundError):
        editor.remove_unit("3", "201")


def test_device_places_are_checked(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    editor.add_unit("3", "201", floor=2)
    add = editor.add_device
    with pytest.raises(SiteEditError, match="is on floor 2, not 3"):
        add("x", gateway="gw-north", kind="smoke", place=Place("3", floor=3, unit="201"))
    with pytest.raises(NotFoundError, match="lists no unit '202'") as caught:
        add("x", gateway="gw-north", kind="smoke", place=Place("3", floor=2, unit="202"))
    assert any("anju unit add 202 --building 3" in hint for hint in caught.value.hints)
    with pytest.raises(SiteEditError, match="in grid north, not south"):
        add("x", gateway="gw-north", kind="smoke", place=Place("3", grid="south"))
    with pytest.raises(SiteEditError, match="which grid"):
        add("x", gateway="gw-gate", kind="camera", place=Place(area="Bike shed"))
    with pytest.raises(SiteEditError, match="needs a place"):
        add("x", gateway="gw-gate", kind="camera", place=Place())
    with pytest.raises(SiteEditError, match="floor 9 is not in building 3"):
        add("x", gateway="gw-north", kind="smoke", place=Place("3", floor=9))
    with pytest.raises(NotFoundError, match="gateway 'gw-x' is not listed"):
        add("x", gateway="gw-x", kind="smoke", place=Place("3"))
    with pytest.raises(NotFoundError, match="no building '4'") as caught:
        add("x", gateway="gw-north", kind="smoke", place=Place("4"))
    assert any("anju building add 4" in hint for hint in caught.value.hints)
    assert editor.device("x") is None


def test_move_changes_only_the_place(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    assert editor.move_device("b3-2-201-th", Place("3", floor=2, unit="201")).status == "unchanged"
    assert (
        editor.move_device("b3-2-201-th", Place("1", floor=-1, area="Pump room")).status == "moved"
    )
    assert editor.device("b3-2-201-th") == {
        "id": "b3-2-201-th",
        "gateway": "gw-north",
        "kind": "temp_humidity",
        "building": "1",
        "floor": -1,
        "area": "Pump room",
    }
    editor.save()
    assert (
        Registry(load_site(site_file)).devices["b3-2-201-th"].place
        == "Building 1, floor -1, Pump room"
    )


def test_a_change_the_hub_would_refuse_is_never_written(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    editor.add_unit("7", "1101", floor=11)
    editor.save()
    before = site_file.read_bytes()

    again = SiteEditor.open(site_file)
    again.add_building("7", grid="south", name="Building 7", floors=6, replace=True)
    with pytest.raises(SiteEditError, match="above the building's 6 floors") as caught:
        again.save()
    assert "nothing was written" in caught.value.hints
    assert site_file.read_bytes() == before


def test_strings_that_yaml_1_1_would_misread_are_quoted(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    editor.add_person("yes", name="on", role=Role.DEPARTMENT, contacts={"phone": "0755"})
    editor.add_unit("3", "0201", floor=2)
    editor.save()
    raw = yaml.safe_load(site_file.read_text(encoding="utf-8"))
    assert raw["people"][-1] == {"id": "yes", "name": "on", "role": "department", "phone": "0755"}
    site = load_site(site_file)
    assert site.grids[0].buildings[1].units[0].number == "0201"


def test_a_new_site_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "site.yaml"
    editor = SiteEditor.create(path, site_id="maple", name="Maple Court", timezone="Asia/Shanghai")
    editor.add_person("he-li", name="He Li", role="grid_worker", tiers=["street_block"])
    editor.add_grid("a", name="Grid A", worker="he-li")
    editor.add_building("1", grid="a", floors=5)
    editor.add_gateway("gw-a", name="Cabinet A")
    editor.add_device("b1-smoke", gateway="gw-a", kind="smoke", place=Place("1", floor=1))
    assert editor.save() is True

    site = load_site(path)
    assert site.site.id == "maple"
    assert site.escalation == {"street_block": ("he-li",)}
    assert Registry(site).devices["b1-smoke"].grid == "a"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Maple Court: grids, buildings, units, people, gateways and devices.")
    assert "people:\n  - {id: he-li" in text

    again = SiteEditor.open(path)
    assert again.init_site("maple", "Maple Court", "Asia/Shanghai").status == "unchanged"
    with pytest.raises(ConflictError, match="already the site 'maple'"):
        again.init_site("maple", "Maple Gardens", "Asia/Shanghai")
    assert (
        again.init_site("maple", "Maple Gardens", "Asia/Shanghai", replace=True).status
        == "replaced"
    )


def test_bad_input_is_refused_with_a_hint(site_file: Path) -> None:
    editor = SiteEditor.open(site_file)
    with pytest.raises(SiteEditError, match="unknown time zone"):
        editor.init_site("sunrise", "Sunrise", "Mars/Olympus")
    with pytest.raises(SiteEditError, match="grid id 'no spaces' is not valid"):
        editor.add_grid("no spaces", name="X")
    with pytest.raises(SiteEditError, match="unknown role 'boss'") as caught:
        editor.add_person("p", name="P", role="boss")
    assert "property_manager" in caught.value.hints[0]
    with pytest.raises(NotFoundError, match="worker 'nobody' is not a person") as caught:
        editor.add_grid("g", name="G", worker="nobody")
    assert "anju person add nobody" in caught.value.hints[0]
    with pytest.raises(SiteEditError, match="floor 7 is not in building 3"):
        editor.add_unit("3", "701", floor=7)
    assert not editor.changed()


def test_missing_and_invalid_site_files(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError) as caught:
        SiteEditor.open(tmp_path / "nope.yaml")
    assert "anju site init" in caught.value.hints[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "site: {id: x, name: X}\ndevices: [{id: d, gateway: gw, kind: smoke, grid: g}]\n"
    )
    with pytest.raises(SiteEditError, match="not valid as it is"):
        SiteEditor.open(bad)


def test_existing_registry_api_keeps_working() -> None:
    registry = Registry(load_site(CONFIG / "site.yaml"))
    worker = registry.grid_worker("south")
    assert worker is not None
    assert worker.name == "Zhao Lei"
    assert registry.site.escalation["department"] == ("sunrise-property",)
    assert registry.people["sunrise-property"].role is Role.PROPERTY_MANAGER
    assert registry.devices["b5-3-302-th"].labels["unit"] == "302"
    assert (
        registry.find_device(building="5", floor=3, unit="302", kind="motion") == "b5-3-302-motion"
    )
