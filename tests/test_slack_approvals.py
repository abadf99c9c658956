"""Approving a risky change from Slack: the message shows what waits and two buttons, and a
click comes back to POST /slack/interactions signed by Slack.

The service runs in process over a real store (SQLite and PostgreSQL); the clicks are signed
with Slack's v0 scheme as tests/support/slack_clicks.py writes it from Slack's documentation,
and the messages' updates go to a recording stand-in for Slack's response_url.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from remediator.config import Settings, SettingsError, load_settings
from remediator.http.slack_interactions import AuditBudget, check_signature
from remediator.metrics import Metrics
from remediator.notify.base import ApprovalAsk, Message
from remediator.notify.slack import Slack
from remediator.policy.schema import SlackChannel
from remediator.runtime.live_policies import LivePolicies
from remediator.runtime.wiring import Parts
from remediator.store import ApprovalRequest, ApprovalState, Store, Verdict
from tests.support.channel_limits import slack_problems
from tests.support.hostile_alerts import CASES, page
from tests.support.notify_recorder import Answer, Recorded, Recorder
from tests.support.service_process import eventually
from tests.support.slack_clicks import (
    SIGNING_SECRET,
    click_body,
    pending_approval,
    signed_headers,
)

Client = TestClient[Any, Any]
ALICE, BOB, MALLORY = "U01ALICE", "U02BOB", "U09MALLORY"
APPROVE, REJECT = "remediator_approve", "remediator_reject"
RESPONSE_PATH = "/actions/T0001/5723519813/pBUjQ4Zz4JFqyBYlIo2JLw6y"


def ask_of(request: ApprovalRequest) -> ApprovalAsk:
    return ApprovalAsk(
        id=request.id,
        step=request.step,
        action=request.action,
        change=str(request.shown["change"]),
        approvers=request.approvers,
        min_approvals=request.min_approvals,
        expires_at=request.expires_at.isoformat(),
        on_timeout=request.on_timeout,
    )


def waiting_page(ask: ApprovalAsk) -> Message:
    return dataclasses.replace(page(CASES["normal"]), outcome="awaiting_approval", approval=ask)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: what is tested here does not depend on the store, whose part (answers
    taken in one transaction, requests seen) is proven on both in test_approvals_store.py."""
    return f"sqlite:///{tmp_path / 'remediator.db'}"


@pytest.fixture
async def slack(slack_api: Recorder, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Slack]:
    monkeypatch.setenv("SLACK_WEBHOOK", f"{slack_api.url}/services/T000/B000/s3cret")
    async with aiohttp.ClientSession() as session:
        yield Slack(SlackChannel(webhook_url_env="SLACK_WEBHOOK"), session, timeout=5)


@asynccontextmanager
async def serving(
    database_url: str,
    store: Store,
    policies: LivePolicies,
    response_url_prefix: str,
    **settings: Any,
) -> AsyncIterator[Client]:
    """The service's application, with Slack interactivity signed by SIGNING_SECRET unless
    `settings` say otherwise; leaving it waits for the messages' updates under way."""
    chosen = {"slack_signing_secret": SIGNING_SECRET} | settings
    app = Parts.of(
        Settings(
            database_url=database_url,
            webhook_token="s3cret",
            slack_response_url_prefix=response_url_prefix,
            **{name: value for name, value in chosen.items() if value is not None},
        ),
        store,
        policies,
        Metrics(),
    ).application()
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def service(
    database_url: str, store: Store, live_policies: LivePolicies, slack_api: Recorder
) -> AsyncIterator[Client]:
    async with serving(database_url, store, live_policies, f"{slack_api.url}/") as client:
        yield client


async def click(
    client: Client,
    user: str,
    action: str,
    request: ApprovalRequest,
    response_url: str,
    *,
    blocks: list[dict[str, Any]] | None = None,
) -> aiohttp.ClientResponse:
    body = click_body(user, action, request.id, response_url, blocks=blocks)
    return await client.post("/slack/interactions", data=body, headers=signed_headers(body))


