"""The `postgres.*` actions against the real local PostgreSQL (REMEDIATOR_TEST_POSTGRES, default
127.0.0.1:5432/test, trust auth; with CI=true its absence is a failure).

The victims are real sessions this test opens, idle or running a real `pg_sleep(60)`, each under
an application_name unique to the test, and every step is filtered by it (or by
'remediator', whose sessions are never signalled), so other sessions on the same server are
never touched. Nothing is backdated: thresholds are 0s or 1s and the test polls
pg_stat_activity until its sessions have been idle or running that long.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from remediator.actions.base import Outcome, StepContext, StepResult, Transient
from remediator.actions.postgres import PostgresActions
from remediator.engine.plan import RenderedTarget
from remediator.policy.parameters import (
    CATALOGUE,
    DIAGNOSTIC,
    CancelLongQueries,
    ConnectionReport,
    TerminateIdleConnections,
)
from tests.support.services import POSTGRES_ADMIN_DSN, free_port, missing_service

Connection = asyncpg.Connection  # (asyncpg.Connection[Record] is only a type)
DSN_ENV = "PG_UNDER_TEST"
ACTIONS = PostgresActions()


def context(*, dry_run: bool = False) -> StepContext:
    return StepContext(
        RenderedTarget("Application", "db", None, None, None), dry_run, datetime.now(UTC)
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 15) -> None:
    """Poll until `check` holds (no blind sleeps: each round asks the server again)."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Sessions:
    """Connections this test opens, under application names of its own, and the server's view."""

    def __init__(self, admin: Connection, dsn: str = POSTGRES_ADMIN_DSN) -> None:
        self.admin, self.dsn = admin, dsn
        self.tag = f"victim-{uuid.uuid4().hex[:12]}"
        self.opened: list[Connection] = []
        self.queries: list[asyncio.Task[str]] = []

    async def open(self, application_name: str | None = None, dsn: str | None = None) -> Connection:
        connection: Connection = await asyncpg.connect(
            dsn or self.dsn,
            timeout=5,
            server_settings={"application_name": application_name or self.tag},
        )
        self.opened.append(connection)
        return connection

    async def open_idle(self, count: int, application_name: str | None = None) -> list[Connection]:
        return [await self.open(application_name) for _ in range(count)]

    def sleep(self, connection: Connection) -> asyncio.Task[str]:
        task = asyncio.create_task(connection.execute("SELECT pg_sleep(60)"))
        self.queries.append(task)
        return task

    async def activity(self, connections: list[Connection]) -> dict[int, asyncpg.Record]:
        rows = await self.admin.fetch(
            """SELECT pid, state, query,
                      extract(epoch FROM now() - state_change)::float8 AS in_state,
                      extract(epoch FROM now() - query_start)::float8 AS running
               FROM pg_stat_activity WHERE pid = ANY($1::int[])""",
            [c.get_server_pid() for c in connections],
        )
        return {row["pid"]: row for row in rows}

    async def wait_in_state(
        self, connections: list[Connection], state: str, longer_than: float
    ) -> None:
        async def held() -> bool:
            rows = await self.activity(connections)
            return len(rows) == len(connections) and all(
                row["state"] == state and row["in_state"] > longer_than for row in rows.values()
            )

        await eventually(held, f"{len(connections)} sessions {state} for over {longer_than}s")

    async def wait_sleeping(self, connections: list[Connection], longer_than: float) -> None:
        async def running() -> bool:
            rows = await self.activity(connections)
            return len(rows) == len(connections) and all(
                row["state"] == "active"
                and "pg_sleep(60)" in row["query"]
                and row["running"] > longer_than
                for row in rows.values()
            )

        await eventually(running, f"{len(connections)} pg_sleep queries over {longer_than}s")

    async def wait_gone(self, connections: list[Connection]) -> None:
        async def gone() -> bool:
            return not await self.activity(connections) and all(c.is_closed() for c in connections)

        await eventually(gone, f"{len(connections)} sessions to end")

    async def alive(self, connection: Connection) -> bool:
        """Still connected, and still answering."""
        if connection.is_closed() or not await self.activity([connection]):
            return False
        return bool(await connection.fetchval("SELECT 1") == 1)

    async def close(self) -> None:
        running = [q for q in self.queries if not q.done()]
        if running:
            await self.admin.execute(
                "SELECT pg_cancel_backend(pid) FROM unnest($1::int[]) AS pid",
                [c.get_server_pid() for c in self.opened if not c.is_closed()],
            )
        await asyncio.gather(*self.queries, return_exceptions=True)
        for connection in self.opened:
            if not connection.is_closed():
                try:
                    await connection.close(timeout=5)
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    connection.terminate()


