"""WeCom, DingTalk and Feishu robots against a real HTTP receiver."""

# Full-width Chinese punctuation in expected texts is meant.
# ruff: noqa: RUF001

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from pydantic import SecretStr

from hub.channels import (
    DingTalkRobotNotifier,
    DingTalkRobotSettings,
    FeishuRobotNotifier,
    FeishuRobotSettings,
    WeComRobotNotifier,
    WeComRobotSettings,
)
from hub.channels.robots import dingtalk_sign, feishu_sign
from hub.notifiers import NotifyError
from tests.hub.channels.conftest import firing, resolved
from tests.servers import WebhookReceiver, free_port

# Computed independently with OpenSSL:
#   printf '1700000000000\nSECtest0123456789' | openssl dgst -sha256 -hmac SECtest0123456789 -binary | base64
DINGTALK_SECRET = "SECtest0123456789"  # noqa: S105 - a test vector
DINGTALK_TS = 1_700_000_000_000
DINGTALK_SIGN = "yBKp5IlG6qCzcQWmgyRK/ziJBdVNJmHfFE2ST/CzT/g="
#   printf '' | openssl dgst -sha256 -hmac "$(printf '1700000000\nfeishu-secret')" -binary | base64
FEISHU_SECRET = "feishu-secret"  # noqa: S105 - a test vector
FEISHU_TS = 1_700_000_000
FEISHU_SIGN = "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="


def test_signatures_match_independent_vectors():
    assert dingtalk_sign(DINGTALK_SECRET, DINGTALK_TS) == DINGTALK_SIGN
    assert feishu_sign(FEISHU_SECRET, FEISHU_TS) == FEISHU_SIGN
    # and the same by the vendors' published recipes, spelled out here
    expected = hmac.new(
        DINGTALK_SECRET.encode(), f"{DINGTALK_TS}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
    ).digest()
    assert base64.b64decode(DINGTALK_SIGN) == expected


# --- WeCom -----------------------------------------------------------------------------


def wecom(receiver: WebhookReceiver, **options) -> WeComRobotNotifier:
    url = f"{receiver.url}/cgi-bin/webhook/send?key=robot-key-123"
    return WeComRobotNotifier(WeComRobotSettings(name="duty", url=SecretStr(url), **options))


async def test_wecom_posts_markdown_naming_place_grid_severity_and_action(webhook_receiver):
    webhook_receiver.response_body = b'{"errcode": 0, "errmsg": "ok"}'
    notifier = wecom(webhook_receiver)
    try:
        await notifier.send(firing())
    finally:
        await notifier.aclose()
    (request,) = webhook_receiver.requests
    assert request.method == "POST"
    assert request.path == "/cgi-bin/webhook/send"
    assert request.query == {"key": ["robot-key-123"]}
    assert request.headers["content-type"] == "application/json"
    assert set(request.json) == {"msgtype", "markdown"}
    assert request.json["msgtype"] == "markdown"
    content = request.json["markdown"]["content"]
    assert content.splitlines()[0] == (
        "### 🔴 【告警·紧急】Building 3, floor 2, unit 201：烟感报警 Smoke detected  "
    )
    assert "> **地点**：Building 3, floor 2, unit 201" in content
    assert "> **网格**：North grid" in content
    assert '> **级别**：<font color="warning">紧急 (critical)</font>' in content
    assert (
        "> **处置**：Smoke at Building 3, floor 2, unit 201 (grid North grid): check the unit now"
        in content
    )
    assert "> **发生**：2023-11-15 06:13:20" in content
    assert "Wang Fang (grid_worker)、Chen Min (community_office)" in content


async def test_wecom_resolve_says_resolved_and_how_long(webhook_receiver):
    webhook_receiver.response_body = b'{"errcode": 0, "errmsg": "ok"}'
    notifier = wecom(webhook_receiver)
    try:
        await notifier.send(resolved())
    finally:
        await notifier.aclose()
    content = webhook_receiver.requests[0].json["markdown"]["content"]
    assert content.startswith("### ✅ 【已恢复·紧急】Building 3, floor 2, unit 201")
    assert "> **恢复**：2023-11-15 06:15:25（持续 2分5秒）" in content
    assert '<font color="info">' in content