async def updates(recorder: Recorder, count: int) -> list[Recorded]:
    async def arrived() -> bool:
        return len(recorder.requests) >= count

    await eventually(arrived, what=f"{count} message update(s) at response_url", timeout=10)
    return recorder.requests


def block(body: dict[str, Any], block_id: str) -> dict[str, Any] | None:
    found = [b for b in body["blocks"] if b.get("block_id") == block_id]
    assert len(found) <= 1, found
    return found[0] if found else None


def status_of(update: Recorded) -> str:
    status = block(update.json, "remediator_approval_status")
    assert status is not None, update.json
    text: str = status["text"]["text"]
    return text


# The message


async def test_a_message_waiting_for_approval_shows_what_waits_and_two_buttons(
    slack: Slack, slack_api: Recorder
) -> None:
    ask = ApprovalAsk(
        id="5f0c9a4e-2b7d-4d8e-9a51-0f3c2e7b6a10",
        step="restart",
        action="kubernetes.rollout_restart",
        change="would restart deployment prod/api (3 pods)",
        approvers=(ALICE, BOB, "ops@example.com"),
        min_approvals=2,
        expires_at="2027-01-15T08:15:00+00:00",
        on_timeout="reject",
    )
    await slack.send(waiting_page(ask))

    [sent] = slack_api.requests
    body = sent.json
    assert slack_problems(body) == []
    ids = [b.get("block_id") for b in body["blocks"]]
    assert ids[2:4] == ["remediator_approval", "remediator_approval_actions"]  # after the facts
    section = block(body, "remediator_approval")
    assert section is not None
    assert section["text"]["text"].splitlines() == [
        "*Waiting for approval:* restart (kubernetes.rollout_restart)"
        " — would restart deployment prod/api (3 pods)",
        "*Approvers:* <@U01ALICE>, <@U02BOB>, ops@example.com — 2 of them must approve",
        "*Expires:* 2027-01-15T08:15:00+00:00: then it is rejected",
        "*Or:* `remediator approvals approve 5f0c9a4e-2b7d-4d8e-9a51-0f3c2e7b6a10`",
    ]
    actions = block(body, "remediator_approval_actions")
    assert actions is not None
    approve, reject = actions["elements"]
    assert approve == approve | {
        "type": "button",
        "action_id": APPROVE,
        "style": "primary",
        "value": ask.id,
        "text": {"type": "plain_text", "text": "Approve", "emoji": True},
    }
    assert approve["confirm"]["text"]["text"] == (
        "restart (kubernetes.rollout_restart): would restart deployment prod/api (3 pods)"
    )
    assert reject == {
        "type": "button",
        "action_id": REJECT,
        "style": "danger",
        "value": ask.id,
        "text": {"type": "plain_text", "text": "Reject", "emoji": True},
    }


async def test_an_oversized_or_hostile_approval_stays_within_block_kit_limits(
    slack: Slack, slack_api: Recorder
) -> None:
    ask = ApprovalAsk(
        id="5f0c9a4e-2b7d-4d8e-9a51-0f3c2e7b6a10",
        step="s" * 500,
        action="kubernetes.rollout_restart",
        change="<!channel> " + "c" * 50_000,
        approvers=("<!here>", *(f"U{n:06d}" for n in range(300))),
        min_approvals=3,
        expires_at="2027-01-15T08:15:00+00:00",
        on_timeout="approve",
    )
    await slack.send(dataclasses.replace(page(CASES["200 labels"]), approval=ask))

    body = slack_api.requests[0].json
    assert slack_problems(body) == []
    section = block(body, "remediator_approval")
    assert section is not None
    text = section["text"]["text"]
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text
    assert "*Approvers:* &lt;!here&gt;, <@U000000>, " in text
    assert "<!here>" not in text
    assert "<@U000299>" not in text
    assert ", … and " in text
    assert "then it is approved" in text
    assert block(body, "remediator_approval_actions") is not None


# The signature


# Slack's own example (https://api.slack.com/authentication/verifying-requests-from-slack):
# a slash command's body, its timestamp, the example signing secret and the signature it gives.
EXAMPLE_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
EXAMPLE_TIMESTAMP = "1531420618"
EXAMPLE_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


