"""Slack through an incoming webhook: the team channel sees what broke and what was tried.

An incoming webhook can only post: it cannot update or thread onto an earlier message (that
needs a bot token and chat.update). So a resolve is a new message, "Resolved: ...", and the
webhook URL, which is itself the secret, comes from the environment and is never shown.

A message whose run waits for approval says what waits, and carries Approve and Reject
buttons: Slack posts a click to the app's Interactivity Request URL (http/slack_interactions),
which answers through the click's own response_url, the one way to update this message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from remediator.notify.base import (
    ApprovalAsk,
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
# The buttons: https://api.slack.com/reference/block-kit/block-elements#button (value 2,000;
# text 75 and action_id 255, which ours, fixed and short, keep) and
# https://api.slack.com/reference/block-kit/composition-objects#confirm (text 300; title 100
# and its buttons 30, ours fixed and short).
BUTTON_VALUE_LIMIT = 2000
CONFIRM_TEXT_LIMIT = 300
# The message's `text`: cut at 40,000, and 4,000 at most recommended
# (https://api.slack.com/methods/chat.postMessage#truncating).
MESSAGE_TEXT_LIMIT = 4000
# The whole payload is bounded by these: a header, 3 sections (4 fields), 10 links and the
# text, about 50,000 characters at most.
_STEP_MESSAGE = 300  # one step's message, before the section limit applies to them all
_LINK_TEXT = 200
_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,20}")  # a Slack user id: mentioned, so they are told

# What a click names: the verdict by its action_id, the request by its value.
APPROVE_ACTION = "remediator_approve"
REJECT_ACTION = "remediator_reject"
# The approval's blocks, by block_id: an answer's update replaces these and keeps the rest.
APPROVAL_BLOCK = "remediator_approval"
ACTIONS_BLOCK = "remediator_approval_actions"
STATUS_BLOCK = "remediator_approval_status"
_CHANGE_TEXT = 1500  # of the approval section's 3,000: the change, then the approvers
_APPROVERS_TEXT = 800


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
        if message.approval is not None:
            blocks += approval_blocks(message.approval)
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


def approval_blocks(ask: ApprovalAsk) -> list[dict[str, Any]]:
    """What waits, who may approve it and until when, and the buttons to answer with (left out
    for an id too long for a button's value: the command line still answers)."""
    section = {"type": "section", "block_id": APPROVAL_BLOCK, "text": _mrkdwn(approval_text(ask))}
    if len(ask.id) > BUTTON_VALUE_LIMIT:
        return [section]
    return [section, approval_buttons(ask.id, confirm=f"{ask.step} ({ask.action}): {ask.change}")]


def approval_text(ask: ApprovalAsk) -> str:
    then = "approved" if ask.on_timeout == "approve" else "rejected"
    return "\n".join(
        [
            f"*Waiting for approval:* {fit(ask.step, 100)} ({fit(ask.action, 100)})"
            f" — {fit(ask.change, _CHANGE_TEXT) or 'no description of the change'}",
            f"*Approvers:* {people(ask.approvers, _APPROVERS_TEXT)}"
            f" — {ask.min_approvals} of them must approve",
            f"*Expires:* {fit(ask.expires_at, 50)}: then it is {then}",
            f"*Or:* `remediator approvals approve {fit(ask.id, 100)}`",
        ]
    )


def approval_buttons(approval_id: str, *, confirm: str) -> dict[str, Any]:
    """Approve (asking to confirm first: the change is risky) and Reject, each naming the
    request by its value."""
    approve = {
        "type": "button",
        "action_id": APPROVE_ACTION,
        "text": _plain("Approve"),
        "style": "primary",
        "value": approval_id,
        "confirm": {
            "title": _plain("Approve this change?"),
            "text": _plain(truncate(confirm, CONFIRM_TEXT_LIMIT)),
            "confirm": _plain("Approve"),
            "deny": _plain("Cancel"),
        },
    }
    reject = {
        "type": "button",
        "action_id": REJECT_ACTION,
        "text": _plain("Reject"),
        "style": "danger",
        "value": approval_id,
    }
    return {"type": "actions", "block_id": ACTIONS_BLOCK, "elements": [approve, reject]}


def people(names: Iterable[str], limit: int) -> str:
    """Each a mention when a Slack user id (so they are notified), else escaped; as many as
    `limit` characters hold, then how many more."""
    shown = [mention(name) for name in names]
    text = ""
    for count, name in enumerate(shown):
        more = f", … and {len(shown) - count} more"
        joined = f"{text}, {name}" if text else name
        if len(joined) + len(more) > limit:
            return f"{text}{more}" if text else more.removeprefix(", ")
        text = joined
    return text or "none"


def mention(who: str) -> str:
    return f"<@{who}>" if _SLACK_USER.fullmatch(who) else fit(who, 200)


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
