"""PostgreSQL actions for connection exhaustion and slow queries, through asyncpg to a DSN that
an environment variable names (`dsn_env`, e.g. DATABASE_URL).

- `postgres.terminate_idle_connections`: `pg_terminate_backend` on sessions idle (and, if asked,
  idle in a transaction) for longer than `idle_for`;
- `postgres.cancel_long_queries`: `pg_cancel_backend` on queries active for longer than
  `running_for`, or `pg_terminate_backend` when the policy sets `terminate: true`;
- `postgres.connection_report`: a read for the escalation: connections by state and by client,
  `max_connections` and the share used, long-running queries, ungranted locks and who holds them.

Only client backends are ever signalled (never autovacuum, WAL senders or other background
processes), and never the remediator's own sessions: this step's connection, which is named
`application_name = 'remediator'`, and any other session with that name. Each step opens one
connection and closes it. Backends are chosen and signalled in one statement, oldest first, at
most `max_terminate` / `max_cancel` of them; dry-run runs the same selection and signals nothing.

A connection refused, reset or timed out is Transient (the runner retries); a missing variable,
a malformed DSN or the server refusing our credentials is a failed step saying which variable
to fix. No message or datum ever holds the DSN or its password.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import asyncpg

from remediator.actions.base import (
    Action,
    StepContext,
    StepResult,
    Transient,
    dry_run,
    failed,
    ok,
)
from remediator.policy.durations import format_duration
from remediator.policy.parameters import (
    CancelLongQueries,
    ConnectionReport,
    TerminateIdleConnections,
)

APPLICATION_NAME = "remediator"
"""Our sessions' application_name; no session of that name is ever signalled."""

if TYPE_CHECKING:
    Connection = asyncpg.Connection[asyncpg.Record]

# Worth retrying: the server is unreachable, restarting, full, or the statement timed out.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,
)

# The backends a step may signal. $1 database, $2 user, $3 application_name (each NULL: any),
# $4 states, $5 the threshold, $6 the cap. `{since}` is state_change or query_start.
_CANDIDATES = """
    SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr, state,
           extract(epoch FROM now() - {since})::float8 AS seconds,
           left(query, 200) AS query,
           current_setting('is_superuser')::bool
             OR (NOT coalesce((SELECT rolsuper FROM pg_roles r WHERE r.oid = a.usesysid), false)
                 AND (pg_has_role(a.usesysid, 'USAGE')
                      OR pg_has_role('pg_signal_backend', 'USAGE'))) AS permitted,
           count(*) OVER () AS matched
    FROM pg_stat_activity a
    WHERE backend_type = 'client backend'
      AND pid <> pg_backend_pid()
      AND application_name IS DISTINCT FROM '{own}'
      AND ($1::text IS NULL OR datname = $1)
      AND ($2::text IS NULL OR usename = $2)
      AND ($3::text IS NULL OR application_name = $3)
      AND state = ANY($4::text[])
      AND {since} < now() - $5::interval
    ORDER BY {since}
    LIMIT $6
"""
_SIGNAL = """
    WITH chosen AS MATERIALIZED ({candidates})
    SELECT *, CASE WHEN permitted THEN {function}(pid) ELSE false END AS signalled FROM chosen
"""
_LIST = "SELECT *, NULL::bool AS signalled FROM ({candidates}) chosen"


def _statements(since: str) -> dict[str | None, str]:
    """By signal function (None: dry-run), the statement; assembled from constants only."""
    candidates = _CANDIDATES.format(since=since, own=APPLICATION_NAME)
    return {
        None: _LIST.format(candidates=candidates),
        **{
            function: _SIGNAL.format(candidates=candidates, function=function)
            for function in ("pg_cancel_backend", "pg_terminate_backend")
        },
    }


_IDLE = _statements("state_change")
_ACTIVE = _statements("query_start")