async def test_wecom_errcode_is_a_failure_and_the_key_stays_out_of_the_reason(webhook_receiver):
    webhook_receiver.response_body = b'{"errcode": 93000, "errmsg": "invalid webhook url"}'
    notifier = wecom(webhook_receiver)
    try:
        with pytest.raises(NotifyError, match="errcode 93000: invalid webhook url") as info:
            await notifier.send(firing())
    finally:
        await notifier.aclose()
    assert "robot-key-123" not in str(info.value)


async def test_wecom_http_500_and_non_json_are_failures(webhook_receiver):
    notifier = wecom(webhook_receiver)
    try:
        webhook_receiver.set_responses([500])
        with pytest.raises(NotifyError, match="HTTP 500"):
            await notifier.send(firing())
        webhook_receiver.response_body = b"<html>busy</html>"
        with pytest.raises(NotifyError, match="not JSON"):
            await notifier.send(firing())
        webhook_receiver.response_body = b'{"ok": true}'
        with pytest.raises(NotifyError, match="no errcode"):
            await notifier.send(firing())
    finally:
        await notifier.aclose()


async def test_an_unreachable_robot_is_a_notify_error_without_the_key():
    url = f"http://127.0.0.1:{free_port()}/cgi-bin/webhook/send?key=robot-key-123"
    notifier = WeComRobotNotifier(WeComRobotSettings(name="duty", url=SecretStr(url), timeout_s=2))
    try:
        with pytest.raises(NotifyError, match="ConnectError") as info:
            await notifier.send(firing())
    finally:
        await notifier.aclose()
    assert "robot-key-123" not in str(info.value)


async def test_severity_filter_and_send_resolved_false_skip_quietly(webhook_receiver):
    notifier = wecom(webhook_receiver, severities=("minor",), send_resolved=False)
    try:
        await notifier.send(firing())
        await notifier.send(resolved(severity="minor"))
    finally:
        await notifier.aclose()
    assert webhook_receiver.requests == []


# --- DingTalk --------------------------------------------------------------------------


async def test_dingtalk_signs_the_url_and_posts_markdown_with_at(webhook_receiver):
    webhook_receiver.response_body = b'{"errcode": 0, "errmsg": "ok"}'
    settings = DingTalkRobotSettings(
        name="duty",
        url=SecretStr(f"{webhook_receiver.url}/robot/send?access_token=tok"),
        secret=SecretStr(DINGTALK_SECRET),
        at_mobiles=("13800138000",),
    )
    notifier = DingTalkRobotNotifier(settings, clock_ms=lambda: DINGTALK_TS)
    try:
        await notifier.send(firing())
        await notifier.send(resolved())
    finally:
        await notifier.aclose()
    first, second = webhook_receiver.requests
    assert first.path == "/robot/send"
    # parse_qs decodes: the sign arrived intact, "+" and "/" included
    assert first.query == {
        "access_token": ["tok"],
        "timestamp": [str(DINGTALK_TS)],
        "sign": [DINGTALK_SIGN],
    }
    assert first.json["msgtype"] == "markdown"
    assert first.json["markdown"]["title"] == (
        "【告警·紧急】Building 3, floor 2, unit 201：烟感报警 Smoke detected"
    )
    text = first.json["markdown"]["text"]
    assert "> **网格**：North grid" in text
    assert "> **级别**：**紧急 (critical)**" in text
    assert text.endswith("@13800138000")
    assert first.json["at"] == {"atMobiles": ["13800138000"], "isAtAll": False}
    # nobody is @-ed for the resolve
    assert second.json["at"] == {"atMobiles": [], "isAtAll": False}
    assert second.json["markdown"]["title"].startswith("【已恢复·紧急】")


