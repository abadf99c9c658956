"""Malformed, oversized, wrong-typed payloads (issue 9): 400/413/415, bounded memory, never a 5xx.

Three sources of bad input. Hypothesis on the webhook models: any JSON value, and the captured
samples changed in one place, parse or fail with the validation error the intake answers 400
with, naming the place. Schemathesis against a running service's own /openapi.json: positive
and negative cases for every operation, with its conformance checks. Hand-made abuse against
running services on both stores: bodies over the limit, wrong content types, truncated and
invalid JSON, wrong types, nesting and width bombs, each leaving the store unchanged. The
service process's memory is read from /proc throughout.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from remediator.alerts import Alert, Notification
from remediator.http.intake import json_path
from tests.support.figures import Figures, scale
from tests.support.samples import sample, sample_names
from tests.support.service_process import ServiceProcess

SCENARIO = "Malformed, oversized, wrong-typed payloads"
EXPECTED = "400/413/415, bounded memory, never a 5xx"
CASES = scale(600, 100_000)  # generated cases, over the three generating tests
# Schemathesis' share is the smaller: its generator takes 20 to 50 ms a webhook body.
MODEL_CASES, SCHEMA_CASES = CASES * 3 // 8, CASES // 4
WEBHOOK_TOKEN, API_TOKEN = "s3cret-webhook", "s3cret-operator"
MAX_BODY = 4 * 1024 * 1024  # the shipped REMEDIATOR_MAX_BODY_BYTES
# Peak RSS over a warmed-up service's: a 4 MiB body parsed costs about 30 MiB. The pod's
# memory limit (deploy/kubernetes) is 256 MiB, about 110 MiB of it the idle service.
PEAK_HEADROOM_MIB = 96
SETTLED_GROWTH_MIB = 48  # RSS after a first round over its start: the allocator keeps some
REPEAT_GROWTH_MIB = 8  # ... and after the same input again: nothing more
ROUNDS = scale(2, 5)  # of the same input, or of the generated cases
ANSWER_WITHIN = 10  # seconds for any one refusal: each takes milliseconds
HYPOTHESIS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


# --- (a) hypothesis on the webhook models -------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
FIELD_NAMES = sorted(
    {
        info.alias or name
        for model in (Notification, Alert)
        for name, info in model.model_fields.items()
    }
)
# Keys the models know, so that generated objects get past the top level.
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
JSON_VALUES = st.recursive(
    JSON_SCALARS | st.sampled_from(["4", "firing", "resolved", "2026-11-23T20:00:07Z", "\x00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
    max_leaves=40,
)


def required(model: type[Notification] | type[Alert]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items() if info.is_required()}


# The fields a payload cannot do without, by where they are: the top, and each alert.
REQUIRED = {(): required(Notification), ("alerts", int): required(Alert)}


def encode(value: Any, ascii_only: bool) -> bytes:
    """JSON as a client might send it: NaN, Infinity and lone surrogates included."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")