@pytest.mark.parametrize(
    ("secrets", "timestamp", "signature", "body", "seconds_later", "refused"),
    [
        pytest.param(
            (SIGNING_SECRET,),
            EXAMPLE_TIMESTAMP,
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY,
            10,
            None,
            id="slacks-example",
        ),
        pytest.param(
            ("old", SIGNING_SECRET),
            EXAMPLE_TIMESTAMP,
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY,
            0,
            None,
            id="second-secret",
        ),
        pytest.param(
            (SIGNING_SECRET,),
            EXAMPLE_TIMESTAMP,
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY,
            -300,
            None,
            id="5-minutes-early",
        ),
        pytest.param(
            (SIGNING_SECRET,),
            EXAMPLE_TIMESTAMP,
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY,
            301,
            "stale",
            id="5-minutes-1-s",
        ),
        pytest.param(
            (SIGNING_SECRET,),
            EXAMPLE_TIMESTAMP,
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY + b"&x=1",
            0,
            "forged",
            id="body-changed",
        ),
        pytest.param(
            (SIGNING_SECRET,),
            "1531420619",
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY,
            0,
            "forged",
            id="timestamp-changed",
        ),
        pytest.param(
            (SIGNING_SECRET,),
            EXAMPLE_TIMESTAMP,
            EXAMPLE_SIGNATURE.upper(),
            EXAMPLE_BODY,
            0,
            "forged",
            id="upper-case",
        ),
        pytest.param(
            (SIGNING_SECRET,),
            "+1531420618",
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY,
            0,
            "forged",
            id="not-digits",
        ),
        pytest.param(
            ("another",),
            EXAMPLE_TIMESTAMP,
            EXAMPLE_SIGNATURE,
            EXAMPLE_BODY,
            0,
            "forged",
            id="secret",
        ),
        pytest.param(
            (), EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE, EXAMPLE_BODY, 0, "forged", id="no-secret"
        ),
        pytest.param(
            (SIGNING_SECRET,), None, EXAMPLE_SIGNATURE, EXAMPLE_BODY, 0, "unsigned", id="no-time"
        ),
        pytest.param(
            (SIGNING_SECRET,), EXAMPLE_TIMESTAMP, "", EXAMPLE_BODY, 0, "unsigned", id="empty"
        ),
    ],
)
def test_the_signature_is_slacks_v0_scheme(
    secrets: tuple[str, ...],
    timestamp: str | None,
    signature: str,
    body: bytes,
    seconds_later: int,
    refused: str | None,
) -> None:
    now = int(EXAMPLE_TIMESTAMP) + seconds_later
    keys = tuple(secret.encode() for secret in secrets)
    refusal = check_signature(keys, timestamp, signature, body, now)
    assert (refusal.kind.value if refusal else None) == refused


def test_a_flood_of_refusals_is_recorded_at_most_60_a_minute_then_counted() -> None:
    budget = AuditBudget()
    minute = 1_800_000_000.0 - 1_800_000_000.0 % 60
    taken = [budget.take(minute + n / 100) for n in range(100)]
    assert taken == [0] * 60 + [None] * 40
    assert budget.take(minute + 60) == 40  # the next minute's first entry counts them
    assert budget.take(minute + 61) == 0


# The clicks


async def test_an_approvers_click_approves_and_updates_the_message_saying_who(
    service: Client, store: Store, slack_api: Recorder, slack: Slack
) -> None:
    request = await pending_approval(store, (ALICE, BOB))
    original = slack.body(waiting_page(ask_of(request)))["blocks"]

    answer = await click(
        service, ALICE, APPROVE, request, slack_api.url + RESPONSE_PATH, blocks=original
    )

    assert answer.status == 200
    after = await store.approval(request.id)
    assert after is not None
    assert after.state is ApprovalState.APPROVED
    assert after.approved_by == (ALICE,)
    assert [(a.via, a.verdict) for a in after.answers] == [("slack", Verdict.APPROVE)]
    [update] = await updates(slack_api, 1)
    assert (update.method, update.path) == ("POST", RESPONSE_PATH)
    assert update.json["replace_original"] is True
    assert status_of(update) == "*Approved* by <@U01ALICE>: the run goes on"
    assert block(update.json, "remediator_approval_actions") is None  # nothing left to answer
    kept = [b for b in update.json["blocks"] if b.get("block_id") != "remediator_approval_status"]
    assert kept == [b for b in original if b.get("block_id") != "remediator_approval_actions"]
    assert slack_problems(update.json) == []


