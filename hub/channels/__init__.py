"""Notification channels beyond the generic webhook.

Chinese group robots (WeCom, DingTalk, Feishu), e-mail, SMS, MQTT and Grafana annotations; each
class satisfies :class:`hub.notifiers.Notifier`.
"""

from __future__ import annotations

from hub.channels.email import EmailNotifier
from hub.channels.grafana import GrafanaAnnotationNotifier
from hub.channels.mqtt import MqttNotifier
from hub.channels.robots import DingTalkRobotNotifier, FeishuRobotNotifier, WeComRobotNotifier
from hub.channels.settings import (
    ChannelSettings,
    DingTalkRobotSettings,
    EmailSettings,
    FeishuRobotSettings,
    GrafanaAnnotationSettings,
    MqttChannelSettings,
    SmsGatewaySettings,
    WeComRobotSettings,
)
from hub.channels.sms import SmsGatewayNotifier
from hub.notifiers import Notifier


def build_channels(settings: ChannelSettings) -> list[Notifier]:
    """One notifier per configured channel, in the order of :class:`ChannelSettings`."""
    channels: list[Notifier] = []
    channels += [WeComRobotNotifier(s) for s in settings.wecom]
    channels += [DingTalkRobotNotifier(s) for s in settings.dingtalk]
    channels += [FeishuRobotNotifier(s) for s in settings.feishu]
    channels += [EmailNotifier(s) for s in settings.email]
    channels += [SmsGatewayNotifier(s) for s in settings.sms]
    channels += [MqttNotifier(s) for s in settings.mqtt]
    channels += [GrafanaAnnotationNotifier(s) for s in settings.grafana]
    return channels


__all__ = [
    "ChannelSettings",
    "DingTalkRobotNotifier",
    "DingTalkRobotSettings",
    "EmailNotifier",
    "EmailSettings",
    "FeishuRobotNotifier",
    "FeishuRobotSettings",
    "GrafanaAnnotationNotifier",
    "GrafanaAnnotationSettings",
    "MqttChannelSettings",
    "MqttNotifier",
    "SmsGatewayNotifier",
    "SmsGatewaySettings",
    "WeComRobotNotifier",
    "WeComRobotSettings",
    "build_channels",
]