def test_dingtalk_sign_is_url_encoded_in_the_raw_query():
    settings = DingTalkRobotSettings(
        name="duty",
        url=SecretStr("https://oapi.dingtalk.com/robot/send?access_token=tok"),
        secret=SecretStr(DINGTALK_SECRET),
    )
    url = DingTalkRobotNotifier(settings).signed_url(DINGTALK_TS)
    assert url == (
        "https://oapi.dingtalk.com/robot/send?access_token=tok&timestamp=1700000000000"
        "&sign=yBKp5IlG6qCzcQWmgyRK%2FziJBdVNJmHfFE2ST%2FCzT%2Fg%3D"
    )


async def test_dingtalk_errcode_is_a_failure(webhook_receiver):
    webhook_receiver.response_body = b'{"errcode": 310000, "errmsg": "sign not match"}'
    settings = DingTalkRobotSettings(
        name="duty", url=SecretStr(webhook_receiver.url + "/robot/send")
    )
    notifier = DingTalkRobotNotifier(settings)
    try:
        with pytest.raises(NotifyError, match="errcode 310000: sign not match"):
            await notifier.send(firing())
    finally:
        await notifier.aclose()
    assert webhook_receiver.requests[0].query == {}  # no secret, no signature


# --- Feishu ----------------------------------------------------------------------------


async def test_feishu_signs_the_body_and_sends_a_red_card(webhook_receiver):
    webhook_receiver.response_body = b'{"code": 0, "msg": "success", "data": {}}'
    settings = FeishuRobotSettings(
        name="duty",
        url=SecretStr(webhook_receiver.url + "/open-apis/bot/v2/hook/abc"),
        secret=SecretStr(FEISHU_SECRET),
    )
    notifier = FeishuRobotNotifier(settings, clock_ms=lambda: FEISHU_TS * 1000 + 999)
    try:
        await notifier.send(firing())
    finally:
        await notifier.aclose()
    body = webhook_receiver.requests[0].json
    assert body["timestamp"] == str(FEISHU_TS)
    assert body["sign"] == FEISHU_SIGN
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"]["template"] == "red"
    assert card["header"]["title"] == {
        "tag": "plain_text",
        "content": "【告警·紧急】Building 3, floor 2, unit 201：烟感报警 Smoke detected",
    }
    content = card["elements"][0]["text"]["content"]
    assert card["elements"][0]["text"]["tag"] == "lark_md"
    assert "**网格**：North grid" in content
    assert "**处置**：Smoke at Building 3" in content


async def test_feishu_plain_text_without_secret(webhook_receiver):
    webhook_receiver.response_body = b'{"StatusCode": 0, "StatusMessage": "success"}'
    settings = FeishuRobotSettings(
        name="duty", url=SecretStr(webhook_receiver.url + "/hook"), card=False
    )
    notifier = FeishuRobotNotifier(settings)
    try:
        await notifier.send(resolved())
    finally:
        await notifier.aclose()
    body = webhook_receiver.requests[0].json
    assert set(body) == {"msg_type", "content"}
    assert body["msg_type"] == "text"
    lines = body["content"]["text"].splitlines()
    assert lines[0] == "【已恢复·紧急】Building 3, floor 2, unit 201：烟感报警 Smoke detected"
    assert "地点：Building 3, floor 2, unit 201" in lines
    assert "级别：紧急 (critical)" in lines


async def test_feishu_code_is_a_failure(webhook_receiver):
    webhook_receiver.response_body = b'{"code": 19021, "msg": "sign match fail"}'
    settings = FeishuRobotSettings(name="duty", url=SecretStr(webhook_receiver.url + "/hook"))
    notifier = FeishuRobotNotifier(settings)
    try:
        with pytest.raises(NotifyError, match="code 19021: sign match fail"):
            await notifier.send(firing())
        webhook_receiver.set_responses([502])
        with pytest.raises(NotifyError, match="HTTP 502"):
            await notifier.send(firing())
    finally:
        await notifier.aclose()
