"""Settings of the notification channels, one frozen model per channel.

Secrets are :class:`~pydantic.SecretStr` (write ``${ENV}`` placeholders in the config file; the
loader expands them).  Every channel has a ``name`` (shown in logs and delivery records), may be
limited to some severities, and sends resolves unless ``send_resolved`` is false.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

Seconds = Annotated[float, Field(gt=0)]
Severity = Literal["critical", "major", "minor", "warning"]
ALL_SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "warning")

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
TOPIC_PLACEHOLDERS = frozenset(
    {"site", "severity", "rule", "device", "grid", "building", "alert_id", "transition"}
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChannelBase(_Frozen):
    """What every channel has."""

    name: str = Field(min_length=1, description="shown in logs and delivery records")
    severities: tuple[Severity, ...] = Field(
        default=ALL_SEVERITIES, min_length=1, description="only alerts of these severities"
    )
    send_resolved: bool = Field(
        default=True, description="also announce the resolve (everyone notified gets it)"
    )
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone for times in messages")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown time zone {value!r}"
            raise ValueError(msg) from exc
        return value


class HttpChannelBase(ChannelBase):
    """What every HTTP channel has."""

    timeout_s: Seconds = Field(default=5.0, description="per request")


class WeComRobotSettings(HttpChannelBase):
    """A WeCom (企业微信) group robot; the key is part of the webhook URL."""

    url: SecretStr = Field(
        description="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...; use ${WECOM_URL}"
    )


class DingTalkRobotSettings(HttpChannelBase):
    """A DingTalk (钉钉) group robot, optionally with the "sign" security setting."""

    url: SecretStr = Field(
        description="https://oapi.dingtalk.com/robot/send?access_token=...; use ${DINGTALK_URL}"
    )
    secret: SecretStr | None = Field(
        default=None, description="the robot's SEC... signing secret; absent = no signature"
    )
    at_mobiles: tuple[str, ...] = Field(default=(), description="mobiles to @ on firing")


class FeishuRobotSettings(HttpChannelBase):
    """A Feishu / Lark group robot, optionally with signature verification."""

    url: SecretStr = Field(
        description="https://open.feishu.cn/open-apis/bot/v2/hook/...; use ${FEISHU_URL}"
    )
    secret: SecretStr | None = Field(
        default=None, description="the robot's signing secret; absent = no signature"
    )
    card: bool = Field(default=True, description="an interactive card; false sends plain text")


class EmailSettings(ChannelBase):
    """E-mail over SMTP."""

    host: str = Field(description="SMTP server")
    port: int = Field(default=587, ge=1, le=65535, description="587 STARTTLS, 465 TLS, 25 plain")
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="STARTTLS, implicit TLS (SMTPS) or none (loopback only)"
    )
    username: str | None = Field(default=None, description="login user; absent = no login")
    password: SecretStr | None = Field(default=None, description="use ${SMTP_PASSWORD}")
    sender: str = Field(description="From: address, e.g. anju@example.org")
    to: tuple[str, ...] = Field(default=(), description="addresses that get every alert")
    directory: dict[str, str] = Field(
        default_factory=dict,
        description="person name (as in the site file) → address, for routed recipients",
    )
    site_contacts: bool = Field(
        default=True, description="also mail routed people at the address the site file gives"
    )
    subject_prefix: str = Field(default="[安居]", description="put before every subject")
    timeout_s: Seconds = Field(default=10.0, description="per connection")

    @model_validator(mode="after")
    def _has_addresses(self) -> Self:
        if not self.to and not self.directory and not self.site_contacts:
            msg = "give `to` or `directory` (or both), or keep `site_contacts`"
            raise ValueError(msg)
        if self.password is not None and self.username is None:
            msg = "`password` needs `username`"
            raise ValueError(msg)
        return self


class SmsGatewaySettings(HttpChannelBase):
    """SMS through an HTTP gateway (a vendor API or an in-house adapter), one request per phone.

    ``{phone}`` and ``{text}`` in ``url`` and ``body_template`` are replaced, escaped for where
    they stand: URL-quoted in the URL, JSON-escaped in a JSON body, form-quoted in a form body.
    """

    url: SecretStr = Field(description="gateway URL; may hold {phone} and {text}")
    method: Literal["POST", "PUT", "GET"] = Field(default="POST", description="HTTP method")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="e.g. Authorization: Bearer ${SMS_TOKEN}"
    )
    body_format: Literal["json", "form", "text"] = Field(
        default="json", description="how placeholders are escaped and the Content-Type"
    )
    body_template: str = Field(
        default='{"to": "{phone}", "text": "{text}"}',
        description="request body with {phone} and {text}; ignored for GET",
    )
    phones: tuple[str, ...] = Field(default=(), description="numbers that get every alert")
    directory: dict[str, str] = Field(
        default_factory=dict, description="person name (as in the site file) → mobile number"
    )
    site_contacts: bool = Field(
        default=True, description="also text routed people at the phone the site file gives"
    )
    prefix: str = Field(
        default="", description="e.g. a signature 【安居】 if the gateway wants one"
    )
    success_field: str | None = Field(
        default=None, description="dotted path in the JSON answer that tells success, e.g. code"
    )
    success_values: tuple[str, ...] = Field(
        default=("0",), description="values of success_field that mean sent (compared as text)"
    )

    @model_validator(mode="after")
    def _has_numbers(self) -> Self:
        if not self.phones and not self.directory and not self.site_contacts:
            msg = "give `phones` or `directory` (or both), or keep `site_contacts`"
            raise ValueError(msg)
        return self


class MqttChannelSettings(ChannelBase):
    """Publishes compact JSON for local sirens and displays."""

    host: str = Field(default="127.0.0.1", description="broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(default=None, description="MQTT user")
    password: SecretStr | None = Field(default=None, description="use ${ENV} placeholders")
    client_id: str = Field(default="anju-hub-alerts", description="MQTT client id")
    tls_ca_file: str | None = Field(default=None, description="CA bundle; enables TLS")
    topic: str = Field(
        default="anju/v1/{site}/alerts/{severity}/{rule}/{device}",
        description="topic template; placeholders: " + ", ".join(sorted(TOPIC_PLACEHOLDERS)),
    )
    retain: bool = Field(
        default=False,
        description="retain firing messages and clear them on resolve (needs a per-alert topic)",
    )
    timeout_s: Seconds = Field(default=5.0, description="connect and publish")

    @model_validator(mode="after")
    def _topic_ok(self) -> Self:
        used = set(_PLACEHOLDER.findall(self.topic))
        unknown = used - TOPIC_PLACEHOLDERS
        if unknown:
            msg = f"unknown placeholders in topic: {', '.join(sorted(unknown))}"
            raise ValueError(msg)
        if any(c in self.topic for c in "+#"):
            msg = "topic may not hold MQTT wildcards"
            raise ValueError(msg)
        if self.retain and "{transition}" in self.topic:
            msg = "with retain, the topic must be the same for firing and resolved"
            raise ValueError(msg)
        if self.retain and not ({"alert_id"} <= used or {"rule", "device"} <= used):
            # One active alert per (rule, subject): a shared topic would let one resolve clear
            # another alert's retained message.
            msg = "with retain, the topic must name {rule} and {device}, or {alert_id}"
            raise ValueError(msg)
        return self


class GrafanaAnnotationSettings(ChannelBase):
    """Marks every firing period as a region annotation in Grafana."""

    url: str = Field(description="Grafana base URL, e.g. http://127.0.0.1:3000")
    token: SecretStr | None = Field(
        default=None, description="service-account token (Annotation writer); ${GRAFANA_TOKEN}"
    )
    username: str | None = Field(default=None, description="basic auth instead of a token")
    password: SecretStr | None = Field(default=None, description="basic auth password")
    dashboard_uid: str | None = Field(
        default=None, description="pin to a dashboard; absent = an organisation annotation"
    )
    panel_id: int | None = Field(default=None, description="pin to a panel of that dashboard")
    tags: tuple[str, ...] = Field(default=("anju",), description="added to every annotation")
    timeout_s: Seconds = Field(default=5.0, description="per request")

    @model_validator(mode="after")
    def _auth_ok(self) -> Self:
        if self.token is not None and self.username is not None:
            msg = "give `token` or `username`/`password`, not both"
            raise ValueError(msg)
        if (self.username is None) != (self.password is None):
            msg = "`username` and `password` go together"
            raise ValueError(msg)
        if self.panel_id is not None and self.dashboard_uid is None:
            msg = "`panel_id` needs `dashboard_uid`"
            raise ValueError(msg)
        return self


class ChannelSettings(_Frozen):
    """Every configured channel, by kind (each kind may be configured several times)."""

    wecom: tuple[WeComRobotSettings, ...] = Field(default=(), description="WeCom group robots")
    dingtalk: tuple[DingTalkRobotSettings, ...] = Field(
        default=(), description="DingTalk group robots"
    )
    feishu: tuple[FeishuRobotSettings, ...] = Field(default=(), description="Feishu robots")
    email: tuple[EmailSettings, ...] = Field(default=(), description="SMTP e-mail")
    sms: tuple[SmsGatewaySettings, ...] = Field(default=(), description="HTTP SMS gateways")
    mqtt: tuple[MqttChannelSettings, ...] = Field(default=(), description="MQTT publishers")
    grafana: tuple[GrafanaAnnotationSettings, ...] = Field(
        default=(), description="Grafana annotations"
    )
