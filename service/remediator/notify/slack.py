"""Slack through an incoming webhook: the team channel sees what broke and what was tried.

An incoming webhook can only post: it cannot update or thread onto an earlier message (that
needs a bot token and chat.update). So a resolve is a new message, "Resolved: ...", and the
webhook URL, which is itself the secret, comes from the environment and is never shown.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from remediator.notify.base import (
    Message,
    diagnostics_text,
    headline,
    incident_lines,
    key_facts,
)
from remediator.notify.channel_support import (
    TIMEOUT,
    ChannelNotConfigured,
    from_env,
    is_web_url,
    post_json,
    truncate,
)
from remediator.policy.schema import SlackChannel

# Block Kit's limits: https://api.slack.com/reference/block-kit/blocks (blocks, header,
# section, context) and https://api.slack.com/reference/block-kit/composition-objects#text.
BLOCKS_LIMIT = 50  # blocks in a message
HEADER_LIMIT = 150  # a header block's plain_text
SECTION_LIMIT = 3000  # a section's text
TEXT_OBJECT_LIMIT = 3000  # any text object: a context element's too
FIELD_LIMIT = 2000  # each of a section's fields
FIELDS_LIMIT = 10  # a section's fields (this message has 8 at most)
CONTEXT_ELEMENTS = 10  # a context block's elements
# The message's `text`: cut at 40,000, and 4,000 at most recommended
# (https://api.slack.com/methods/chat.postMessage#truncating).
MESSAGE_TEXT_LIMIT = 4000
# The whole payload is bounded by these: a header, 3 sections (4 fields), 10 links and the
# text, about 50,000 characters at most.
_STEP_MESSAGE = 300  # one step's message, before the section limit applies to them all
_LINK_TEXT = 200
_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")


class Slack:
    """Posts Block Kit messages to the channel an incoming webhook is bound to."""

    name = "slack"

    def __init__(
        self, config: SlackChannel, session: aiohttp.ClientSession, *, timeout: float = TIMEOUT
    ) -> None:
        self._config = config
        self._url = from_env(config.webhook_url_env, self.name)
        if urlsplit(self._url).scheme not in ("https", "http"):
            raise ChannelNotConfigured(
                f"{self.name}: environment variable {config.webhook_url_env} is not a URL"
            )
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def describe(self) -> dict[str, Any]:
        return {
            "channel": self.name,
            "host": urlsplit(self._url).hostname,
            "webhook_url_env": self._config.webhook_url_env,
        }

    def body(self, message: Message) -> dict[str, Any]:
        """The webhook's JSON: Block Kit blocks, and `text` for notifications and old clients."""
        resolved = "Resolved: " if message.action == "resolve" else ""
        title = f"{resolved}{message.level} {message.alertname}"
        text = "\n".join(
            [message.summary, *(f"{name}: {said}" for name, said in incident_lines(message))]
        )
        facts = [(name, value) for name, value in key_facts(message) if name != "Status"]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": _plain(truncate(" ".join(title.split()), HEADER_LIMIT))},
            {
                "type": "section",
                "text": _mrkdwn(fit(text, SECTION_LIMIT)),
                "fields": [
                    _mrkdwn(f"*{name}*\n{fit(value or '—', FIELD_LIMIT - len(name) - 3)}")
                    for name, value in facts[:FIELDS_LIMIT]
                ],
            },
        ]
        if message.steps:
            blocks.append({"type": "section", "text": _mrkdwn(steps_text(message))})
        if message.diagnostics:
            text = fit(diagnostics_text(message), SECTION_LIMIT - 30)
            blocks.append({"type": "section", "text": _mrkdwn(f"*Diagnostics*\n```{text}```")})
        if message.links:
            links = list(message.links.items())[:CONTEXT_ELEMENTS]
            blocks.append(
                {"type": "context", "elements": [_mrkdwn(link(href, text)) for text, href in links]}
            )
        fallback = f"{resolved}[{message.level}] {headline(message)}"
        return {"text": fit(fallback, MESSAGE_TEXT_LIMIT), "blocks": blocks[:BLOCKS_LIMIT]}

    async def send(self, message: Message) -> None:
        await post_json(
            self._session,
            self._url,
            self.body(message),
            what=f"Slack {message.action} {message.dedup_key}",
            ok=(200,),
            limit=self._timeout,
            secret_url=True,
        )


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: otherwise a label value could mention <!channel> or fake links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """Escaped, and cut to `limit` characters without leaving half an entity."""
    return truncate(escape(text), limit, tidy=lambda kept: _PARTIAL_ENTITY.sub("", kept))


def steps_text(message: Message) -> str:
    """`• action: outcome — message` per step, as many as the section holds."""
    lines = [
        f"• {fit(step.action, 100)}: {fit(step.outcome, 50)} — {fit(step.message, _STEP_MESSAGE)}"
        for step in message.steps
    ]
    text = "*Steps*"
    for shown, line in enumerate(lines):
        rest = len(lines) - shown - 1
        more = f"\n… and {rest} more" if rest else ""
        if len(text) + 1 + len(line) + len(more) > SECTION_LIMIT:
            return f"{text}\n… and {len(lines) - shown} more"
        text = f"{text}\n{line}"
    return text


def link(href: str, text: str) -> str:
    """`<url|text>` for a well-formed URL (nothing in it can end the link early) that fits in
    a text object; else the text, saying why there is no link."""
    label = fit(text, _LINK_TEXT)
    if not is_web_url(href):
        return f"{label}: not a well-formed URL, left out"
    linked = f"<{escape(href)}|{label}>"
    if len(linked) > TEXT_OBJECT_LIMIT:
        return f"{label}: the link is {len(href):,} characters, too long for a Slack message"
    return linked


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}