@pytest.fixture
async def admin() -> AsyncIterator[Connection]:
    try:
        connection: Connection = await asyncpg.connect(
            POSTGRES_ADMIN_DSN, timeout=5, command_timeout=30
        )
    except (OSError, asyncpg.PostgresError) as exc:
        missing_service(
            f"PostgreSQL at {POSTGRES_ADMIN_DSN} ({exc})",
            "start one with trust auth and a database `test`, or set REMEDIATOR_TEST_POSTGRES",
        )
    yield connection
    await connection.close()


@pytest.fixture
async def sessions(admin: Connection, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sessions]:
    monkeypatch.setenv(DSN_ENV, POSTGRES_ADMIN_DSN)
    opened = Sessions(admin)
    try:
        yield opened
    finally:
        await opened.close()


def terminate_idle(**params: Any) -> TerminateIdleConnections:
    return TerminateIdleConnections.model_validate({"dsn_env": DSN_ENV, **params})


def cancel_long(**params: Any) -> CancelLongQueries:
    return CancelLongQueries.model_validate({"dsn_env": DSN_ENV, **params})


def pids(result: StepResult) -> set[int]:
    return {backend["pid"] for backend in result.data["backends"]}


def test_the_catalogue_knows_the_postgres_actions() -> None:
    names = {name for name in CATALOGUE if name.startswith("postgres.")}
    assert names == set(ACTIONS.actions())
    assert CATALOGUE["postgres.terminate_idle_connections"].mutating
    assert CATALOGUE["postgres.cancel_long_queries"].mutating
    assert not CATALOGUE["postgres.connection_report"].mutating
    assert "postgres.connection_report" in DIAGNOSTIC
    assert terminate_idle(idle_for="5m").max_terminate == 20
    assert TerminateIdleConnections.model_validate({"idle_for": "5m"}).dsn_env == "DATABASE_URL"
    assert cancel_long(running_for="90s").running_for.total_seconds() == 90
    assert not cancel_long(running_for="90s").terminate
    assert ConnectionReport().long_running.total_seconds() == 60


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"dsn_env": "REMEDIATOR_DATABASE_URL"}, "REMEDIATOR_\\* variables are the service's own"),
        ({"dsn_env": "postgres://x"}, "expected the name of an environment variable"),
        ({"max_terminate": 0}, "greater than or equal to 1"),
        ({"idle_for": "soon"}, "expected a duration"),
        ({"terminate": True}, "Extra inputs are not permitted"),
    ],
)
def test_parameters_are_checked(params: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        TerminateIdleConnections.model_validate({"idle_for": "5m", **params})


async def test_terminates_idle_connections_of_the_application_up_to_the_cap(
    sessions: Sessions,
) -> None:
    victims = await sessions.open_idle(3)
    bystander = await sessions.open(f"{sessions.tag}-other")
    await sessions.wait_in_state([*victims, bystander], "idle", longer_than=1)

    params = terminate_idle(idle_for="1s", application_name=sessions.tag, max_terminate=2)
    result = await ACTIONS.terminate_idle_connections(params, context())

    assert result.outcome is Outcome.OK, result.message
    assert result.data["matched"] == 3
    assert result.data["more_matching"] == 1
    assert result.data["signalled"] == 2
    assert "1 more matched, over max_terminate 2" in result.message
    terminated = [v for v in victims if v.get_server_pid() in pids(result)]
    assert len(terminated) == 2
    assert all(
        b["signalled"] and b["application_name"] == sessions.tag for b in result.data["backends"]
    )
    assert all(b["state"] == "idle" and b["seconds"] >= 1 for b in result.data["backends"])
    await sessions.wait_gone(terminated)
    [spared] = [v for v in victims if v not in terminated]
    assert await sessions.alive(spared)
    assert await sessions.alive(bystander)

    # the next run takes the one left over; the bystander's application never matched
    await sessions.wait_in_state([spared], "idle", longer_than=1)
    again = await ACTIONS.terminate_idle_connections(params, context())
    assert again.data["signalled"] == 1
    assert pids(again) == {spared.get_server_pid()}
    assert again.data["more_matching"] == 0
    await sessions.wait_gone([spared])
    assert await sessions.alive(bystander)


async def test_dry_run_lists_what_it_would_terminate_and_touches_nothing(
    sessions: Sessions,
) -> None:
    victims = await sessions.open_idle(3)
    await sessions.wait_in_state(victims, "idle", longer_than=1)

    params = terminate_idle(idle_for="1s", application_name=sessions.tag, max_terminate=2)
    result = await ACTIONS.terminate_idle_connections(params, context(dry_run=True))

    assert result.outcome is Outcome.DRY_RUN
    assert result.message.startswith("would terminate 2 connections idle longer than 1s")
    assert result.data["matched"] == 3
    assert result.data["more_matching"] == 1
    assert len(pids(result)) == 2
    assert pids(result) < {v.get_server_pid() for v in victims}
    assert all(b["signalled"] is None for b in result.data["backends"])
    for victim in victims:
        assert await sessions.alive(victim)


async def test_database_and_user_filters_narrow_the_match(
    sessions: Sessions, admin: Connection
) -> None:
    victims = await sessions.open_idle(2)
    await sessions.wait_in_state(victims, "idle", longer_than=0)
    me = await admin.fetchval("SELECT current_user")
    other_database = await admin.fetchval(
        "SELECT datname FROM pg_database WHERE datname <> current_database() LIMIT 1"
    )

    for narrower in [{"database": other_database}, {"user": f"nobody-{sessions.tag}"}]:
        params = terminate_idle(idle_for="0s", application_name=sessions.tag, **narrower)
        result = await ACTIONS.terminate_idle_connections(params, context())
        assert result.outcome is Outcome.OK
        assert result.data["matched"] == 0, narrower
        assert result.message == "no connections idle longer than 0s"
    for victim in victims:
        assert await sessions.alive(victim)

    await sessions.wait_in_state(victims, "idle", longer_than=0)
    params = terminate_idle(idle_for="0s", application_name=sessions.tag, database="test", user=me)
    result = await ACTIONS.terminate_idle_connections(params, context())
    assert result.data["signalled"] == 2
    assert pids(result) == {v.get_server_pid() for v in victims}
    assert {(b["datname"], b["usename"]) for b in result.data["backends"]} == {("test", me)}
    await sessions.wait_gone(victims)


async def test_idle_in_transaction_only_when_the_policy_asks(sessions: Sessions) -> None:
    [in_transaction] = await sessions.open_idle(1)
    transaction = in_transaction.transaction()
    await transaction.start()
    await in_transaction.execute("SELECT 1")
    await sessions.wait_in_state([in_transaction], "idle in transaction", longer_than=0)

    params = terminate_idle(idle_for="0s", application_name=sessions.tag)
    result = await ACTIONS.terminate_idle_connections(params, context())
    assert result.data["matched"] == 0
    assert await sessions.activity([in_transaction])

    asked = terminate_idle(
        idle_for="0s", application_name=sessions.tag, include_idle_in_transaction=True
    )
    result = await ACTIONS.terminate_idle_connections(asked, context())
    assert result.data["signalled"] == 1
    assert result.data["backends"][0]["state"] == "idle in transaction"
    await sessions.wait_gone([in_transaction])


async def test_the_remediators_own_sessions_are_never_signalled(sessions: Sessions) -> None:
    """Other sessions named 'remediator' (another replica, say) and the step's own connection."""
    idle = await sessions.open("remediator")
    busy = await sessions.open("remediator")
    query = sessions.sleep(busy)
    await sessions.wait_in_state([idle], "idle", longer_than=0)
    await sessions.wait_sleeping([busy], longer_than=0)

    everything_named = {"application_name": "remediator", "max_terminate": 1000}
    result = await ACTIONS.terminate_idle_connections(
        terminate_idle(idle_for="0s", include_idle_in_transaction=True, **everything_named),
        context(),
    )
    assert (result.outcome, result.data["matched"]) == (Outcome.OK, 0)
    for terminate in (False, True):
        result = await ACTIONS.cancel_long_queries(
            cancel_long(
                running_for="0s",
                terminate=terminate,
                application_name="remediator",
                max_cancel=1000,
            ),
            context(),
        )
        assert (result.outcome, result.data["matched"]) == (Outcome.OK, 0)

    # the step's own connection: active while it runs its statement, and it names itself
    # 'remediator' even when the DSN asks for another name
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DSN_ENV, f"{POSTGRES_ADMIN_DSN}?application_name={sessions.tag}")
        result = await ACTIONS.cancel_long_queries(
            cancel_long(running_for="0s", terminate=True, application_name=sessions.tag),
            context(),
        )
    assert (result.outcome, result.data["matched"]) == (Outcome.OK, 0), result.message

    assert not query.done()
    assert await sessions.activity([busy])
    assert await sessions.alive(idle)


