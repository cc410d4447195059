"""The provisioning tree: Grafana's documented keys, deterministic bytes, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.dashboards import dashboards_app
from dashboards import DATASOURCES_FILE, PROVIDERS_FILE, DashboardsError, InfluxSource, build

ROOT = Path(__file__).resolve().parents[2]
VM_URL = "http://victoria-metrics:8428"
BOARD_FILES = ["security-wall.json", "environment.json", "fleet-health.json", "welfare.json"]


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_build_writes_the_provisioning_tree(tmp_path):
    written = build(tmp_path, vm_url=VM_URL)
    relative = [str(p.relative_to(tmp_path)) for p in written]
    assert relative == [
        "provisioning/datasources/anju.yaml",
        "provisioning/dashboards/anju.yaml",
        *(f"dashboards/{name}" for name in BOARD_FILES),
    ]
    for path in written[2:]:
        board = json.loads(path.read_text(encoding="utf-8"))
        assert board["uid"] == "anju-" + path.stem
    assert sorted(p.name for p in (tmp_path / "dashboards").iterdir()) == sorted(BOARD_FILES)


def test_datasources_file_has_the_documented_keys(tmp_path):
    build(tmp_path, vm_url=VM_URL + "/")
    data = load_yaml(tmp_path / DATASOURCES_FILE)
    assert set(data) == {"apiVersion", "datasources"}
    assert data["apiVersion"] == 1
    (vm,) = data["datasources"]
    assert {"name", "type", "access", "url", "uid", "isDefault", "jsonData"} <= set(vm)
    assert set(vm) <= {
        "name", "type", "access", "orgId", "uid", "url", "isDefault", "editable",
        "jsonData", "secureJsonData", "version", "basicAuth", "basicAuthUser",
    }  # fmt: skip
    assert vm["name"] == "anju-vm"
    assert vm["uid"] == "anju-vm"
    assert vm["type"] == "prometheus"
    assert vm["access"] == "proxy"
    assert vm["url"] == VM_URL  # no trailing slash: Grafana appends /api/v1/...
    assert vm["isDefault"] is True
    assert vm["orgId"] == 1
    assert vm["jsonData"]["httpMethod"] == "POST"
    assert "secureJsonData" not in vm


def test_influx_datasource_is_optional_and_keeps_its_token_out_of_the_file(tmp_path):
    build(tmp_path, vm_url=VM_URL, influx=InfluxSource(url="http://influxdb:8086", bucket="b"))
    data = load_yaml(tmp_path / DATASOURCES_FILE)
    vm, influx = data["datasources"]
    assert [ds["isDefault"] for ds in (vm, influx)] == [True, False]
    assert influx["type"] == "influxdb"
    assert influx["uid"] == "anju-influx"
    assert influx["url"] == "http://influxdb:8086"
    assert influx["jsonData"] == {"version": "Flux", "organization": "anju", "defaultBucket": "b"}
    # Grafana expands $VAR / ${VAR} in provisioning values when it starts.
    assert influx["secureJsonData"] == {"token": "${ANJU_INFLUX_TOKEN}"}


def test_dashboard_provider_file_has_the_documented_keys(tmp_path):
    build(tmp_path, vm_url=VM_URL, dashboards_path="/srv/grafana/anju")
    data = load_yaml(tmp_path / PROVIDERS_FILE)
    assert set(data) == {"apiVersion", "providers"}
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert set(provider) == {
        "name", "orgId", "folder", "folderUid", "type", "disableDeletion",
        "updateIntervalSeconds", "allowUiUpdates", "options",
    }  # fmt: skip
    assert provider["type"] == "file"
    assert provider["orgId"] == 1
    assert provider["folder"] == "anju"
    assert isinstance(provider["disableDeletion"], bool)
    assert isinstance(provider["allowUiUpdates"], bool)
    assert isinstance(provider["updateIntervalSeconds"], int)
    assert provider["options"] == {"path": "/srv/grafana/anju", "foldersFromFilesStructure": False}


@pytest.mark.parametrize("url", ["victoria:8428", "ftp://vm:21", "http://", "http://u:p@vm:8428"])
def test_build_refuses_a_bad_vm_url(tmp_path, url):
    with pytest.raises(DashboardsError, match="VictoriaMetrics URL"):
        build(tmp_path, vm_url=url)
    assert not (tmp_path / "dashboards").exists()


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_build_is_deterministic(tmp_path):
    build(tmp_path / "a", vm_url=VM_URL)
    first = _tree(tmp_path / "a")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.json")}
    build(tmp_path / "a", vm_url=VM_URL)
    build(tmp_path / "b", vm_url=VM_URL)
    assert _tree(tmp_path / "a") == first == _tree(tmp_path / "b")
    # Unchanged files are not rewritten: Grafana's provider sees no change.
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*.json")} == mtimes


def test_build_is_deterministic_across_processes(tmp_path):
    """Same bytes whatever the hash seed (set and dict order must not leak into the files)."""
    code = "import sys, pathlib, dashboards; dashboards.build(pathlib.Path(sys.argv[1]), vm_url=sys.argv[2])"
    trees = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed-{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-c", code, str(out), VM_URL],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
        )
        trees.append(_tree(out))
    assert trees[0] == trees[1]
    assert trees[0] == _tree(Path(build(tmp_path / "here", vm_url=VM_URL)[0]).parents[2])


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_build_prints_the_files_written(tmp_path):
    result = CliRunner().invoke(
        dashboards_app,
        ["build", "--out", str(tmp_path), "--vm-url", VM_URL],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for name in (
        "provisioning/datasources/anju.yaml",
        "provisioning/dashboards/anju.yaml",
        *BOARD_FILES,
    ):
        assert name in result.output
    assert load_yaml(tmp_path / DATASOURCES_FILE)["datasources"][0]["url"] == VM_URL


def test_cli_build_reports_a_bad_url(tmp_path):
    result = CliRunner().invoke(dashboards_app, ["build", "--out", str(tmp_path), "--vm-url", "vm"])
    assert result.exit_code == 2
    assert "not an http(s) URL" in result.output


def test_cli_push_reads_the_token_from_the_environment_only(tmp_path):
    result = CliRunner().invoke(
        dashboards_app,
        ["push", "--url", "http://127.0.0.1:9", "--token-env", "ANJU_TEST_NO_SUCH_TOKEN"],
        env={"ANJU_TEST_NO_SUCH_TOKEN": ""},
    )
    assert result.exit_code == 2
    assert "ANJU_TEST_NO_SUCH_TOKEN is not set" in result.output
    result = CliRunner().invoke(dashboards_app, ["push", "--url", "http://x", "--token", "secret"])
    assert result.exit_code == 2  # there is no --token option