def parse(body: bytes) -> Notification | list[tuple[tuple[int | str, ...], str]]:
    """The intake's parse: the model, or each problem's location and message. Anything else
    raised (a TypeError, a RecursionError, ...) is what the intake would answer 500 with."""
    try:
        return Notification.from_webhook(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        return [(tuple(error["loc"]), error["msg"]) for error in errors]


def storable(notification: Notification) -> None:
    """What the model accepts the store can write (PostgreSQL text, timestamptz, its index)."""
    texts = [notification.group_key, notification.receiver, notification.external_url]
    for labels in (
        notification.group_labels,
        notification.common_labels,
        notification.common_annotations,
    ):
        texts += [*labels, *labels.values()]
    for alert in notification.alerts:
        texts += [alert.fingerprint, alert.generator_url, *alert.labels, *alert.labels.values()]
        texts += [*alert.annotations, *alert.annotations.values()]
        assert 1 <= len(alert.fingerprint) <= 128
        alert.starts_at.astimezone(UTC)
        if alert.ends_at is not None:
            alert.ends_at.astimezone(UTC)
    assert not [text for text in texts if "\x00" in text]


def names_a_place(value: Any, location: tuple[int | str, ...]) -> bool:
    """Whether a problem's location is in the input: its parent exists (a missing field is
    named by where it should be), and `[key]` names a key that is there."""
    *parents, last = location or ("",)
    node = value
    for part in parents:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if not (in_dict or in_list):
            return False
        node = node[part]
    return location == () or last == "[key]" or isinstance(node, dict | list)


@dataclass
class Tally:
    """Generated cases by what became of them; a thread-safe count for the figure."""

    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


def test_any_json_value_parses_or_is_refused_naming_where(figures: Figures) -> None:
    tally = Tally()
    cases = MODEL_CASES

    @settings(HYPOTHESIS, max_examples=cases)
    @given(value=JSON_VALUES, ascii_only=st.booleans())
    def any_value(value: Any, ascii_only: bool) -> None:
        outcome = parse(encode(value, ascii_only))
        if isinstance(outcome, Notification):
            storable(outcome)
            tally.add("parsed")
            return
        assert outcome, "a refusal names at least one problem"
        for location, message in outcome:
            assert message
            assert json_path(location).startswith("$")
            assert names_a_place(value, location), (location, value)
        tally.add("refused")

    run_recorded(any_value, figures, tally, "arbitrary JSON values, hypothesis on the models")
    assert tally.total >= cases // 2


def utf_8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def places(value: Any, at: tuple[int | str, ...] = ()) -> Iterator[tuple[int | str, ...]]:
    yield at
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from places(inner, (*at, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from places(inner, (*at, index))


def at(value: Any, location: tuple[int | str, ...]) -> Any:
    for part in location:
        value = value[part]
    return value


@dataclass(frozen=True)
class Mutation:
    sample: str
    kind: str  # replace, delete or insert
    location: tuple[int | str, ...]  # what was changed: the replaced, deleted or new value

    def required(self) -> bool:
        """Whether the deleted field is one the payload cannot do without."""
        *parent, key = self.location or ("",)
        shape = tuple(int if isinstance(part, int) else part for part in parent)
        return self.kind == "delete" and key in REQUIRED.get(shape, set())


@st.composite
def mutated_samples(draw: st.DrawFn) -> tuple[Any, Mutation]:
    name = draw(st.sampled_from(sample_names()))
    body = sample(name)
    location = draw(st.sampled_from(list(places(body))))
    kind = draw(st.sampled_from(["replace", "delete", "insert"]))
    container = at(body, location[:-1]) if location else None
    if kind == "delete" and container is not None:
        del container[location[-1]]
    elif kind == "insert" and isinstance(at(body, location), dict | list):
        target = at(body, location)
        if isinstance(target, dict):
            key = "x-" + draw(st.text(max_size=6))
            target[key] = draw(JSON_VALUES)
            location = (*location, key)
        else:
            index = draw(st.integers(0, len(target)))
            target.insert(index, draw(JSON_VALUES))
            location = (*location, index)
    else:
        kind = "replace"
        replacement = draw(JSON_VALUES)
        if container is None:
            body = replacement
        else:
            container[location[-1]] = replacement
    return body, Mutation(name, kind, location)


def test_a_sample_changed_in_one_place_is_refused_only_for_that_place(figures: Figures) -> None:
    tally = Tally()
    cases = MODEL_CASES

    @settings(HYPOTHESIS, max_examples=cases)
    @given(case=mutated_samples(), ascii_only=st.booleans())
    def one_change(case: tuple[Any, Mutation], ascii_only: bool) -> None:
        body, mutation = case
        encoded = encode(body, ascii_only)
        outcome = parse(encoded)
        if isinstance(outcome, Notification):
            assert not mutation.required(), f"{mutation} parsed"
            storable(outcome)
            tally.add("parsed")
            return
        for location, message in outcome:
            assert message
            if location == () and not utf_8(encoded):
                continue  # a lone surrogate written raw: not UTF-8, so no field to name
            # Every problem is at the change or inside it: the message names the field.
            assert location[: len(mutation.location)] == mutation.location, (location, mutation)
        tally.add("refused")

    run_recorded(one_change, figures, tally, "captured samples changed in one place")
    assert tally.total >= cases // 2


def run_recorded(cases: Callable[[], None], figures: Figures, tally: Tally, what: str) -> None:
    """Run the hypothesis cases and record the figure, a failing one too, then re-raise."""
    failed: BaseException | None = None
    try:
        cases()
    except BaseException as exc:
        failed = exc
    outcomes = ", ".join(f"{count} {outcome}" for outcome, count in sorted(tally.outcomes.items()))
    verdict = "a failing case" if failed else "0 unhandled exceptions"
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=f"{verdict} in {tally.total:,} generated cases ({what}: {outcomes})",
        passed=failed is None and tally.total > 0,
    )
    if failed is not None:
        raise failed


# --- the service as it runs, and its memory ----------------------------------------------


def memory_mib(pid: int) -> tuple[float, float]:
    """The process's resident set now and its peak (VmRSS, VmHWM), in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS (clear_refs 5), so a peak is this run's own."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Memory:
    """The service's RSS over a run: at its start, its peak, after a first and a last round.
    Bounded: the peak within the headroom, and a repeat of the same input adds nothing (what
    the first round left is the allocator's, a leak would grow with every round)."""

    pid: int
    start: float = 0.0
    first: float = 0.0
    end: float = 0.0
    peak: float = 0.0

    @classmethod
    def watch(cls, pid: int) -> Memory:
        reset_peak(pid)
        return cls(pid, start=memory_mib(pid)[0])

    def round_done(self) -> None:
        self.end, self.peak = memory_mib(self.pid)
        self.first = self.first or self.end

    def __str__(self) -> str:
        return (
            f"RSS {self.start:.0f} MiB at start, peak {self.peak:.0f},"
            f" {self.first:.0f} after the first round, {self.end:.0f} after the last"
        )

    def bounded(self) -> bool:
        return (
            self.peak - self.start <= PEAK_HEADROOM_MIB
            and self.first - self.start <= SETTLED_GROWTH_MIB
            and self.end - self.first <= REPEAT_GROWTH_MIB
        )


@pytest.fixture
async def postgres_service(tmp_path: Path, postgres_dsn: str) -> AsyncIterator[ServiceProcess]:
    service = await ServiceProcess.start(
        tmp_path,
        database_url=postgres_dsn,
        webhook_token=WEBHOOK_TOKEN,
        api_token=API_TOKEN,
        max_body_bytes=str(MAX_BODY),
    )
    yield service
    service.stop()


def unhandled(service: ServiceProcess) -> list[str]:
    """Log lines of requests that raised: what the middleware turned into a 500."""
    return [line for line in service.log_path.read_text().splitlines() if "request failed" in line]


# --- (b) schemathesis against the running service ----------------------------------------

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
]
# Cases per operation and mode, out of the test's share: the intake gets the most.
WEIGHTS = {
    ("POST", "/api/v1/alerts"): 6,
    ("POST", "/api/v1/pause"): 1,
    ("POST", "/api/v1/resume"): 1,
    ("GET", "/api/v1/runs"): 1,
    ("GET", "/api/v1/runs/{id}"): 1,
    ("GET", "/api/v1/runs/{id}/messages"): 1,
    ("GET", "/api/v1/alerts"): 1,
    ("GET", "/api/v1/guards"): 1,
    ("GET", "/api/v1/approvals"): 1,
    ("GET", "/api/v1/approvals/{id}"): 1,
    ("POST", "/api/v1/approvals/{id}"): 1,
}


MALFORMED = {400, 413, 415, 422}  # refusals of the request itself, for schema-valid data
SERVER_ERRORS = tuple(f" {status}" for status in range(500, 600))


def credentials(path: str, method: str = "POST") -> dict[str, str]:
    if (method.upper(), path) == ("POST", "/api/v1/alerts"):  # the webhook; GET lists alerts
        return {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    if path.startswith("/api/v1/"):
        return {"Authorization": f"Bearer {API_TOKEN}"}
    return {}


def out_of_range_timestamps_only(response: requests.Response) -> bool:
    """A schema-valid body the model refuses: a time zone puts the instant outside years
    1..9999, which JSON Schema's date-time cannot say (the field's description does)."""
    try:
        problems = response.json().get("problems", [])
    except ValueError:
        return False
    bounds = ("or equal to 0001-01-01", "or equal to 9999-12-31")
    return bool(problems) and all(any(b in p["message"] for b in bounds) for p in problems)


def a_cursor_not_given(response: requests.Response) -> bool:
    """A schema-valid `cursor` the API never gave: which strings it gives (the `next` of a
    page) JSON Schema cannot say; the parameter's description does."""
    try:
        error = str(response.json().get("error", ""))
    except ValueError:
        return False
    return error.startswith("cursor: not a cursor this API gave")


@dataclass
class Fuzzing:
    """One schemathesis pass over the service: outcomes by operation and status, and each
    distinct failure with its reproduction."""

    base_url: str
    tally: Tally = field(default_factory=Tally)
    failures: dict[str, str] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)

    def run_case(self, case: schemathesis.Case) -> None:
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        # Credentials, unless schemathesis made the headers invalid on purpose (it removes or
        # spoils Authorization): those cases must be refused as it sent them.
        spoiled = case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER)
        headers = {} if spoiled else credentials(case.path, case.method)
        try:
            response = case.call(self.base_url, self.session, headers, timeout=30)
        except requests.RequestException as exc:  # no answer: a crash, a hang, a reset
            self.tally.add(f"{case.method} {case.path} no answer")
            self.fail(f"{case.method} {case.path}: no answer: {exc!r}")
            return
        self.tally.add(f"{case.method} {case.path} {response.status_code}")
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (AssertionError, FailureGroup) as exc:
            self.fail(str(exc))
            return
        refused = positive and response.status_code in MALFORMED
        if refused and not (out_of_range_timestamps_only(response) or a_cursor_not_given(response)):
            self.fail(f"schema-valid {case.method} {case.path} refused: {response.text[:500]}")

    def fail(self, message: str) -> None:
        self.failures.setdefault(message.splitlines()[0] + message[-300:], message[:3000])

    @property
    def server_errors(self) -> int:
        return sum(n for key, n in self.tally.outcomes.items() if key.endswith(SERVER_ERRORS))


def fuzz(
    fuzzing: Fuzzing, operation: schemathesis.APIOperation, mode: GenerationMode, n: int
) -> None:
    @settings(HYPOTHESIS, max_examples=n)
    @given(case=operation.as_strategy(generation_mode=mode))
    def cases(case: schemathesis.Case) -> None:
        fuzzing.run_case(case)

    cases()


async def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(
    postgres_service: ServiceProcess, figures: Figures
) -> None:
    service = postgres_service
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    fuzzing = Fuzzing(service.url)
    share = SCHEMA_CASES
    # Two rounds of each operation and mode: a second that grows memory again would leak.
    per_weight = share // (ROUNDS * 2 * sum(WEIGHTS.values()))
    memory = Memory.watch(service.process.pid)

    def every_operation() -> None:
        for result in schema.get_all_operations():
            operation = result.ok()
            weight = WEIGHTS.get((operation.method.upper(), operation.path))
            if weight is None:  # no input at all: nothing to vary, nothing to make invalid
                fuzz(fuzzing, operation, GenerationMode.POSITIVE, 1)
                continue
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz(fuzzing, operation, mode, weight * per_weight)

    started = time.monotonic()
    for _ in range(ROUNDS):
        await asyncio.to_thread(every_operation)
        memory.round_done()
    seconds = time.monotonic() - started
    errors = unhandled(service)
    total = fuzzing.tally.total
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=f"{fuzzing.server_errors} unhandled exceptions (5xx) in {total:,} generated cases"
        f" (schemathesis against /openapi.json, {seconds:.0f} s): {len(fuzzing.failures)}"
        f" distinct check failures, {len(errors)} unhandled; {memory}",
        passed=not fuzzing.server_errors
        and not fuzzing.failures
        and not errors
        and memory.bounded(),
    )
    assert not fuzzing.failures, "\n\n".join(list(fuzzing.failures.values())[:5])
    assert not errors, errors[:5]
    assert memory.bounded(), str(memory)
    statuses = Counter(key.rsplit(" ", 1)[1] for key in fuzzing.tally.outcomes)
    assert {"200", "400", "401"} <= set(statuses), fuzzing.tally.outcomes  # it reached them
    assert total >= share // 2