_REPORT_SETTINGS = """
    SELECT current_setting('max_connections')::int AS max_connections,
           current_setting('superuser_reserved_connections')::int AS superuser_reserved
"""
_REPORT_STATES = """
    SELECT coalesce(state, 'unknown') AS state, count(*) AS connections
    FROM pg_stat_activity WHERE backend_type = 'client backend'
    GROUP BY 1 ORDER BY 2 DESC, 1
"""
_REPORT_CLIENTS = """
    SELECT application_name, host(client_addr) AS client_addr, usename,
           count(*) AS connections,
           count(*) FILTER (WHERE state = 'active') AS active,
           count(*) FILTER (WHERE state = 'idle') AS idle,
           count(*) FILTER (WHERE state LIKE 'idle in transaction%') AS idle_in_transaction,
           count(*) OVER () AS clients
    FROM pg_stat_activity WHERE backend_type = 'client backend'
    GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3
    LIMIT $1
"""
_REPORT_LONG = """
    SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr, state,
           extract(epoch FROM now() - query_start)::float8 AS seconds,
           wait_event_type, wait_event, left(query, 200) AS query,
           count(*) OVER () AS matched
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
      AND state <> 'idle' AND query_start < now() - $1::interval
    ORDER BY query_start
    LIMIT $2
"""
_REPORT_LOCKS = """
    SELECT l.pid, l.locktype, l.mode,
           CASE WHEN l.relation IS NOT NULL AND l.database =
                     (SELECT oid FROM pg_database WHERE datname = current_database())
                THEN l.relation::regclass::text ELSE l.relation::text END AS relation,
           a.datname, a.usename, a.application_name,
           extract(epoch FROM now() - a.query_start)::float8 AS seconds,
           left(a.query, 200) AS query,
           pg_blocking_pids(l.pid) AS blocked_by,
           count(*) OVER () AS matched
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE NOT l.granted
    ORDER BY a.query_start, l.pid
    LIMIT $1
"""
_REPORT_BLOCKERS = """
    SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr, state,
           extract(epoch FROM now() - xact_start)::float8 AS transaction_seconds,
           left(query, 200) AS query
    FROM pg_stat_activity WHERE pid = ANY($1::int[])
    ORDER BY xact_start NULLS LAST, pid
"""

_BACKEND_FIELDS = ("pid", "datname", "usename", "application_name", "client_addr", "state")


@dataclass(frozen=True)
class _Selection:
    """Which backends a step signals, and how it speaks of them."""

    statements: dict[str | None, str]
    function: str  # pg_cancel_backend or pg_terminate_backend
    database: str | None
    user: str | None
    application_name: str | None
    states: list[str]
    threshold: timedelta
    cap: int
    cap_name: str
    what: str
    variable: str

    def arguments(self) -> tuple[object, ...]:
        return (
            self.database,
            self.user,
            self.application_name,
            self.states,
            self.threshold,
            self.cap,
        )


class PostgresActions:
    def actions(self) -> dict[str, Action]:
        return {
            "postgres.terminate_idle_connections": self.terminate_idle_connections,
            "postgres.cancel_long_queries": self.cancel_long_queries,
            "postgres.connection_report": self.connection_report,
        }

    async def terminate_idle_connections(
        self, params: TerminateIdleConnections, context: StepContext
    ) -> StepResult:
        states = ["idle"]
        if params.include_idle_in_transaction:
            states += ["idle in transaction", "idle in transaction (aborted)"]
        selection = _Selection(
            _IDLE,
            "pg_terminate_backend",
            params.database,
            params.user,
            params.application_name,
            states,
            params.idle_for,
            params.max_terminate,
            "max_terminate",
            f"connections idle longer than {format_duration(params.idle_for)}",
            params.dsn_env,
        )
        return await _session(
            params.dsn_env,
            params.timeout.total_seconds(),
            lambda connection: _signal(connection, selection, dry=context.dry_run),
        )

    async def cancel_long_queries(
        self, params: CancelLongQueries, context: StepContext
    ) -> StepResult:
        selection = _Selection(
            _ACTIVE,
            "pg_terminate_backend" if params.terminate else "pg_cancel_backend",
            params.database,
            params.user,
            params.application_name,
            ["active"],
            params.running_for,
            params.max_cancel,
            "max_cancel",
            f"queries running longer than {format_duration(params.running_for)}",
            params.dsn_env,
        )
        return await _session(
            params.dsn_env,
            params.timeout.total_seconds(),
            lambda connection: _signal(connection, selection, dry=context.dry_run),
        )

    async def connection_report(self, params: ConnectionReport, context: StepContext) -> StepResult:
        """A read: it runs in dry-run too, and its data rides along with the escalation."""
        return await _session(
            params.dsn_env,
            params.timeout.total_seconds(),
            lambda connection: _report(connection, params),
        )


