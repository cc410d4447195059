"""E-mail over SMTP (stdlib :mod:`smtplib`, run in a worker thread).

One message per notification to every address of ``to`` plus the routed recipients found in
``directory``.  Firing and resolve of one alert carry related Message-IDs, so mail clients thread
them together.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import smtplib
import ssl
from email.message import EmailMessage

from hub.channels.settings import EmailSettings
from hub.channels.text import person_names, render, wanted
from hub.notifiers import Notification, NotifyError

logger = logging.getLogger(__name__)


class EmailNotifier:
    """Sends a plain-text e-mail per notification."""

    def __init__(self, settings: EmailSettings) -> None:
        self.name = f"email:{settings.name}"
        self._settings = settings
        self._domain = settings.sender.rpartition("@")[2] or "anju.local"

    def addresses(self, notification: Notification) -> list[str]:
        """``to`` plus the addresses of routed recipients, without duplicates.

        A routed person's address is the channel's ``directory`` entry, else (with
        ``site_contacts``) the e-mail the site file gives them.
        """
        found = list(self._settings.to)
        own = (
            {c.name: c.email for c in notification.contacts} if self._settings.site_contacts else {}
        )
        for person in person_names(notification):
            # The channel's directory wins over the site file: it may hold a work address.
            address = self._settings.directory.get(person) or own.get(person)
            if address is not None and address not in found:
                found.append(address)
        return found

    def message(self, notification: Notification, addresses: list[str]) -> EmailMessage:
        """The e-mail for ``notification``."""
        text = render(notification, self._settings.timezone)
        alert = notification.alert
        msg = EmailMessage()
        msg["Subject"] = f"{self._settings.subject_prefix} {text.title}".strip()
        msg["From"] = self._settings.sender
        msg["To"] = ", ".join(addresses)
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = f"<{alert.id}.{notification.transition}@{self._domain}>"
        if text.resolved:
            first = f"<{alert.id}.firing@{self._domain}>"
            msg["In-Reply-To"] = first
            msg["References"] = first
        msg["X-Anju-Alert"] = alert.id
        msg["X-Anju-Severity"] = alert.severity
        msg.set_content(text.plain() + "\n")
        return msg

    async def send(self, notification: Notification) -> None:
        """Deliver one notification or raise :class:`NotifyError`."""
        if not wanted(self._settings, notification):
            return
        addresses = self.addresses(notification)
        if not addresses:
            logger.info("%s: nobody to mail for alert %s", self.name, notification.alert.id)
            return
        msg = self.message(notification, addresses)
        try:
            refused = await asyncio.to_thread(self._deliver, msg, addresses)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if refused:
            # Some addresses were accepted: a retry would mail those twice, so only log.
            logger.warning("%s: refused recipients %s", self.name, ", ".join(sorted(refused)))

    def _deliver(self, msg: EmailMessage, addresses: list[str]) -> dict[str, tuple[int, bytes]]:
        s = self._settings
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
        with smtp:
            if s.security == "starttls":
                smtp.starttls(context=context)
            if s.username is not None:
                password = "" if s.password is None else s.password.get_secret_value()
                smtp.login(s.username, password)
            return smtp.send_message(msg, to_addrs=addresses)

    async def aclose(self) -> None:
        """Nothing to release: every send opens its own connection."""
