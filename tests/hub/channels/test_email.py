"""E-mail against a real SMTP server (aiosmtpd) on a free loopback port."""

# Full-width Chinese punctuation in expected texts is meant.
# ruff: noqa: RUF001

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr, ValidationError

from hub.channels import EmailNotifier, EmailSettings
from hub.notifiers import NotifyError
from tests.hub.channels.conftest import firing, resolved
from tests.servers import LOOPBACK, free_port


class Recorder:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"anju"
        and auth_data.password == b"s3cret"
    )
    return AuthResult(success=ok, handled=False)  # not handled: the server answers 535


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Recorder]]:
    recorder = Recorder()
    controller = Controller(
        recorder,
        hostname=LOOPBACK,
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield controller, recorder
    finally:
        controller.stop()


def settings(controller: Controller, **options) -> EmailSettings:
    base: dict[str, Any] = {
        "name": "office",
        "host": LOOPBACK,
        "port": controller.port,
        "security": "none",
        "username": "anju",
        "password": SecretStr("s3cret"),
        "sender": "anju@sunrise.example",
        "to": ("office@sunrise.example",),
        "directory": {"Wang Fang": "wang@sunrise.example", "Nobody": "x@example"},
        "timeout_s": 5,
    }
    return EmailSettings(**(base | options))


async def test_firing_and_resolve_mails_name_place_severity_and_thread(smtp):
    controller, recorder = smtp
    notifier = EmailNotifier(settings(controller))
    await notifier.send(firing())
    await notifier.send(resolved())
    await notifier.aclose()
    assert len(recorder.messages) == 2
    (sender, rcpts, first), (_, _, second) = recorder.messages
    assert sender == "anju@sunrise.example"
    # `to` plus the routed grid worker found in the directory; Chen Min has no address
    assert rcpts == ["office@sunrise.example", "wang@sunrise.example"]
    assert first["Subject"] == (
        "[安居] 【告警·紧急】Building 3, floor 2, unit 201：烟感报警 Smoke detected"
    )
    assert first["To"] == "office@sunrise.example, wang@sunrise.example"
    body = first.get_content()
    assert "地点：Building 3, floor 2, unit 201" in body
    assert "网格：North grid" in body
    assert "级别：紧急 (critical)" in body
    assert (
        "处置：Smoke at Building 3, floor 2, unit 201 (grid North grid): check the unit now" in body
    )
    assert "通知：Wang Fang (grid_worker)、Chen Min (community_office)" in body

    assert second["Subject"].startswith("[安居] 【已恢复·紧急】Building 3, floor 2, unit 201")
    resolve_body = second.get_content()
    assert "恢复：2023-11-15 06:15:25（持续 2分5秒）" in resolve_body
    assert first["Message-ID"] == "<a1b2c3d4e5f60718.firing@sunrise.example>"
    assert second["In-Reply-To"] == first["Message-ID"]
    assert second["X-Anju-Severity"] == "critical"


async def test_wrong_password_is_a_notify_error(smtp):
    controller, recorder = smtp
    notifier = EmailNotifier(settings(controller, password=SecretStr("wrong")))
    with pytest.raises(NotifyError, match="SMTPAuthenticationError"):
        await notifier.send(firing())
    assert recorder.messages == []


async def test_starttls_against_a_server_without_it_is_a_notify_error(smtp):
    controller, _ = smtp
    notifier = EmailNotifier(settings(controller, security="starttls"))
    with pytest.raises(NotifyError, match="SMTPNotSupportedError"):
        await notifier.send(firing())


async def test_unreachable_server_is_a_notify_error():
    notifier = EmailNotifier(
        EmailSettings(
            name="office",
            host=LOOPBACK,
            port=free_port(),
            security="none",
            sender="a@b.example",
            to=("c@d.example",),
            timeout_s=2,
        )
    )
    with pytest.raises(NotifyError, match="ConnectionRefusedError"):
        await notifier.send(firing())


def test_settings_need_addresses_and_hide_the_password():
    with pytest.raises(ValidationError, match="give `to` or `directory`"):
        EmailSettings(name="x", host="h", sender="a@b.example", site_contacts=False)
    s = EmailSettings(
        name="x",
        host="h",
        sender="a@b.example",
        to=("c@d.example",),
        username="u",
        password=SecretStr("pw"),
    )
    assert "pw" not in repr(s)