async def _session(
    variable: str, seconds: float, work: Callable[[Connection], Awaitable[StepResult]]
) -> StepResult:
    """Connect to the DSN in `variable` (once), do the work, close."""
    dsn = os.environ.get(variable, "").strip()
    if not dsn:
        return failed(f"{variable} is not set: it must hold the DSN of the database to act on")
    redact = _redactor(dsn)
    where = f"the database in {variable}"
    try:
        connection: Connection = await asyncpg.connect(
            dsn,
            timeout=seconds,
            command_timeout=seconds,
            server_settings={"application_name": APPLICATION_NAME},
        )
    except _TRANSIENT as exc:
        raise Transient(redact(f"cannot connect to {where}: {_describe(exc)}")) from exc
    except (ValueError, asyncpg.InterfaceError) as exc:
        # The parser's message may quote the DSN: name the variable and the kind of error only.
        return failed(f"{variable} does not hold a valid PostgreSQL DSN ({type(exc).__name__})")
    except asyncpg.PostgresError as exc:
        return failed(redact(f"{where} refused the connection: {_describe(exc)}"))
    try:
        return await work(connection)
    except _TRANSIENT as exc:
        raise Transient(redact(f"{where}: {_describe(exc)}")) from exc
    except asyncpg.PostgresError as exc:
        return failed(redact(f"{where}: {_describe(exc)}"))
    finally:
        await _close(connection, seconds)


async def _close(connection: Connection, seconds: float) -> None:
    try:
        await connection.close(timeout=seconds)
    except asyncio.CancelledError:
        connection.terminate()
        raise
    except Exception:  # a broken connection: drop it without the goodbye
        connection.terminate()


async def _signal(connection: Connection, selection: _Selection, *, dry: bool) -> StepResult:
    """Choose the backends and, unless dry, signal them: one statement, one snapshot."""
    statement = selection.statements[None if dry else selection.function]
    rows = await connection.fetch(statement, *selection.arguments())
    terminate = selection.function == "pg_terminate_backend"
    verb, done = ("terminate", "terminated") if terminate else ("cancel", "cancelled")
    matched = int(rows[0]["matched"]) if rows else 0
    data: dict[str, Any] = {
        "signal": verb,
        "matched": matched,
        "more_matching": matched - len(rows),
        "backends": [_backend(row) for row in rows],
    }
    if not rows:
        return ok(f"no {selection.what}", signalled=0, **data)
    pids = ", ".join(str(row["pid"]) for row in rows)
    over = (
        f"; {data['more_matching']} more matched, over {selection.cap_name} {selection.cap}"
        if data["more_matching"]
        else ""
    )
    if dry:
        return dry_run(f"would {verb} {len(rows)} {selection.what} (pids {pids}){over}", **data)
    signalled = sum(1 for row in rows if row["signalled"])
    refused = [str(row["pid"]) for row in rows if not row["permitted"]]
    ended = len(rows) - signalled - len(refused)
    message = f"{done} {signalled} of {len(rows)} {selection.what} (pids {pids})"
    if ended:
        message += f"; {ended} had already ended"
    message += over
    if refused:
        return failed(
            f"{message}; not permitted to signal pids {', '.join(refused)}: grant the role in "
            f"{selection.variable} pg_signal_backend (only a superuser may signal a superuser's)",
            signalled=signalled,
            **data,
        )
    return ok(message, signalled=signalled, **data)