async def test_cancel_ends_the_query_and_keeps_the_session(sessions: Sessions) -> None:
    victim, bystander = await sessions.open(), await sessions.open(f"{sessions.tag}-other")
    query, untouched = sessions.sleep(victim), sessions.sleep(bystander)
    await sessions.wait_sleeping([victim, bystander], longer_than=1)

    params = cancel_long(running_for="1s", application_name=sessions.tag)
    result = await ACTIONS.cancel_long_queries(params, context())

    assert result.outcome is Outcome.OK, result.message
    assert result.message.startswith("cancelled 1 of 1 queries running longer than 1s")
    assert result.data["signal"] == "cancel"
    [backend] = result.data["backends"]
    assert backend["pid"] == victim.get_server_pid()
    assert backend["query"] == "SELECT pg_sleep(60)"
    assert backend["seconds"] >= 1
    with pytest.raises(asyncpg.QueryCanceledError):
        await query
    assert await sessions.alive(victim)
    assert not untouched.done()
    assert (await sessions.activity([bystander]))[bystander.get_server_pid()]["state"] == "active"


async def test_terminate_true_ends_the_session(sessions: Sessions) -> None:
    victim = await sessions.open()
    query = sessions.sleep(victim)
    await sessions.wait_sleeping([victim], longer_than=1)

    params = cancel_long(running_for="1s", application_name=sessions.tag, terminate=True)
    result = await ACTIONS.cancel_long_queries(params, context())

    assert result.outcome is Outcome.OK, result.message
    assert result.message.startswith("terminated 1 of 1 queries")
    assert result.data["signal"] == "terminate"
    with pytest.raises((asyncpg.AdminShutdownError, asyncpg.ConnectionDoesNotExistError)):
        await query
    await sessions.wait_gone([victim])