# --- (c) hand-made abuse, and (d) memory, on both stores ---------------------------------


@dataclass(frozen=True)
class Abuse:
    """One hostile request and the refusal expected; `field` must be in a problem's path."""

    name: str
    path: str
    body: bytes | Callable[[], AsyncIterator[bytes]]
    status: int
    field: str = ""
    _: KW_ONLY
    content_type: str | None = "application/json"
    method: str = "POST"


def sample_bytes(change: Callable[[dict[str, Any]], Any] | None = None) -> bytes:
    body = sample("application-down.firing.json")
    if change is not None:
        change(body)
    return json.dumps(body).encode()


def streamed(total: int) -> Callable[[], AsyncIterator[bytes]]:
    """A chunked body with no Content-Length, of `total` bytes if the server reads it all."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(total // (1 << 20)):
            yield b" " * (1 << 20)

    return chunks


def alert_field(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda body: body["alerts"][0].update({name: value})


def top_field(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda body: body.update({name: value})


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


VALID = sample_bytes()
ALERTS = "/api/v1/alerts"
PAUSE = "/api/v1/pause"
EMPTY_ALERTS = b'{"version":"4","groupKey":"g","status":"firing","receiver":"r","alerts":['
WIDE_ALERTS = EMPTY_ALERTS + b",".join([b"{}"] * 1_300_000) + b"]}"  # 3.9 MB of bad alerts
WIDE_LABELS = sample_bytes(alert_field("labels", {f"k{i}": i for i in range(200_000)}))
ABUSES = [
    # Over the limit: declared, streamed without a length, and to the operator API.
    Abuse("declared-64MiB", ALERTS, b" " * (64 << 20), 413),
    Abuse("streamed-256MiB", ALERTS, streamed(256 << 20), 413),
    Abuse("one-byte-over", ALERTS, VALID + b" " * (MAX_BODY + 1 - len(VALID)), 413),
    Abuse("pause-streamed-256MiB", PAUSE, streamed(256 << 20), 413),
    # Not JSON by its Content-Type.
    Abuse("text-plain", ALERTS, VALID, 415, content_type="text/plain"),
    Abuse("no-content-type", ALERTS, VALID, 415, content_type=None),
    Abuse("form", ALERTS, VALID, 415, content_type="application/x-www-form-urlencoded"),
    Abuse("json-seq", ALERTS, VALID, 415, content_type="application/json-seq"),
    Abuse("multipart", ALERTS, VALID, 415, content_type="multipart/form-data; boundary=x"),
    # Truncated and invalid JSON.
    *(Abuse(f"truncated-{n}", ALERTS, VALID[:n], 400) for n in (0, 1, 17, 200, len(VALID) - 1)),
    Abuse("trailing-garbage", ALERTS, VALID + b" x", 400),
    Abuse("two-documents", ALERTS, VALID + VALID, 400),
    Abuse("nan", ALERTS, VALID.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": NaN'), 400),
    Abuse("single-quotes", ALERTS, VALID.replace(b'"', b"'"), 400),
    Abuse("byte-order-mark", ALERTS, b"\xef\xbb\xbf" + VALID, 400),
    Abuse("invalid-utf-8", ALERTS, VALID.replace(b"claude-manager:5000", b"\xff\xfe"), 400),
    Abuse("lone-surrogate", ALERTS, VALID.replace(b"claude-manager:5000", b"\\udc00"), 400),
    Abuse("whitespace", ALERTS, b"  \n", 400),
    *(Abuse(f"not-an-object-{v!r}", ALERTS, v, 400) for v in (b"null", b"[]", b"4", b'"x"')),
    # Wrong types, bad values: each refusal names the field.
    Abuse("version-number", ALERTS, sample_bytes(top_field("version", 4)), 400, field="version"),
    Abuse("old-version", ALERTS, sample_bytes(top_field("version", "3")), 400, field="version"),
    Abuse("group-key-list", ALERTS, sample_bytes(top_field("groupKey", [])), 400, field="groupKey"),
    Abuse(
        "count-text", ALERTS, sample_bytes(top_field("truncatedAlerts", "0")), 400, field="trunc"
    ),
    Abuse("count-negative", ALERTS, sample_bytes(top_field("truncatedAlerts", -1)), 400, "trunc"),
    Abuse("count-bool", ALERTS, sample_bytes(top_field("truncatedAlerts", True)), 400, "trunc"),
    Abuse("alerts-object", ALERTS, sample_bytes(top_field("alerts", {})), 400, field="alerts"),
    Abuse("alert-number", ALERTS, sample_bytes(top_field("alerts", [1])), 400, field="alerts[0]"),
    Abuse("status-upper", ALERTS, sample_bytes(alert_field("status", "FIRING")), 400, "status"),
    Abuse("labels-list", ALERTS, sample_bytes(alert_field("labels", [])), 400, field="labels"),
    Abuse("label-null", ALERTS, sample_bytes(alert_field("labels", {"a": None})), 400, "labels.a"),
    Abuse("label-number", ALERTS, sample_bytes(alert_field("labels", {"a": 1})), 400, "labels.a"),
    Abuse("time-number", ALERTS, sample_bytes(alert_field("startsAt", 0)), 400, "startsAt"),
    Abuse("time-words", ALERTS, sample_bytes(alert_field("startsAt", "now")), 400, "startsAt"),
    Abuse(
        "time-no-zone",
        ALERTS,
        sample_bytes(alert_field("startsAt", "2026-11-23T20:00:07")),
        400,
        field="startsAt",
    ),
    Abuse(
        "time-before-year-1",
        ALERTS,
        sample_bytes(alert_field("startsAt", "0001-01-01T00:00:00+14:00")),
        400,
        field="startsAt",
    ),
    Abuse(
        "time-after-9999",
        ALERTS,
        sample_bytes(alert_field("endsAt", "9999-12-31T23:59:59-14:00")),
        400,
        field="endsAt",
    ),
    Abuse("fingerprint-empty", ALERTS, sample_bytes(alert_field("fingerprint", "")), 400, "finger"),
    Abuse(
        "fingerprint-10KB", ALERTS, sample_bytes(alert_field("fingerprint", "f" * 10_240)), 400, "f"
    ),
    Abuse("nul-fingerprint", ALERTS, sample_bytes(alert_field("fingerprint", "a\x00")), 400, "fi"),
    Abuse("nul-receiver", ALERTS, sample_bytes(top_field("receiver", "\x00")), 400, "receiver"),
    Abuse(
        "nul-label-name",
        ALERTS,
        sample_bytes(alert_field("labels", {"a\x00": "b"})),
        400,
        field="labels",
    ),
    # Bombs: deep nesting anywhere, and bodies of many wrong things under the limit.
    Abuse("deep-body", ALERTS, deep(1_000_000), 400),
    Abuse("deep-in-unknown-field", ALERTS, VALID[:-1] + b', "x": ' + deep(100_000) + b"}", 400),
    Abuse(
        "deep-object",
        ALERTS,
        VALID[:-1] + b', "x": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}",
        400,
    ),
    Abuse("1.3M-empty-alerts", ALERTS, WIDE_ALERTS, 400, field="alerts[0]"),
    Abuse("200k-wrong-labels", ALERTS, WIDE_LABELS, 400, field="labels.k0"),
    # The operator API's body.
    Abuse("pause-deep", PAUSE, deep(100_000), 400),
    Abuse("pause-huge-number", PAUSE, b'{"reason": 1' + b"0" * 10_000 + b"}", 400),
    Abuse("pause-reason-number", PAUSE, b'{"reason": 5}', 400),
    Abuse("pause-nul", PAUSE, b'{"reason": "\\u0000"}', 400),
    Abuse("pause-list", PAUSE, b"[1]", 400),
    Abuse("pause-truncated", PAUSE, b'{"reason": "x', 400),
    Abuse("resume-invalid-utf-8", "/api/v1/resume", b'{"by": "\xff"}', 400),
    Abuse("runs-limit-words", "/api/v1/runs?limit=ten", b"", 400, method="GET"),
    Abuse("runs-limit-huge", "/api/v1/runs?limit=" + "9" * 5_000, b"", 400, method="GET"),
    Abuse("runs-unknown-parameter", "/api/v1/runs?alert=X", b"", 400, method="GET"),
    Abuse("runs-nul-alertname", "/api/v1/runs?alertname=%00", b"", 400, method="GET"),
    Abuse("run-nul-id", "/api/v1/runs/a%00b", b"", 400, method="GET"),
]


def headers_for(abuse: Abuse) -> dict[str, str]:
    headers = credentials(abuse.path, abuse.method)
    if abuse.content_type is not None:
        headers["Content-Type"] = abuse.content_type
    return headers


async def send(session: aiohttp.ClientSession, url: str, abuse: Abuse) -> tuple[int, Any]:
    body = abuse.body() if callable(abuse.body) else io.BytesIO(abuse.body)
    async with session.request(
        abuse.method,
        url + abuse.path,
        data=body if abuse.method == "POST" else None,
        headers=headers_for(abuse),
        skip_auto_headers=["Content-Type"],
    ) as answer:
        text = await answer.text()
        return answer.status, json.loads(
            text
        ) if answer.content_type == "application/json" else text


async def send_raw(url: str, request: bytes) -> int:
    """HTTP the client library would not send: the status line of the answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return int(status_line.split()[1])