async def test_a_reject_closes_the_request(
    service: Client, store: Store, slack_api: Recorder
) -> None:
    request = await pending_approval(store, (ALICE, BOB), min_approvals=2)

    answer = await click(service, BOB, REJECT, request, slack_api.url + RESPONSE_PATH)

    assert answer.status == 200
    after = await store.approval(request.id)
    assert after is not None
    assert after.state is ApprovalState.REJECTED
    [update] = await updates(slack_api, 1)
    assert status_of(update) == "*Rejected* by <@U02BOB>: the change is not made"
    assert block(update.json, "remediator_approval_actions") is None


def other_secret(body: bytes) -> dict[str, str]:
    return signed_headers(body, secret="not-the-apps-signing-secret")


def tampered(body: bytes) -> dict[str, str]:
    """Signed for another body: Bob's click, claimed by Alice's."""
    return signed_headers(body.replace(ALICE.encode(), BOB.encode()))


def stale(body: bytes) -> dict[str, str]:
    return signed_headers(body, timestamp=int(time.time()) - 6 * 60)


def from_the_future(body: bytes) -> dict[str, str]:
    return signed_headers(body, timestamp=int(time.time()) + 6 * 60)


def unsigned(_: bytes) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded"}


def without_timestamp(body: bytes) -> dict[str, str]:
    headers = signed_headers(body)
    del headers["X-Slack-Request-Timestamp"]
    return headers


def without_signature(body: bytes) -> dict[str, str]:
    headers = signed_headers(body)
    del headers["X-Slack-Signature"]
    return headers


@pytest.mark.parametrize(
    ("headers_for", "kind"),
    [
        pytest.param(other_secret, "forged", id="another-secret"),
        pytest.param(tampered, "forged", id="tampered-body"),
        pytest.param(stale, "stale", id="stale"),
        pytest.param(from_the_future, "stale", id="future"),
        pytest.param(unsigned, "unsigned", id="no-headers"),
        pytest.param(without_timestamp, "unsigned", id="no-timestamp"),
        pytest.param(without_signature, "unsigned", id="no-signature"),
    ],
)
async def test_a_request_not_signed_by_slack_now_is_refused_recorded_and_changes_nothing(
    headers_for: Any, kind: str, service: Client, store: Store, slack_api: Recorder
) -> None:
    request = await pending_approval(store, (ALICE, BOB))
    body = click_body(ALICE, APPROVE, request.id, slack_api.url + RESPONSE_PATH)

    answer = await service.post("/slack/interactions", data=body, headers=headers_for(body))

    assert answer.status == 401
    assert (await answer.json())["error"].startswith(f"{kind}: ")
    after = await store.approval(request.id)
    assert after is not None
    assert (after.state, after.answers) == (ApprovalState.PENDING, ())
    [entry] = await store.audit_log(10)
    assert (entry.kind, entry.subject) == ("slack_refused", kind)
    assert str(entry.detail["reason"]).startswith(f"{kind}: ")
    await service.close()  # every update under way is done
    assert slack_api.requests == []


async def test_a_replayed_request_is_refused_though_its_signature_is_good(
    service: Client, store: Store, slack_api: Recorder
) -> None:
    request = await pending_approval(store, (ALICE, BOB), min_approvals=2)
    body = click_body(ALICE, APPROVE, request.id, slack_api.url + RESPONSE_PATH)
    headers = signed_headers(body)

    first = await service.post("/slack/interactions", data=body, headers=headers)
    again = await service.post("/slack/interactions", data=body, headers=headers)

    assert first.status == 200
    assert again.status == 401
    assert (await again.json())["error"].startswith("replayed: ")
    after = await store.approval(request.id)
    assert after is not None
    assert after.state is ApprovalState.PENDING
    assert len(after.answers) == 1  # the replay never reached the desk
    assert [(e.kind, e.subject) for e in await store.audit_log(10)] == [
        ("slack_refused", "replayed")
    ]
    await service.close()
    assert len(slack_api.requests) == 1


