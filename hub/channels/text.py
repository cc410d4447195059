"""What a notification says, in Chinese-friendly text: what, where, how bad, what to do.

One :class:`AlertText` per notification; each channel renders it (plain text, markdown, a short
SMS, an e-mail subject).
"""

# Full-width Chinese punctuation (colon, comma, brackets) is meant, not an ASCII look-alike.
# ruff: noqa: RUF001

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

from hub.channels.settings import ChannelBase
from hub.notifiers import Notification

SEVERITY_CN = {"critical": "紧急", "major": "严重", "minor": "一般", "warning": "提示"}
SEVERITY_ICON = {"critical": "🔴", "major": "🟠", "minor": "🟡", "warning": "🔵"}
# Markdown colours WeCom understands: info (green), comment (grey), warning (orange-red).
WECOM_COLOUR = {"critical": "warning", "major": "warning", "minor": "comment", "warning": "comment"}

_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")  # two septets each
SMS_GSM_LIMIT = 160
SMS_UCS2_LIMIT = 70


@dataclasses.dataclass(frozen=True, slots=True)
class AlertText:
    """The facts of one notification, ready to render."""

    resolved: bool
    severity: str
    severity_cn: str
    summary: str
    place: str
    grid: str
    message: str
    rule: str
    device: str
    fired_at: str
    resolved_at: str
    duration: str
    recipients: str
    note: str = ""

    @property
    def status_cn(self) -> str:
        """告警 or 已恢复."""
        return "已恢复" if self.resolved else "告警"

    @property
    def title(self) -> str:
        """One line: status, severity, place and summary."""
        where = f"{self.place}：" if self.place else ""
        return f"【{self.status_cn}·{self.severity_cn}】{where}{self.summary}"

    def fields(self) -> list[tuple[str, str]]:
        """Labelled lines in reading order (empty values left out)."""
        rows = [
            ("地点", self.place),
            ("网格", self.grid),
            ("级别", f"{self.severity_cn} ({self.severity})"),
            ("处置", self.message),
            ("发生", self.fired_at),
        ]
        if self.resolved:
            rows.append(("恢复", f"{self.resolved_at}（持续 {self.duration}）"))
        rows += [("说明", self.note)]
        rows += [("设备", self.device), ("规则", self.rule), ("通知", self.recipients)]
        return [(k, v) for k, v in rows if v]

    def plain(self) -> str:
        """Plain text: the title, then one labelled line per fact."""
        return "\n".join([self.title, *(f"{k}：{v}" for k, v in self.fields())])

    def markdown(self, *, wecom: bool = False) -> str:
        """Markdown for the group robots (WeCom gets its coloured severity)."""
        icon = "✅" if self.resolved else SEVERITY_ICON.get(self.severity, "⚪")
        lines = [f"### {icon} {self.title}"]
        for key, value in self.fields():
            shown = value
            if wecom and key == "级别":
                colour = "info" if self.resolved else WECOM_COLOUR.get(self.severity, "comment")
                shown = f'<font color="{colour}">{value}</font>'
            elif key == "级别":
                shown = f"**{value}**"
            lines.append(f"> **{key}**：{shown}")
        # Two spaces before the newline keep DingTalk and Feishu from joining quoted lines.
        return "  \n".join(lines)

    def short(self, prefix: str = "") -> str:
        """One SMS: ≤ 70 characters when any is outside GSM 03.38, else ≤ 160 septets."""
        if self.resolved:
            body = f"{prefix}【已恢复】{self.place} {self.summary}，{self.resolved_at}"
        else:
            body = f"{prefix}【{self.severity_cn}】{self.place} {self.summary}。{self.message}"
        return fit_sms(" ".join(body.split()))


def fit_sms(text: str) -> str:
    """Cut ``text`` to one SMS segment, ending with an ellipsis when cut."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in text):
        if _septets(text) <= SMS_GSM_LIMIT:
            return text
        out = ""
        for char in text:
            if _septets(out + char) > SMS_GSM_LIMIT - 3:
                break
            out += char
        return out.rstrip() + "..."
    if len(text) <= SMS_UCS2_LIMIT:
        return text
    return text[: SMS_UCS2_LIMIT - 1].rstrip() + "…"


def _septets(text: str) -> int:
    return sum(2 if c in _GSM_EXTENDED else 1 for c in text)


def _when(ts_ms: int | None, zone: zoneinfo.ZoneInfo) -> str:
    if ts_ms is None:
        return ""
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=zone).strftime("%Y-%m-%d %H:%M:%S")


def _duration(start_ms: int | None, end_ms: int | None) -> str:
    if start_ms is None or end_ms is None:
        return ""
    seconds = max(0, (end_ms - start_ms) // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}小时{minutes}分"
    if minutes:
        return f"{minutes}分{secs}秒"
    return f"{secs}秒"


def render(notification: Notification, timezone: str = "Asia/Shanghai") -> AlertText:
    """The facts of ``notification`` with times in ``timezone``."""
    alert = notification.alert
    zone = zoneinfo.ZoneInfo(timezone)
    fired = alert.firing_ms or alert.started_ms
    return AlertText(
        resolved=notification.transition == "resolved",
        severity=alert.severity,
        severity_cn=SEVERITY_CN.get(alert.severity, alert.severity),
        summary=alert.summary,
        place=alert.labels.get("place", ""),
        grid=alert.labels.get("grid_name") or alert.labels.get("grid", ""),
        message=alert.message,
        rule=alert.rule_id,
        device=alert.device,
        fired_at=_when(fired, zone),
        resolved_at=_when(alert.resolved_ms, zone),
        duration=_duration(fired, alert.resolved_ms),
        recipients="、".join(notification.recipients),
        note=_note(notification),
    )


def _note(notification: Notification) -> str:
    parts = [notification.note] if notification.note else []
    if notification.others:
        places = "、".join(a.labels.get("place") or a.device for a in notification.others[:5])
        more = "等" if len(notification.others) > 5 else ""  # noqa: PLR2004
        parts.append(f"同组另有{len(notification.others)}条：{places}{more}")
    return "；".join(parts)


def wanted(settings: ChannelBase, notification: Notification) -> bool:
    """Whether this channel should send this notification at all."""
    if notification.transition == "resolved" and not settings.send_resolved:
        return False
    return notification.alert.severity in settings.severities


def person_names(notification: Notification) -> list[str]:
    """Recipients as plain names: ``"Wang Fang (grid_worker)"`` → ``"Wang Fang"``."""
    return [r.rsplit(" (", 1)[0].strip() for r in notification.recipients]