RAW_REQUESTS = {
    "bad-chunk-size": b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
    b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "negative-length": b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/json\r\nContent-Length: -1\r\n\r\n",
    "huge-header": b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"a" * 100_000
    + b"\r\n\r\n",
    "not-http": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 64 + b"\r\n\r\n",
}


async def stored_rows(database_url: str) -> dict[str, int]:
    """Rows of every table a request could write, read past the service."""
    tables = ["notifications", "alerts", "alert_events", "pause", "audit_log"]
    if database_url.startswith("sqlite:///"):

        def count() -> dict[str, int]:
            path = database_url.removeprefix("sqlite:///")
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}

        return await asyncio.to_thread(count)
    db = await asyncpg.connect(database_url)
    try:
        return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables}
    finally:
        await db.close()


@pytest.fixture
async def any_store_service(
    tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """The service on SQLite, then on PostgreSQL (conftest's `database_url`)."""
    service = await ServiceProcess.start(
        tmp_path,
        database_url=database_url,
        webhook_token=WEBHOOK_TOKEN,
        api_token=API_TOKEN,
        max_body_bytes=str(MAX_BODY),
    )
    yield service, database_url
    service.stop()


async def abuse_once(session: aiohttp.ClientSession, url: str) -> list[str]:
    """Every abuse once; what was not refused as expected."""
    wrong: list[str] = []
    for abuse in ABUSES:
        status, answer = await send(session, url, abuse)
        problems = answer.get("problems", []) if isinstance(answer, dict) else []
        named = [p["path"] for p in problems if abuse.field in p["path"]]
        if status != abuse.status or (abuse.field and not named):
            wrong.append(f"{abuse.name}: {status} {str(answer)[:300]}")
        elif not (isinstance(answer, dict) and answer.get("error")):
            wrong.append(f"{abuse.name}: {status} without a JSON error: {str(answer)[:300]}")
    for name, request in RAW_REQUESTS.items():
        status = await send_raw(url, request)
        if not 400 <= status < 500:
            wrong.append(f"raw {name}: {status}")
    return wrong


async def test_hand_made_abuse_is_refused_4xx_and_changes_nothing(
    any_store_service: tuple[ServiceProcess, str], figures: Figures
) -> None:
    service, database_url = any_store_service
    before = await stored_rows(database_url)
    async with aiohttp.ClientSession() as session:
        await send(session, service.url, Abuse("warm-up", ALERTS, b"{}", 400))
        memory = Memory.watch(service.process.pid)
        for _ in range(ROUNDS):
            wrong = await abuse_once(session, service.url)
            memory.round_done()
        after = await stored_rows(database_url)
        # The service still works: the same sample, well-formed, is stored once.
        status, answer = await send(session, service.url, Abuse("valid", ALERTS, VALID, 200))
    errors = unhandled(service)
    cases = len(ABUSES) + len(RAW_REQUESTS)
    figures.record(
        SCENARIO,
        expected=EXPECTED,
        figure=f"{cases - len(wrong)} of {cases} hand-made abuses refused 4xx as expected,"
        f" {ROUNDS} rounds"
        f" ({database_url.split(':')[0]}), {len(errors)} unhandled, rows written:"
        f" {sum(after.values()) - sum(before.values())}; {memory}",
        passed=not wrong and not errors and after == before and memory.bounded(),
    )
    assert not wrong, "\n".join(wrong)
    assert not errors, errors[:5]
    assert after == before
    assert memory.bounded(), str(memory)
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