def _backend(row: asyncpg.Record) -> dict[str, Any]:
    backend = {name: row[name] for name in _BACKEND_FIELDS}
    backend["seconds"] = round(float(row["seconds"]), 1)
    backend["query"] = row["query"]
    backend["signalled"] = row["signalled"]
    if not row["permitted"]:
        backend["permitted"] = False
    return backend


async def _report(connection: Connection, params: ConnectionReport) -> StepResult:
    async with connection.transaction(readonly=True):  # one snapshot of pg_stat_activity
        settings = await connection.fetchrow(_REPORT_SETTINGS)
        states = await connection.fetch(_REPORT_STATES)
        clients = await connection.fetch(_REPORT_CLIENTS, params.limit)
        long_running = await connection.fetch(_REPORT_LONG, params.long_running, params.limit)
        locks = await connection.fetch(_REPORT_LOCKS, params.limit)
        blocking = sorted({pid for lock in locks for pid in lock["blocked_by"]})
        blockers = await connection.fetch(_REPORT_BLOCKERS, blocking) if blocking else []
    assert settings is not None  # a SELECT without FROM returns one row
    by_state = {row["state"]: int(row["connections"]) for row in states}
    total = sum(by_state.values())
    max_connections = int(settings["max_connections"])
    data: dict[str, Any] = {
        "connections": total,
        "max_connections": max_connections,
        "superuser_reserved_connections": int(settings["superuser_reserved"]),
        "used_share": round(total / max_connections, 3),
        "by_state": by_state,
        "by_client": [_client(row) for row in clients],
        "clients": int(clients[0]["clients"]) if clients else 0,
        "long_running_over": format_duration(params.long_running),
        "long_running": [_long_query(row) for row in long_running],
        "long_running_count": int(long_running[0]["matched"]) if long_running else 0,
        "ungranted_locks": [_lock(row) for row in locks],
        "ungranted_lock_count": int(locks[0]["matched"]) if locks else 0,
        "blockers": [_blocker(row) for row in blockers],
    }
    states_text = ", ".join(f"{count} {state}" for state, count in by_state.items())
    message = (
        f"{total} of {max_connections} connections used ({data['used_share']:.0%})"
        f"{': ' + states_text if states_text else ''}; "
        f"{data['long_running_count']} queries running longer than {data['long_running_over']}; "
        f"{data['ungranted_lock_count']} ungranted locks"
    )
    return ok(message, **data)


def _client(row: asyncpg.Record) -> dict[str, Any]:
    names = ("application_name", "client_addr", "usename")
    counts = ("connections", "active", "idle", "idle_in_transaction")
    return {name: row[name] for name in names} | {name: int(row[name]) for name in counts}


def _long_query(row: asyncpg.Record) -> dict[str, Any]:
    query = {name: row[name] for name in _BACKEND_FIELDS}
    return query | {
        "seconds": round(float(row["seconds"]), 1),
        "wait_event_type": row["wait_event_type"],
        "wait_event": row["wait_event"],
        "query": row["query"],
    }


def _lock(row: asyncpg.Record) -> dict[str, Any]:
    names = ("pid", "locktype", "mode", "relation", "datname", "usename", "application_name")
    lock = {name: row[name] for name in names}
    return lock | {
        "waiting_seconds": round(float(row["seconds"]), 1) if row["seconds"] is not None else None,
        "query": row["query"],
        "blocked_by": list(row["blocked_by"]),
    }


def _blocker(row: asyncpg.Record) -> dict[str, Any]:
    blocker = {name: row[name] for name in _BACKEND_FIELDS}
    seconds = row["transaction_seconds"]
    return blocker | {
        "transaction_seconds": round(float(seconds), 1) if seconds is not None else None,
        "query": row["query"],
    }


def _redactor(dsn: str) -> Callable[[str], str]:
    """Blank out the DSN and its password wherever an error message might repeat them."""
    secrets = [dsn]
    try:
        password = urlsplit(dsn).password
    except ValueError:
        password = None
    if password:
        secrets += [password, unquote(password)]

    def redact(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
