"""An SMTP server that keeps what it is given (aiosmtpd on loopback), and the email channel
that sends to it."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from remediator.notify.email import Email
from remediator.policy.schema import EmailChannel


class Mailbox:
    """An aiosmtpd handler that keeps what it is given, and refuses some recipients."""

    def __init__(self) -> None:
        self.received: list[tuple[Envelope, bool]] = []
        self.logins: list[LoginPassword] = []

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 no such user"
        if address.startswith("full@"):
            return "452 4.2.2 mailbox full, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append((envelope, session.authenticated is True))
        return "250 Message accepted"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append(data)
        ok = data == LoginPassword(b"remediator", b"pa55word")
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 235/535

    def mail(self, index: int = 0) -> tuple[Envelope, EmailMessage]:
        envelope, _ = self.received[index]
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return envelope, parsed


def email_config(port: int, **extra: Any) -> EmailChannel:
    return EmailChannel.model_validate(
        {
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "from": "Remediator <remediator@example.com>",
            "to": ["oncall@example.com", "sre@example.com"],
            **extra,
        }
    )


def plain_email(port: int, **extra: Any) -> Email:
    return Email(email_config(port, **extra), start_tls=False, local_hostname="remediator.test")