async def test_cancel_dry_run_and_cap(sessions: Sessions) -> None:
    victims = [await sessions.open() for _ in range(3)]
    queries = [sessions.sleep(victim) for victim in victims]
    await sessions.wait_sleeping(victims, longer_than=0)

    params = cancel_long(running_for="0s", application_name=sessions.tag, max_cancel=2)
    rehearsal = await ACTIONS.cancel_long_queries(params, context(dry_run=True))
    assert rehearsal.outcome is Outcome.DRY_RUN
    assert rehearsal.message.startswith("would cancel 2 queries running longer than 0s")
    assert (rehearsal.data["matched"], rehearsal.data["more_matching"]) == (3, 1)
    assert not any(q.done() for q in queries)
    assert len(await sessions.activity(victims)) == 3

    running = await sessions.activity(victims)
    longest = sorted(running, key=lambda pid: running[pid]["running"], reverse=True)[:2]
    result = await ACTIONS.cancel_long_queries(params, context())
    assert (result.data["signalled"], result.data["more_matching"]) == (2, 1)
    assert pids(result) == set(longest)  # the longest-running first
    by_pid = {v.get_server_pid(): q for v, q in zip(victims, queries, strict=True)}
    cancelled = [by_pid[pid] for pid in pids(result)]
    for cancelled_query in cancelled:
        with pytest.raises(asyncpg.QueryCanceledError):
            await cancelled_query
    [left] = [q for q in queries if q not in cancelled]
    assert not left.done()


