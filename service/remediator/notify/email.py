"""Email over SMTP: the channel for whoever is not on call, and the record that stays in inboxes.

Every message is plain text and HTML with the same content. Its Message-ID comes from the
outbox entry, so a re-sent message is recognisably the same one; In-Reply-To and References
name the incident (its dedup key), so mail clients thread the trigger, its updates and the
resolve together.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from collections.abc import Iterable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any

import aiosmtplib
import structlog

from remediator.notify.base import (
    Message,
    PermanentFailure,
    TransientFailure,
    diagnostics_text,
    headline,
    incident_lines,
    key_facts,
)
from remediator.notify.channel_support import (
    TIMEOUT,
    ChannelNotConfigured,
    fit_message,
    from_env,
    is_web_url,
    truncate,
)
from remediator.notify.mail_headers import set_header
from remediator.policy.schema import EmailChannel

log = structlog.get_logger(__name__)

SUBJECT_LIMIT = 200  # characters: what a mail client shows of it, and then some
# Bytes of a whole email as sent: Remediator's own cap, well within what servers take (Postfix's
# message_size_limit defaults to 10,240,000: https://www.postfix.org/postconf.5.html). Header
# lines: mail_headers.py.
MESSAGE_LIMIT = 1_000_000
# What keeps it there: the UTF-8 of its text and HTML parts, which their transfer encoding
# (base64, or quoted-printable when shorter) grows by a third at most, and room for the headers.
CONTENT_LIMIT = MESSAGE_LIMIT * 3 // 4 - 10_000
NOT_LINKED = " (not a well-formed URL: not linked)"
_ID_SAFE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class Email:
    """Sends to the configured recipients through one SMTP server.

    TLS follows the port unless `start_tls` says otherwise: STARTTLS on 587, TLS from the first
    byte on 465, none elsewhere (a relay on 25 inside the cluster, a test server). It logs in
    when `username_env` and `password_env` are configured.
    """

    name = "email"

    def __init__(
        self,
        config: EmailChannel,
        *,
        start_tls: bool | None = None,
        timeout: float = TIMEOUT,
        local_hostname: str | None = None,
    ) -> None:
        self._config = config
        self._username, self._password = _credentials(config)
        self._use_tls = start_tls is None and config.smtp_port == 465
        self._start_tls = config.smtp_port == 587 if start_tls is None else start_tls
        self._timeout = timeout
        self._local_hostname = local_hostname
        self._envelope_from = parseaddr(config.sender)[1] or config.sender
        self._domain = self._envelope_from.rpartition("@")[2] or "remediator.invalid"

    def describe(self) -> dict[str, Any]:
        tls = "tls" if self._use_tls else "starttls" if self._start_tls else "none"
        return {
            "channel": self.name,
            "smtp_host": self._config.smtp_host,
            "smtp_port": self._config.smtp_port,
            "tls": tls,
            "from": self._config.sender,
            "to": list(self._config.to),
            "login": self._config.username_env,
        }

    def compose(self, message: Message) -> EmailMessage:
        """The email, within MESSAGE_LIMIT: the largest values cut first, saying so."""
        return self._compose(fit_message(message, content_size, CONTENT_LIMIT))

    def _compose(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        set_header(mail, "Subject", subject(message))
        mail["From"] = self._config.sender
        mail["To"] = ", ".join(self._config.to)
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = self.message_id(message)
        mail["In-Reply-To"] = self.thread_id(message)
        mail["References"] = self.thread_id(message)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        mail.set_content(plain_text(message))
        mail.add_alternative(html_text(message), subtype="html")
        return mail

    def message_id(self, message: Message) -> str:
        if not message.id:  # not from the outbox: a fresh id rather than one shared by all
            return make_msgid("notify", domain=self._domain)
        return f"<{_id_part(message.id)}.notify@{self._domain}>"

    def thread_id(self, message: Message) -> str:
        digest = hashlib.sha256(message.dedup_key.encode()).hexdigest()[:32]
        return f"<{digest}.incident@{self._domain}>"

    def compose_digest(self, messages: list[Message]) -> EmailMessage:
        """One email for a day's messages: each incident once, at its latest state."""
        latest: dict[str, Message] = {}
        for message in messages:
            latest.pop(message.dedup_key, None)
            latest[message.dedup_key] = message
        share = CONTENT_LIMIT // len(latest)
        incidents = [fit_message(m, content_size, share) for m in latest.values()]
        names = sorted({m.alertname for m in incidents})
        mail = EmailMessage()
        line = f"[{incidents[0].level} digest] {len(incidents)} incidents: {', '.join(names)}"
        set_header(mail, "Subject", truncate(" ".join(line.split()), SUBJECT_LIMIT))
        mail["From"] = self._config.sender
        mail["To"] = ", ".join(self._config.to)
        mail["Date"] = formatdate(usegmt=True)
        ids = "".join(sorted(m.id for m in messages))
        mail["Message-ID"] = f"<{_id_part(ids)}.digest@{self._domain}>"
        mail["Auto-Submitted"] = "auto-generated"
        rule = "\n" + "-" * 72 + "\n\n"
        mail.set_content(rule.join(plain_text(m) for m in incidents))
        bodies = [_html_body(m) for m in incidents]
        head = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>'
        mail.add_alternative(
            "\n".join([head, "\n<hr>\n".join(bodies), "</body></html>"]) + "\n", subtype="html"
        )
        return mail

    async def send(self, message: Message) -> None:
        await self._deliver(self.compose(message), f"email {message.action} {message.dedup_key}")

    async def send_digest(self, messages: list[Message]) -> None:
        await self._deliver(self.compose_digest(messages), f"email digest of {len(messages)}")

    async def _deliver(self, mail: EmailMessage, what: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                refused, _ = await aiosmtplib.send(
                    mail,
                    sender=self._envelope_from,
                    recipients=self._config.to,
                    hostname=self._config.smtp_host,
                    port=self._config.smtp_port,
                    username=self._username,
                    password=self._password,
                    use_tls=self._use_tls,
                    start_tls=self._start_tls,
                    timeout=self._timeout,
                    local_hostname=self._local_hostname,
                )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise _refused(what, exc.recipients) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(f"{what}: {exc.code} {exc.message}", [exc.code]) from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected) as exc:
            raise TransientFailure(f"{what}: {exc.message}") from exc
        except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
            raise TransientFailure(f"{what}: no answer within {self._timeout:g}s") from exc
        except aiosmtplib.SMTPException as exc:
            # what the server does not support (STARTTLS, AUTH, SMTPUTF8): only a change of
            # configuration helps
            raise PermanentFailure(f"{what}: {exc.message}") from exc
        except OSError as exc:
            raise TransientFailure(f"{what}: {exc}") from exc
        if refused:
            # delivered to the others: sending again would repeat it to them
            log.warning(
                "email refused for some recipients",
                what=what,
                refused={address: str(answer) for address, answer in refused.items()},
            )


