"""SMS through an HTTP gateway against a real HTTP receiver."""

from __future__ import annotations

import dataclasses
import urllib.parse

import pytest
from pydantic import SecretStr

from hub.channels import SmsGatewayNotifier, SmsGatewaySettings
from hub.channels.sms import fill
from hub.channels.text import fit_sms, render
from hub.notifiers import Contact, NotifyError
from tests.hub.channels.conftest import firing, resolved


def gateway(receiver, **options) -> SmsGatewayNotifier:
    base = {
        "name": "duty",
        "url": SecretStr(receiver.url + "/sms/send"),
        "headers": {"Authorization": SecretStr("Bearer sms-token")},
        "phones": ("13800138000",),
        "directory": {"Wang Fang": "+8613900139000"},
    }
    return SmsGatewayNotifier(SmsGatewaySettings(**(base | options)))


async def test_json_body_per_phone_short_text_with_place_and_severity(webhook_receiver):
    notifier = gateway(webhook_receiver)
    try:
        await notifier.send(firing())
    finally:
        await notifier.aclose()
    first, second = webhook_receiver.requests
    assert first.path == "/sms/send"
    assert first.headers["authorization"] == "Bearer sms-token"
    assert first.headers["content-type"] == "application/json; charset=utf-8"
    assert first.json["to"] == "13800138000"
    assert second.json["to"] == "+8613900139000"
    text = first.json["text"]
    assert text == second.json["text"]
    assert text.startswith(
        "【紧急】Building 3, floor 2, unit 201 烟感报警 Smoke detected。Smoke at"
    )
    assert len(text) == 70  # CJK in it: one UCS-2 segment
    assert text.endswith("…")


async def test_resolve_text_fits(webhook_receiver):
    notifier = gateway(webhook_receiver, phones=("1",), directory={}, prefix="【安居】")
    try:
        await notifier.send(resolved())
    finally:
        await notifier.aclose()
    text = webhook_receiver.requests[0].json["text"]
    assert text.startswith(
        "【安居】【已恢复】Building 3, floor 2, unit 201 烟感报警 Smoke detected"
    )
    assert len(text) <= 70


async def test_form_body_and_placeholders_in_the_url_are_escaped(webhook_receiver):
    notifier = gateway(
        webhook_receiver,
        url=SecretStr(webhook_receiver.url + "/send?mobile={phone}"),
        body_format="form",
        body_template="msg={text}&sign=anju",
        phones=("+8613800138000",),
        directory={},
    )
    try:
        await notifier.send(firing(summary="Smoke & fire", message="a=b", labels={}))
    finally:
        await notifier.aclose()
    (request,) = webhook_receiver.requests
    assert request.query == {"mobile": ["+8613800138000"]}
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = urllib.parse.parse_qs(request.body.decode())
    assert form == {"msg": ["【紧急】 Smoke & fire。a=b"], "sign": ["anju"]}


def test_json_escaping_keeps_the_body_valid():
    out = fill('{"t": "{text}"}', {"text": 'say "hi"\n'}, "json")
    assert out == '{"t": "say \\"hi\\"\\n"}'


async def test_failures_name_the_masked_number_and_retries_skip_the_ones_served(webhook_receiver):
    notifier = gateway(webhook_receiver)
    try:
        webhook_receiver.set_responses([200, 500])
        with pytest.raises(NotifyError, match=r"\+86\*+9000: HTTP 500") as info:
            await notifier.send(firing())
        assert "13900139000" not in str(info.value)
        await notifier.send(firing())  # the retry
    finally:
        await notifier.aclose()
    sent_to = [r.json["to"] for r in webhook_receiver.requests]
    assert sent_to == ["13800138000", "+8613900139000", "+8613900139000"]


async def test_success_field_in_the_answer(webhook_receiver):
    notifier = gateway(webhook_receiver, directory={}, success_field="result.code")
    try:
        webhook_receiver.response_body = b'{"result": {"code": 1, "msg": "no balance"}}'
        with pytest.raises(NotifyError, match=r"result\.code=1"):
            await notifier.send(firing())
        webhook_receiver.response_body = b'{"result": {"code": 0}}'
        await notifier.send(firing())
    finally:
        await notifier.aclose()


def test_gsm_text_gets_160_septets_and_cjk_70_chars():
    assert fit_sms("a" * 160) == "a" * 160
    cut = fit_sms("a" * 200)
    assert len(cut) == 160
    assert cut.endswith("...")
    assert fit_sms("{" * 100) == "{" * 78 + "..."  # extension characters count twice
    assert fit_sms("烟" * 70) == "烟" * 70
    assert fit_sms("烟" * 71) == "烟" * 69 + "…"
    text = render(firing(summary="Smoke", message="Check unit 201 now", labels={"place": "B3"}))
    assert text.short() == "【紧急】B3 Smoke。Check unit 201 now"


async def test_routed_people_are_texted_at_the_phone_the_site_file_gives(webhook_receiver):
    with_contacts = dataclasses.replace(
        firing(),
        contacts=(
            Contact("Wang Fang", phone="+86-138-0000-0001"),
            Contact("Chen Min", email="office@sunrise.example"),
        ),
    )
    notifier = gateway(webhook_receiver, phones=(), directory={"Chen Min": "+8613700000003"})
    quiet = gateway(webhook_receiver, phones=("1",), directory={}, site_contacts=False)
    try:
        await notifier.send(with_contacts)
        await quiet.send(with_contacts)
    finally:
        await notifier.aclose()
        await quiet.aclose()
    # The site file's phone for Wang Fang; the channel's directory for Chen Min; and a
    # channel that does not use the site's contacts only texts its own numbers.
    assert [r.json["to"] for r in webhook_receiver.requests] == [
        "+86-138-0000-0001",
        "+8613700000003",
        "1",
    ]