async def test_connection_report(sessions: Sessions, admin: Connection) -> None:
    table = f"locked_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE TABLE public.{table} (id int)")
    try:
        await _report_shows_everything(sessions, admin, table)
    finally:
        await sessions.close()
        await admin.execute(f"DROP TABLE public.{table}")


async def _report_shows_everything(sessions: Sessions, admin: Connection, table: str) -> None:
    idle = await sessions.open_idle(2)
    holder, waiter = await sessions.open(), await sessions.open()
    holding = holder.transaction()
    await holding.start()
    await holder.execute(f"LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE")
    waiting = asyncio.create_task(waiter.fetch(f"SELECT * FROM public.{table}"))
    sessions.queries.append(waiting)

    async def awaited() -> bool:
        return bool(
            await admin.fetchval(
                "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
                waiter.get_server_pid(),
            )
        )

    await eventually(awaited, "the waiter's lock request")
    await sessions.wait_in_state(idle, "idle", longer_than=0)

    params = ConnectionReport.model_validate(
        {"dsn_env": DSN_ENV, "long_running": "0s", "limit": 10_000}
    )
    result = await ACTIONS.connection_report(params, context(dry_run=True))

    assert result.outcome is Outcome.OK, result.message
    data = result.data
    max_connections = int(await admin.fetchval("SHOW max_connections"))
    assert data["max_connections"] == max_connections
    assert data["connections"] == sum(data["by_state"].values()) >= 4
    assert data["used_share"] == round(data["connections"] / max_connections, 3)
    assert data["by_state"]["idle"] >= 2
    assert data["by_state"]["active"] >= 2  # the waiter, and the report's own statement
    assert data["by_state"]["idle in transaction"] >= 1  # the holder
    me = await admin.fetchval("SELECT current_user")
    [mine] = [c for c in data["by_client"] if c["application_name"] == sessions.tag]
    assert mine == {
        "application_name": sessions.tag,
        "client_addr": "127.0.0.1",
        "usename": me,
        "connections": 4,
        "active": 1,
        "idle": 2,
        "idle_in_transaction": 1,
    }
    assert f"{data['connections']} of {max_connections} connections used" in result.message

    [slow] = [q for q in data["long_running"] if q["pid"] == waiter.get_server_pid()]
    assert slow["state"] == "active"
    assert slow["query"] == f"SELECT * FROM public.{table}"
    assert slow["wait_event_type"] == "Lock"
    assert slow["seconds"] >= 0

    [lock] = [lock for lock in data["ungranted_locks"] if lock["pid"] == waiter.get_server_pid()]
    assert lock["blocked_by"] == [holder.get_server_pid()]
    assert lock["relation"] in (table, f"public.{table}")
    assert lock["mode"] == "AccessShareLock"
    assert lock["application_name"] == sessions.tag
    [blocker] = [b for b in data["blockers"] if b["pid"] == holder.get_server_pid()]
    assert blocker["state"] == "idle in transaction"
    assert blocker["query"] == f"LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE"

    await holding.rollback()
    assert await waiting == []


async def test_a_long_query_shows_with_its_first_200_characters(sessions: Sessions) -> None:
    victim = await sessions.open()
    padding = "x" * 300
    query = asyncio.create_task(victim.execute(f"SELECT pg_sleep(60), '{padding}'"))
    sessions.queries.append(query)

    async def running() -> bool:
        rows = await sessions.activity([victim])
        return any(r["state"] == "active" and "pg_sleep" in r["query"] for r in rows.values())

    await eventually(running, "the long query")
    params = ConnectionReport.model_validate(
        {"dsn_env": DSN_ENV, "long_running": "0s", "limit": 10_000}
    )
    result = await ACTIONS.connection_report(params, context())
    [slow] = [q for q in result.data["long_running"] if q["pid"] == victim.get_server_pid()]
    assert slow["query"] == f"SELECT pg_sleep(60), '{padding}'"[:200]


