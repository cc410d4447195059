"""Pseudonymisation, the outbound queue and the gateway config."""

from __future__ import annotations

import pytest

from edge_agent import ConfigError, Pseudonymiser, parse_gateway_config

SECRET = b"0123456789abcdef-site-secret"


def test_pseudonym_is_keyed_stable_and_hides_the_number():
    one = Pseudonymiser(SECRET)
    other_site = Pseudonymiser(b"another-site-secret-0000")
    pseudonym = one.pseudonym("0012345678")
    assert pseudonym == one.pseudonym(" 0012345678 ")
    assert pseudonym.startswith("h1:")
    assert len(pseudonym) == 35
    assert "12345678" not in pseudonym
    assert pseudonym != other_site.pseudonym("0012345678")
    assert pseudonym != one.pseudonym("0012345679")


def test_short_secrets_are_refused():
    with pytest.raises(ValueError, match="16 bytes"):
        Pseudonymiser(b"short")


def test_raw_credentials_only_on_explicit_opt_out():
    assert Pseudonymiser(b"", send_raw=True).pseudonym("00ABC") == "raw:00abc"


GATEWAY = {
    "site": "s1",
    "gateway": "gw1",
    "privacy": {"site_secret": "${TEST_SITE_SECRET}"},
    "drivers": [
        {"type": "simulated", "id": "sim", "devices": [{"id": "t1", "kind": "temp_humidity"}]}
    ],
}


def test_gateway_config_expands_secrets_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEST_SITE_SECRET", "from-the-environment-123")
    config = parse_gateway_config(GATEWAY)
    assert config.privacy.site_secret is not None
    assert config.privacy.site_secret.get_secret_value() == "from-the-environment-123"
    assert "from-the-environment" not in repr(config)
    assert config.drivers[0].type == "simulated"
    assert len(config.config_hash()) == 16


def test_missing_secret_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("TEST_SITE_SECRET", raising=False)
    with pytest.raises(ConfigError, match="TEST_SITE_SECRET"):
        parse_gateway_config(GATEWAY)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gateway": "gw/1"}, "gateway"),
        ({"mqtt": {"port": 0}}, "mqtt.port"),
        ({"batch": {"max_readings": 0}}, "batch.max_readings"),
        ({"unexpected": 1}, "unexpected"),
        ({"drivers": [{"type": "no-such-driver", "id": "x"}]}, "drivers"),
    ],
)
def test_config_errors_name_the_field(monkeypatch, change, field):
    monkeypatch.setenv("TEST_SITE_SECRET", "from-the-environment-123")
    with pytest.raises(ConfigError) as info:
        parse_gateway_config({**GATEWAY, **change}, source="gw1.yaml")
    assert info.value.field == field
    assert str(info.value).startswith("gw1.yaml: ")


def test_the_config_hash_follows_driver_settings_and_a_bad_driver_entry_is_a_config_error() -> None:
    def config(seed: int, drivers: object = None) -> dict[str, object]:
        driver = {
            "type": "simulated",
            "id": "sim",
            "seed": seed,
            "devices": [{"id": "t1", "kind": "temp_humidity"}],
        }
        return {
            "site": "s",
            "gateway": "g",
            "privacy": {"send_raw_credentials": True},
            "drivers": drivers if drivers is not None else [driver],
        }

    first = parse_gateway_config(config(1)).config_hash()
    assert parse_gateway_config(config(1)).config_hash() == first
    assert parse_gateway_config(config(2)).config_hash() != first
    with pytest.raises(ConfigError, match="each driver must be a mapping"):
        parse_gateway_config(config(1, drivers=["simulated"]))