async def test_a_slack_user_not_among_the_approvers_is_refused_recorded_and_told(
    service: Client, store: Store, slack_api: Recorder, slack: Slack
) -> None:
    request = await pending_approval(store, (ALICE, BOB))
    original = slack.body(waiting_page(ask_of(request)))["blocks"]

    answer = await click(
        service, MALLORY, APPROVE, request, slack_api.url + RESPONSE_PATH, blocks=original
    )

    assert answer.status == 200
    after = await store.approval(request.id)
    assert after is not None
    assert after.state is ApprovalState.PENDING
    assert after.approved_by == ()
    assert [(a.who, a.via, a.verdict) for a in after.answers] == [
        (MALLORY, "slack", Verdict.REFUSED)
    ]
    [update] = await updates(slack_api, 1)
    said = status_of(update)
    assert said.startswith(
        "<@U09MALLORY>'s approval was not taken: U09MALLORY is not an approver of this request"
    )
    assert said.endswith("*Pending:* 1 approval needed")
    actions = block(update.json, "remediator_approval_actions")
    assert actions == block({"blocks": original}, "remediator_approval_actions")  # still open


async def test_two_approvers_are_needed_and_one_clicking_twice_counts_once(
    service: Client, store: Store, slack_api: Recorder
) -> None:
    request = await pending_approval(store, (ALICE, BOB), min_approvals=2)
    url = slack_api.url + RESPONSE_PATH

    assert (await click(service, ALICE, APPROVE, request, url)).status == 200
    first = await store.approval(request.id)
    assert (await click(service, ALICE, APPROVE, request, url)).status == 200
    twice = await store.approval(request.id)
    assert (await click(service, BOB, APPROVE, request, url)).status == 200
    both = await store.approval(request.id)

    assert first is not None
    assert twice is not None
    assert both is not None
    assert (first.state, first.approved_by) == (ApprovalState.PENDING, (ALICE,))
    assert (twice.state, twice.approved_by) == (ApprovalState.PENDING, (ALICE,))
    assert (both.state, set(both.approved_by)) == (ApprovalState.APPROVED, {ALICE, BOB})
    said = [status_of(update) for update in await updates(slack_api, 3)]
    assert said[0] == "*Pending:* approved by <@U01ALICE> (1 of 2); waiting for 1 more"
    assert said[1].startswith("<@U01ALICE>'s approval was not taken: ")
    assert said[1].endswith("*Pending:* approved by <@U01ALICE> (1 of 2); waiting for 1 more")
    assert said[2] in (
        "*Approved* by <@U01ALICE>, <@U02BOB>: the run goes on",
        "*Approved* by <@U02BOB>, <@U01ALICE>: the run goes on",
    )
    open_after = [
        block(u.json, "remediator_approval_actions") is not None for u in slack_api.requests
    ]
    assert open_after == [True, True, False]


async def test_a_response_url_outside_the_prefix_is_never_called(
    service: Client, store: Store, slack_api: Recorder
) -> None:
    elsewhere = Recorder(Answer(200, "ok"))
    await elsewhere.start()
    try:
        request = await pending_approval(store, (ALICE,))
        answer = await click(service, ALICE, APPROVE, request, elsewhere.url + RESPONSE_PATH)
        await service.close()  # every update under way is done
    finally:
        await elsewhere.close()

    assert answer.status == 200
    after = await store.approval(request.id)
    assert after is not None
    assert after.state is ApprovalState.APPROVED
    assert elsewhere.requests == []
    assert slack_api.requests == []


