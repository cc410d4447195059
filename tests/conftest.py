"""Shared fixtures: real servers on free loopback ports, stopped after use even when a test fails.

- ``mosquitto`` / ``victoria``: a fresh Mosquitto broker / VictoriaMetrics per test.
- ``mosquitto_session`` / ``victoria_session``: one per test session, for tests that only need
  *a* server and keep to their own topics and series names.
- ``mosquitto_factory`` / ``victoria_factory``: start more, with options (TLS or ACL lines,
  persistence, extra flags); all are stopped after the test.
- ``webhook_receiver``: an HTTP server recording every POST/PUT.
- ``free_port``: a function returning a free loopback port.

A missing server binary fails the test with a message to run ``make servers``: never a skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests import servers
from tests.servers import Mosquitto, VictoriaMetrics, WebhookReceiver

S = TypeVar("S", Mosquitto, VictoriaMetrics)


def _started(server_type: type[S], **kwargs: Any) -> S:
    try:
        return server_type(**kwargs).start()
    except (servers.ServerNotInstalledError, servers.ServerStartError) as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()`` returns a loopback TCP port that was free a moment ago."""
    return servers.free_port


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A fresh Mosquitto broker for this test (anonymous, no persistence)."""
    broker = _started(Mosquitto, workdir=tmp_path / "mosquitto")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def mosquitto_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """One Mosquitto broker shared by the whole session: use topics of your own."""
    broker = _started(Mosquitto, workdir=tmp_path_factory.mktemp("mosquitto-session"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``mosquitto_factory(**options)`` starts a broker (``tests.servers.Mosquitto``)."""
    started: list[Mosquitto] = []

    def start(**options: Any) -> Mosquitto:
        options.setdefault("workdir", tmp_path / f"mosquitto-{len(started)}")
        broker = _started(Mosquitto, **options)
        started.append(broker)
        return broker

    try:
        yield start
    finally:
        for broker in started:
            broker.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    """A fresh, empty VictoriaMetrics for this test."""
    server = _started(VictoriaMetrics, workdir=tmp_path / "victoria-metrics")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def victoria_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """One VictoriaMetrics shared by the whole session: use series names of your own."""
    server = _started(VictoriaMetrics, workdir=tmp_path_factory.mktemp("victoria-session"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria_factory(tmp_path: Path) -> Iterator[Callable[..., VictoriaMetrics]]:
    """``victoria_factory(**options)`` starts a VictoriaMetrics (``tests.servers``)."""
    started: list[VictoriaMetrics] = []

    def start(**options: Any) -> VictoriaMetrics:
        options.setdefault("workdir", tmp_path / f"victoria-metrics-{len(started)}")
        server = _started(VictoriaMetrics, **options)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """An HTTP server on a loopback port recording every POST/PUT (``.requests``)."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