async def test_a_role_without_the_right_may_not_signal_a_superusers_sessions(
    sessions: Sessions, admin: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A least-privileged remediator role: it signals its own role's sessions, and says which
    sessions it may not signal instead of failing the whole statement half-way."""
    if not await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        pytest.skip("needs a superuser to create a role")
    role = f"remediator_test_{uuid.uuid4().hex[:12]}"
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    await admin.execute(f"GRANT pg_read_all_stats TO {role}")
    try:
        role_dsn = POSTGRES_ADMIN_DSN.replace("://", f"://{role}@", 1)
        monkeypatch.setenv(DSN_ENV, role_dsn)
        superusers = await sessions.open_idle(1)
        own_role = await sessions.open(dsn=role_dsn)
        await sessions.wait_in_state([*superusers, own_role], "idle", longer_than=0)

        params = terminate_idle(idle_for="0s", application_name=sessions.tag)
        result = await ACTIONS.terminate_idle_connections(params, context())

        assert result.outcome is Outcome.FAILED
        assert result.data["signalled"] == 1
        assert f"not permitted to signal pids {superusers[0].get_server_pid()}" in result.message
        assert f"grant the role in {DSN_ENV} pg_signal_backend" in result.message
        by_pid = {b["pid"]: b for b in result.data["backends"]}
        assert by_pid[superusers[0].get_server_pid()]["permitted"] is False
        assert by_pid[own_role.get_server_pid()]["signalled"] is True
        await sessions.wait_gone([own_role])
        assert await sessions.alive(superusers[0])
    finally:
        await sessions.close()
        await admin.execute(f"DROP ROLE {role}")


async def test_a_missing_variable_or_a_bad_dsn_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DSN_ENV, raising=False)
    for action, params in [
        (ACTIONS.terminate_idle_connections, terminate_idle(idle_for="1m")),
        (ACTIONS.cancel_long_queries, cancel_long(running_for="1m")),
        (ACTIONS.connection_report, ConnectionReport.model_validate({"dsn_env": DSN_ENV})),
    ]:
        result = await action(params, context())
        assert result.outcome is Outcome.FAILED
        assert (
            result.message
            == f"{DSN_ENV} is not set: it must hold the DSN of the database to act on"
        )

    for dsn in ["mysql://app:hunter2@db/app", "postgresql://app:hunter2@db:port/app", "hunter2"]:
        monkeypatch.setenv(DSN_ENV, dsn)
        result = await ACTIONS.connection_report(
            ConnectionReport.model_validate({"dsn_env": DSN_ENV}), context()
        )
        assert result.outcome is Outcome.FAILED
        assert result.message.startswith(f"{DSN_ENV} does not hold a valid PostgreSQL DSN")
        assert "hunter2" not in f"{result.message}{result.data}"


async def test_a_refused_login_fails_and_an_unreachable_server_is_transient(
    admin: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    nobody = POSTGRES_ADMIN_DSN.replace("://", f"://nobody_{uuid.uuid4().hex[:8]}:hunter2@", 1)
    monkeypatch.setenv(DSN_ENV, nobody)
    result = await ACTIONS.terminate_idle_connections(terminate_idle(idle_for="1m"), context())
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith(f"the database in {DSN_ENV} refused the connection: role")
    assert "hunter2" not in result.message

    monkeypatch.setenv(DSN_ENV, f"postgresql://app:hunter2@127.0.0.1:{free_port()}/test")
    with pytest.raises(Transient, match=f"cannot connect to the database in {DSN_ENV}") as raised:
        await ACTIONS.cancel_long_queries(cancel_long(running_for="1m"), context())
    assert "hunter2" not in str(raised.value)


async def test_a_server_that_never_answers_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connect timeout (`timeout`) is worth retrying, as the server may just be swamped."""
    ended = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()
        ended.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv(DSN_ENV, f"postgresql://app:hunter2@127.0.0.1:{port}/test")
    params = ConnectionReport.model_validate({"dsn_env": DSN_ENV, "timeout": "1s"})
    async with server:
        with pytest.raises(
            Transient, match=f"cannot connect to the database in {DSN_ENV}"
        ) as raised:
            await ACTIONS.connection_report(params, context())
        await asyncio.wait_for(ended.wait(), 5)
    assert "hunter2" not in str(raised.value)
