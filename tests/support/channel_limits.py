"""Each channel's documented limits, checked on what was sent: a list of the broken ones, in
words, so a failing test says which limit and by how much.

Written apart from the channels' own code (its own URL rule, its own counting), so that a
channel cannot pass by agreeing with itself.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.header import decode_header, make_header
from typing import Any
from urllib.parse import urlsplit

# Slack Block Kit: https://api.slack.com/reference/block-kit/blocks (50 blocks a message;
# header text 150; section text 3,000, at most 10 fields of 2,000 each; context at most 10
# elements) and https://api.slack.com/reference/block-kit/composition-objects#text (a text
# object: 3,000). The message's `text`: https://api.slack.com/methods/chat.postMessage (cut at
# 40,000; 4,000 recommended).
SLACK_BLOCKS = 50
SLACK_HEADER = 150
SLACK_TEXT_OBJECT = 3000
SLACK_FIELDS, SLACK_FIELD = 10, 2000
SLACK_CONTEXT_ELEMENTS = 10
SLACK_MESSAGE_TEXT = 4000
# Interactive parts: https://api.slack.com/reference/block-kit/blocks#actions (25 elements, a
# block_id 255), https://api.slack.com/reference/block-kit/block-elements#button (text 75,
# action_id 255, value 2,000; style primary or danger) and
# https://api.slack.com/reference/block-kit/composition-objects#confirm (title 100, text 300,
# confirm and deny 30).
SLACK_ACTIONS_ELEMENTS, SLACK_BLOCK_ID = 25, 255
SLACK_BUTTON_TEXT, SLACK_ACTION_ID, SLACK_BUTTON_VALUE = 75, 255, 2000
SLACK_CONFIRM_TITLE, SLACK_CONFIRM_TEXT, SLACK_CONFIRM_BUTTON = 100, 300, 30

# PagerDuty Events API v2: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
# (the whole event at most 512 KB, payload.summary 1,024, dedup_key 255).
PAGERDUTY_EVENT = 512 * 1024
PAGERDUTY_SUMMARY = 1024
PAGERDUTY_DEDUP_KEY = 255

# Email: RFC 5322 section 2.1.1 (lines at most 78 characters, 998 at the very most), RFC 2047
# section 2 (an encoded-word at most 75 characters; a header line holding one at most 76).
LINE, ENCODED_LINE, ENCODED_WORD = 78, 76, 75
EMAIL_MESSAGE = 1_000_000  # Remediator's own cap on a whole email

ENCODED_WORD_PATTERN = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
# RFC 3986's characters: unreserved, reserved, and "%" (followed by two hex digits).
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MRKDWN_LINK = re.compile(r"<([^|<>]*)\|[^<>]*>")


def well_formed_url(href: str) -> bool:
    parts = urlsplit(href)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and _URL_CHARACTERS.fullmatch(href) is not None
        and _BAD_PERCENT.search(href) is None
    )


# Slack


def slack_problems(body: dict[str, Any]) -> list[str]:
    blocks = body["blocks"]
    problems = _over("blocks", len(blocks), SLACK_BLOCKS)
    problems += _over("the message's text", len(body["text"]), SLACK_MESSAGE_TEXT)
    for n, block in enumerate(blocks):
        problems += [f"block {n} ({block['type']}): {p}" for p in _block_problems(block)]
    for text in _texts(body):
        problems += _over("a text object", len(text), SLACK_TEXT_OBJECT)
        for url in _MRKDWN_LINK.findall(text):
            if not well_formed_url(url.replace("&amp;", "&")):
                problems.append(f"a link to {url[:80]!r}, not a well-formed URL")
    return problems


def _block_problems(block: dict[str, Any]) -> list[str]:
    problems = _over("block_id", len(block.get("block_id", "")), SLACK_BLOCK_ID)
    return problems + _kind_problems(block)


def _kind_problems(block: dict[str, Any]) -> list[str]:
    if block["type"] == "actions":
        problems = _over("actions elements", len(block["elements"]), SLACK_ACTIONS_ELEMENTS)
        for button in block["elements"]:
            problems += _button_problems(button)
        return problems
    if block["type"] == "header":
        return _over("header text", len(block["text"]["text"]), SLACK_HEADER) + (
            [] if block["text"]["type"] == "plain_text" else ["a header not plain_text"]
        )
    if block["type"] == "context":
        return _over("context elements", len(block["elements"]), SLACK_CONTEXT_ELEMENTS)
    fields = block.get("fields", [])
    problems = _over("fields", len(fields), SLACK_FIELDS)
    for field in fields:
        problems += _over("a field", len(field["text"]), SLACK_FIELD)
    return problems


def _button_problems(button: dict[str, Any]) -> list[str]:
    problems = [] if button["type"] == "button" else [f"an element of type {button['type']}"]
    problems += _over("a button's text", len(button["text"]["text"]), SLACK_BUTTON_TEXT)
    problems += _over("a button's action_id", len(button["action_id"]), SLACK_ACTION_ID)
    problems += _over("a button's value", len(button.get("value", "")), SLACK_BUTTON_VALUE)
    if button.get("style", "primary") not in ("primary", "danger"):
        problems.append(f"a button's style {button['style']!r}")
    confirm = button.get("confirm")
    if confirm:
        problems += _over("a confirm title", len(confirm["title"]["text"]), SLACK_CONFIRM_TITLE)
        problems += _over("a confirm text", len(confirm["text"]["text"]), SLACK_CONFIRM_TEXT)
        for name in ("confirm", "deny"):
            problems += _over(f"a confirm {name}", len(confirm[name]["text"]), SLACK_CONFIRM_BUTTON)
    return problems


def _texts(value: Any) -> Iterator[str]:
    """Every text object's text, however deep."""
    if isinstance(value, dict):
        if value.get("type") in ("mrkdwn", "plain_text"):
            yield value["text"]
        for inner in value.values():
            yield from _texts(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner)