async def test_without_a_signing_secret_slack_interactivity_is_not_configured(
    database_url: str, store: Store, live_policies: LivePolicies, slack_api: Recorder
) -> None:
    request = await pending_approval(store, (ALICE,))
    async with serving(
        database_url, store, live_policies, f"{slack_api.url}/", slack_signing_secret=None
    ) as client:
        answer = await click(client, ALICE, APPROVE, request, slack_api.url + RESPONSE_PATH)
        said = await answer.json()

    assert answer.status == 404
    assert said == {"error": "Slack interactivity is not configured"}
    after = await store.approval(request.id)
    assert after is not None
    assert after.state is ApprovalState.PENDING


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        pytest.param(b"payload=%7Bnot+json", "application/x-www-form-urlencoded", 400, id="json"),
        pytest.param(b"payload=1&payload=2", "application/x-www-form-urlencoded", 400, id="two"),
        pytest.param(b"\xff\xfe", "application/x-www-form-urlencoded", 400, id="not-utf8"),
        pytest.param(b"payload=%7B%7D", "application/x-www-form-urlencoded", 400, id="no-type"),
        pytest.param(b'{"type": "block_actions"}', "application/json", 415, id="json-body"),
        pytest.param(
            b"payload=%7B%22type%22%3A%22view_submission%22%7D",
            "application/x-www-form-urlencoded",
            200,
            id="not-a-click",
        ),
    ],
)
async def test_a_signed_body_that_is_not_a_click_is_answered_never_500(
    body: bytes, content_type: str, status: int, service: Client, store: Store
) -> None:
    headers = signed_headers(body) | {"Content-Type": content_type}

    answer = await service.post("/slack/interactions", data=body, headers=headers)

    assert answer.status == status, await answer.text()
    assert await store.audit_log(10) == []


async def test_the_signing_secret_may_come_from_a_file_any_line_of_it(
    tmp_path: Path,
    database_url: str,
    store: Store,
    live_policies: LivePolicies,
    slack_api: Recorder,
) -> None:
    secrets = tmp_path / "slack-signing-secret"
    secrets.write_text(f"old-secret-being-rotated-out\n{SIGNING_SECRET}\n")
    request = await pending_approval(store, (ALICE,))
    async with serving(
        database_url,
        store,
        live_policies,
        f"{slack_api.url}/",
        slack_signing_secret=None,
        slack_signing_secret_file=str(secrets),
    ) as client:
        answer = await click(client, ALICE, APPROVE, request, slack_api.url + RESPONSE_PATH)

    assert answer.status == 200
    after = await store.approval(request.id)
    assert after is not None
    assert after.state is ApprovalState.APPROVED


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        pytest.param(
            {"SIGNING_SECRET": "x", "SIGNING_SECRET_FILE": "{file}"},
            "set one of REMEDIATOR_SLACK_SIGNING_SECRET or REMEDIATOR_SLACK_SIGNING_SECRET_FILE,"
            " not both",
            id="both",
        ),
        pytest.param(
            {"SIGNING_SECRET": " "},
            "REMEDIATOR_SLACK_SIGNING_SECRET (--slack-signing-secret): must not be empty or"
            " blank: give it a value, or unset it",
            id="blank",
        ),
        pytest.param(
            {"SIGNING_SECRET_FILE": "{file}.absent"},
            "REMEDIATOR_SLACK_SIGNING_SECRET_FILE (--slack-signing-secret-file): cannot read",
            id="no-file",
        ),
        pytest.param(
            {"SIGNING_SECRET": "x", "RESPONSE_URL_PREFIX": "https://hooks.slack.com"},
            "REMEDIATOR_SLACK_RESPONSE_URL_PREFIX (--slack-response-url-prefix): expected an"
            " http:// or https:// URL with a host and a path, such as https://hooks.slack.com/,"
            " got 'https://hooks.slack.com'",
            id="prefix-without-path",
        ),
    ],
)
def test_slack_settings_that_cannot_be_used_are_named(
    settings: dict[str, str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secret"
    secrets.write_text("x\n")
    for name in [name for name in os.environ if name.startswith("REMEDIATOR_")]:
        monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(f"REMEDIATOR_SLACK_{name}", value.format(file=secrets))
    with pytest.raises(SettingsError) as raised:
        load_settings()
    [line] = raised.value.lines
    assert line.startswith(said)
