"""The gateway bundle: a config the edge agent loads, secrets kept apart, an enrol command that
works."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from edge_agent import ConfigError, load_gateway_config
from hub.broker import BrokerError, BundleContent, BundleOptions, write_bundle
from hub.broker.bundle import enrol_command
from hub.broker.pki import cert_pem, create_ca, issue_client_cert, key_pem
from tests.hub.broker.brokers import read_env

# Test values, not credentials.
NEW_PW = "new-pw"
QUOTED_KEY = 'a "b" \\c'
BROKEN_KEY = "a\nb"

TEMPLATE = """\
# Guard house gateway: the east gate's reader.
site: s1
gateway: gw-1
mqtt:
  host: 127.0.0.1
  port: 1883
  username: someone-else
  password: literal-should-go
  keepalive_s: 15
batch: {max_readings: 20, max_delay_s: 0.5}
drivers:
  # One simulated reader.
  - type: simulated
    id: sim
    seed: 1
    interval_s: 1
    devices:
      - {id: gate-reader, kind: door_reader, door: east-gate}
"""


def password_content(**changes: Any) -> BundleContent:
    values: dict[str, Any] = {
        "site": "s1",
        "gateway": "gw-1",
        "auth": "password",
        "host": "broker.example",
        "port": 8883,
        "ca_pem": cert_pem(create_ca("s1").cert),
        "password": "pw-123_abc",
    }
    values.update(changes)
    return BundleContent(**values)


def cert_content() -> BundleContent:
    ca = create_ca("s1")
    client = issue_client_cert(ca, "gw-1", site="s1")
    return BundleContent(
        site="s1",
        gateway="gw-1",
        auth="cert",
        host="broker.example",
        port=8884,
        ca_pem=cert_pem(ca.cert),
        client_cert_pem=cert_pem(client.cert),
        client_key_pem=key_pem(client.key),
    )


def options(tmp_path: Path, **changes: Any) -> BundleOptions:
    values: dict[str, Any] = {
        "out_dir": tmp_path / "out",
        "install_dir": PurePosixPath(tmp_path / "etc-anju"),
        "data_dir": PurePosixPath(tmp_path / "queue"),
        "site_secret": "site-key-1",
    }
    values.update(changes)
    return BundleOptions(**values)


def load_with_secrets(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for key, value in read_env(directory / "secrets.env").items():
        monkeypatch.setenv(key, value)
    return load_gateway_config(directory / "gateway.yaml")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_password_bundle_loads_as_the_edge_agent_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = write_bundle(password_content(), options(tmp_path))
    directory = bundle.directory
    assert directory == tmp_path / "out" / "gw-1"
    assert sorted(p.name for p in directory.iterdir()) == [
        "anju-edge.service",
        "ca.pem",
        "gateway.yaml",
        "secrets.env",
    ]
    text = (directory / "gateway.yaml").read_text()
    assert "pw-123_abc" not in text
    assert "site-key-1" not in text
    assert "${ANJU_MQTT_PASSWORD}" in text
    config = load_with_secrets(directory, monkeypatch)
    assert (config.site, config.gateway) == ("s1", "gw-1")
    assert config.mqtt.host == "broker.example"
    assert config.mqtt.port == 8883
    assert config.mqtt.username == "gw-1"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "pw-123_abc"
    assert config.mqtt.tls_ca_file == tmp_path / "etc-anju" / "ca.pem"
    assert config.mqtt.tls_cert_file is None
    assert config.data_dir == tmp_path / "queue"
    assert config.privacy.site_secret is not None
    assert config.privacy.site_secret.get_secret_value() == "site-key-1"
    assert mode(directory / "secrets.env") == 0o600
    assert mode(directory) == 0o700
    assert mode(bundle.archive) == 0o600


def test_without_the_password_in_the_environment_the_config_does_not_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = write_bundle(password_content(), options(tmp_path))
    monkeypatch.delenv("ANJU_MQTT_PASSWORD", raising=False)
    monkeypatch.setenv("ANJU_SITE_SECRET", "x")
    with pytest.raises(ConfigError, match="ANJU_MQTT_PASSWORD"):
        load_gateway_config(bundle.directory / "gateway.yaml")


def test_cert_bundle_carries_the_key_0600_and_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = write_bundle(cert_content(), options(tmp_path))
    directory = bundle.directory
    assert mode(directory / "client.key") == 0o600
    assert "ANJU_MQTT_PASSWORD" not in (directory / "secrets.env").read_text()
    config = load_with_secrets(directory, monkeypatch)
    assert config.mqtt.password is None
    assert config.mqtt.port == 8884
    assert config.mqtt.tls_cert_file == tmp_path / "etc-anju" / "client.pem"
    assert config.mqtt.tls_key_file == tmp_path / "etc-anju" / "client.key"
    key = load_pem_private_key((directory / "client.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_template_keeps_drivers_settings_and_comments_but_not_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "gw-1.yaml"
    template.write_text(TEMPLATE)
    bundle = write_bundle(password_content(), options(tmp_path, template=template))
    text = (bundle.directory / "gateway.yaml").read_text()
    assert "# One simulated reader." in text
    assert "# Guard house gateway" in text
    assert "literal-should-go" not in text
    assert "someone-else" not in text
    config = load_with_secrets(bundle.directory, monkeypatch)
    assert config.mqtt.keepalive_s == 15
    assert config.mqtt.username == "gw-1"
    assert config.batch.max_readings == 20
    assert [d.id for d in config.drivers] == ["sim"]


def test_template_of_another_gateway_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text(TEMPLATE.replace("gateway: gw-1", "gateway: gw-9"))
    with pytest.raises(BrokerError, match="is for gateway 'gw-9'"):
        write_bundle(password_content(), options(tmp_path, template=template))
    assert not (tmp_path / "out").exists()


def test_a_failing_config_check_writes_nothing(tmp_path: Path) -> None:
    def refuse(_data: Any) -> None:
        raise ValueError("drivers.0.type: unknown driver")

    with pytest.raises(BrokerError, match="unknown driver"):
        write_bundle(password_content(), options(tmp_path, check_config=refuse))
    assert not (tmp_path / "out").exists()


def test_a_new_bundle_replaces_the_old_one_but_never_foreign_files(tmp_path: Path) -> None:
    first = write_bundle(cert_content(), options(tmp_path))
    assert (first.directory / "client.key").exists()
    second = write_bundle(password_content(password=NEW_PW), options(tmp_path))
    assert not (second.directory / "client.key").exists()
    assert NEW_PW in (second.directory / "secrets.env").read_text()
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    (second.directory / "notes.txt").write_text("mine")
    with pytest.raises(BrokerError, match=r"notes\.txt"):
        write_bundle(password_content(), options(tmp_path))
    assert (second.directory / "notes.txt").read_text() == "mine"


def test_site_secret_is_optional_and_quoted_when_needed(tmp_path: Path) -> None:
    bundle = write_bundle(password_content(), options(tmp_path, site_secret=None))
    assert not bundle.has_site_secret
    assert "\nANJU_SITE_SECRET=" not in (bundle.directory / "secrets.env").read_text()
    bundle = write_bundle(password_content(), options(tmp_path, site_secret=QUOTED_KEY))
    assert 'ANJU_SITE_SECRET="a \\"b\\" \\\\c"' in (bundle.directory / "secrets.env").read_text()
    with pytest.raises(BrokerError, match="line break"):
        write_bundle(password_content(), options(tmp_path, site_secret=BROKEN_KEY))


def test_archive_holds_the_same_files_owned_by_root_with_their_modes(tmp_path: Path) -> None:
    bundle = write_bundle(cert_content(), options(tmp_path))
    with tarfile.open(bundle.archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {p.name for p in bundle.directory.iterdir()}
        for member in members.values():
            assert member.isfile()
            assert (member.uid, member.gid, member.uname) == (0, 0, "root")
            extracted = tar.extractfile(member)
            assert extracted is not None
            assert extracted.read() == (bundle.directory / member.name).read_bytes()
        assert members["client.key"].mode == 0o600
        assert members["secrets.env"].mode == 0o600
        assert members["ca.pem"].mode == 0o644


def test_unit_runs_the_agent_on_the_bundle_config_and_keeps_its_queue(tmp_path: Path) -> None:
    bundle = write_bundle(
        password_content(),
        options(
            tmp_path,
            install_dir=PurePosixPath("/etc/anju"),
            data_dir=PurePosixPath("/var/lib/anju-edge"),
        ),
    )
    unit = (bundle.directory / "anju-edge.service").read_text()
    assert "ExecStart=/usr/local/bin/anju edge run --config /etc/anju/gateway.yaml" in unit
    assert "EnvironmentFile=/etc/anju/secrets.env" in unit
    assert "StateDirectory=anju-edge" in unit
    assert "WorkingDirectory=/var/lib/anju-edge" in unit
    assert "Restart=always" in unit
    assert "WantedBy=multi-user.target" in unit
    elsewhere = write_bundle(password_content(), options(tmp_path))
    unit = (elsewhere.directory / "anju-edge.service").read_text()
    assert f"ReadWritePaths={tmp_path / 'queue'}" in unit
    assert "StateDirectory" not in unit


def test_enrol_command_unpacks_installs_the_unit_and_restarts_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = options(tmp_path)
    bundle = write_bundle(password_content(), opts)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "systemctl.calls"
    (stubs / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (stubs / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    units = tmp_path / "systemd"
    units.mkdir()
    gateway_home = tmp_path / "gateway-home"
    gateway_home.mkdir()
    (gateway_home / bundle.archive.name).write_bytes(bundle.archive.read_bytes())
    command = enrol_command(bundle.archive.name, opts, systemd_dir=PurePosixPath(units))
    assert command == bundle.enrol_command.replace("/etc/systemd/system", str(units))
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", command], cwd=gateway_home, env=env, check=True)
    installed = tmp_path / "etc-anju"
    assert mode(installed / "secrets.env") == 0o600
    assert (installed / "gateway.yaml").read_bytes() == (
        bundle.directory / "gateway.yaml"
    ).read_bytes()
    assert (units / "anju-edge.service").exists()
    assert calls.read_text().splitlines() == [
        "daemon-reload",
        "enable anju-edge",
        "restart anju-edge",
    ]
    for key, value in read_env(installed / "secrets.env").items():
        monkeypatch.setenv(key, value)
    assert load_gateway_config(installed / "gateway.yaml").gateway == "gw-1"
