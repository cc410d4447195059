"""Channel settings: the YAML of the docs loads, secrets stay secret, build_channels builds."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from hub.channels import (
    ChannelSettings,
    DingTalkRobotNotifier,
    EmailNotifier,
    FeishuRobotNotifier,
    GrafanaAnnotationNotifier,
    MqttNotifier,
    SmsGatewayNotifier,
    WeComRobotNotifier,
    WeComRobotSettings,
    build_channels,
)
from wire.placeholders import expand_placeholders

EXAMPLE = """
wecom:
  - name: property-office
    url: https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${WECOM_KEY}
dingtalk:
  - name: security
    url: https://oapi.dingtalk.com/robot/send?access_token=${DINGTALK_TOKEN}
    secret: ${DINGTALK_SECRET}
    at_mobiles: ["13800138000"]
    severities: [critical, major]
feishu:
  - name: facilities
    url: https://open.feishu.cn/open-apis/bot/v2/hook/${FEISHU_HOOK}
    secret: ${FEISHU_SECRET}
email:
  - name: office
    host: smtp.example.org
    port: 587
    security: starttls
    username: anju@example.org
    password: ${SMTP_PASSWORD}
    sender: anju@example.org
    to: [office@example.org]
    directory: {"Wang Fang": wang@example.org}
sms:
  - name: duty-phones
    url: https://sms.example.org/api/send
    headers: {Authorization: "Bearer ${SMS_TOKEN}"}
    body_template: '{"mobile": "{phone}", "content": "{text}"}'
    directory: {"Wang Fang": "13900139000"}
    severities: [critical]
    success_field: code
    success_values: ["0", "OK"]
mqtt:
  - name: sirens
    host: 127.0.0.1
    topic: anju/v1/{site}/alerts/{severity}/{rule}/{device}
    retain: true
    severities: [critical]
grafana:
  - name: security-wall
    url: http://127.0.0.1:3000
    token: ${GRAFANA_TOKEN}
    dashboard_uid: security-wall
"""

ENV = {
    "WECOM_KEY": "k-wecom",
    "DINGTALK_TOKEN": "t-ding",
    "DINGTALK_SECRET": "SEC-ding",
    "FEISHU_HOOK": "h-feishu",
    "FEISHU_SECRET": "s-feishu",
    "SMTP_PASSWORD": "p-smtp",
    "SMS_TOKEN": "t-sms",
    "GRAFANA_TOKEN": "t-grafana",
}


async def test_the_documented_example_loads_and_builds_every_channel(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    data = expand_placeholders(yaml.safe_load(EXAMPLE), source="example")
    settings = ChannelSettings.model_validate(data)
    text = repr(settings) + str(settings.model_dump())
    for secret in ENV.values():
        assert secret not in text
    channels = build_channels(settings)
    try:
        assert [type(c) for c in channels] == [
            WeComRobotNotifier,
            DingTalkRobotNotifier,
            FeishuRobotNotifier,
            EmailNotifier,
            SmsGatewayNotifier,
            MqttNotifier,
            GrafanaAnnotationNotifier,
        ]
        assert [c.name for c in channels] == [
            "wecom:property-office",
            "dingtalk:security",
            "feishu:facilities",
            "email:office",
            "sms:duty-phones",
            "mqtt:sirens",
            "grafana:security-wall",
        ]
    finally:
        for channel in channels:
            await channel.aclose()
    assert build_channels(ChannelSettings()) == []


def test_unknown_fields_and_zones_are_refused():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        WeComRobotSettings.model_validate({"name": "x", "url": "http://x", "key": "k"})
    with pytest.raises(ValidationError, match="unknown time zone"):
        WeComRobotSettings.model_validate({"name": "x", "url": "http://x", "timezone": "Mars/Base"})
    with pytest.raises(ValidationError, match="severities"):
        WeComRobotSettings.model_validate({"name": "x", "url": "http://x", "severities": ["fatal"]})
    settings = WeComRobotSettings.model_validate({"name": "x", "url": "http://x"})
    with pytest.raises(ValidationError, match="frozen"):
        settings.name = "y"  # type: ignore[misc]