def subject(message: Message) -> str:
    tag = "resolved" if message.action == "resolve" else message.level
    return truncate(" ".join(f"[{tag}] {headline(message)}".split()), SUBJECT_LIMIT)


def plain_text(message: Message) -> str:
    lines = [subject(message), "", message.summary]
    lines.extend(f"{title}: {text}" for title, text in incident_lines(message))
    lines.append("")
    lines.extend(f"{name}: {value}" for name, value in key_facts(message))
    if message.steps:
        lines += ["", "Steps:"]
        lines.extend(f"  - {s.action}: {s.outcome} — {s.message}" for s in message.steps)
    for title, pairs in _tables(message):
        lines += ["", f"{title}:"]
        lines.extend(f"  {key}: {value}{_link_note(title, value)}" for key, value in pairs)
    if message.diagnostics:
        lines += ["", "Diagnostics:", diagnostics_text(message)]
    return "\n".join(lines) + "\n"


def html_text(message: Message) -> str:
    """The same content as `plain_text`; every value escaped, since labels are anyone's."""
    head = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>'
    return "\n".join([head, _html_body(message), "</body></html>"]) + "\n"


def _html_body(message: Message) -> str:
    e = html.escape
    parts = [f"<h2>{e(subject(message))}</h2>", f"<p>{e(message.summary)}</p>"]
    parts.extend(f"<p>{e(title)}: {e(text)}</p>" for title, text in incident_lines(message))
    parts.append(_html_table(key_facts(message)))
    if message.steps:
        items = "".join(
            f"<li><b>{e(s.action)}</b>: {e(s.outcome)} — {e(s.message)}</li>" for s in message.steps
        )
        parts.append(f"<h3>Steps</h3><ul>{items}</ul>")
    for title, pairs in _tables(message):
        if title == "Links":
            items = "".join(f"<li>{_html_link(text, href)}</li>" for text, href in pairs)
            parts.append(f"<h3>Links</h3><ul>{items}</ul>")
        else:
            parts.append(f"<h3>{e(title)}</h3>{_html_table(pairs)}")
    if message.diagnostics:
        parts.append(f"<h3>Diagnostics</h3><pre>{e(diagnostics_text(message))}</pre>")
    return "\n".join(parts)


def _tables(message: Message) -> list[tuple[str, list[tuple[str, str]]]]:
    tables = [
        ("Labels", sorted(message.labels.items())),
        ("Annotations", sorted(message.annotations.items())),
        ("Links", list(message.links.items())),
    ]
    return [(title, pairs) for title, pairs in tables if pairs]


def _html_table(pairs: Iterable[tuple[str, str]]) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><th align="left">{e(key)}</th><td>{e(value)}</td></tr>' for key, value in pairs
    )
    return f"<table>{rows}</table>"


def _html_link(text: str, href: str) -> str:
    """A link only to a well-formed http(s) URL: a javascript: or data: URL from an annotation,
    or one holding what a URL may not, stays text."""
    if is_web_url(href):
        return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'
    return f"{html.escape(text)}: {html.escape(href)}{_link_note('Links', href)}"


def _link_note(title: str, value: str) -> str:
    return NOT_LINKED if title == "Links" and not is_web_url(value) else ""


def content_size(message: Message) -> int:
    """Bytes of the email's text and HTML parts, before their transfer encoding."""
    return len(plain_text(message).encode()) + len(html_text(message).encode())


def _id_part(value: str) -> str:
    if _ID_SAFE.fullmatch(value):
        return value
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _credentials(config: EmailChannel) -> tuple[str | None, str | None]:
    if config.username_env is None and config.password_env is None:
        return None, None
    if config.username_env is None or config.password_env is None:
        raise ChannelNotConfigured("email: set both username_env and password_env, or neither")
    return from_env(config.username_env, "email"), from_env(config.password_env, "email")


def _refused(what: str, recipients: list[aiosmtplib.SMTPRecipientRefused]) -> Exception:
    text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in recipients)
    return _by_code(f"{what}: every recipient refused: {text}", [r.code for r in recipients])


def _by_code(text: str, codes: list[int]) -> Exception:
    """4xx is the server's "not now"; 5xx (or anything else) is its "no"."""
    if all(400 <= code < 500 for code in codes):
        return TransientFailure(text)
    return PermanentFailure(text)