def longest_slack_text(body: dict[str, Any]) -> int:
    return max(len(text) for text in _texts(body["blocks"]))


# PagerDuty


def pagerduty_problems(event: dict[str, Any], size: int) -> list[str]:
    problems = _over("the event, in bytes", size, PAGERDUTY_EVENT)
    problems += _over("dedup_key", len(event["dedup_key"]), PAGERDUTY_DEDUP_KEY)
    payload = event.get("payload", {})
    problems += _over("summary", len(payload.get("summary", "")), PAGERDUTY_SUMMARY)
    for name in ("source", "component", "group", "class"):
        problems += _over(name, len(payload.get(name, "")), PAGERDUTY_SUMMARY)
    for link in event.get("links", []):
        if not well_formed_url(link["href"]):
            problems.append(f"links[].href {link['href'][:80]!r} is not a well-formed URL")
    return problems


# Email


def header_lines(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return head.split("\r\n")


def raw_header(raw: bytes, name: str) -> list[str]:
    """The header's lines as sent: its first line and its continuation lines."""
    lines, found = header_lines(raw), []
    for line in lines:
        ours = line.lower().startswith(f"{name.lower()}:") or (found and line[:1] in (" ", "\t"))
        if ours:
            found.append(line)
        elif found:
            break
    return found


def email_problems(raw: bytes) -> list[str]:
    problems = _over("the email, in bytes", len(raw), EMAIL_MESSAGE)
    for line in header_lines(raw):
        encoded = ENCODED_WORD_PATTERN.findall(line)
        problems += _over(
            f"header line {line[:40]!r}", len(line), ENCODED_LINE if encoded else LINE
        )
        for word in encoded:
            problems += _over(f"encoded-word {word[:40]!r}", len(word), ENCODED_WORD)
    return problems


def decoded_subject(raw: bytes) -> str:
    """The Subject as a reader sees it, decoded from the lines sent."""
    lines = raw_header(raw, "Subject")
    unfolded = "".join(lines)  # RFC 5322 unfolding: the line breaks go, the spaces stay
    return str(make_header(decode_header(unfolded.split(":", 1)[1].strip())))


def header_names(raw: bytes) -> list[str]:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [name.lower() for name in parsed]


def _over(what: str, size: int, limit: int) -> list[str]:
    return [f"{what}: {size:,}, over {limit:,}"] if size > limit else []
