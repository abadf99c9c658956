"""Guard state in Redis: shared by every replica, so limits hold across all of them.

Each check-and-update is one Lua script, which Redis runs atomically: two replicas can never
both take the last unit of a budget or both become a breaker's trial run. The scripts apply the
rules of `state.py` (and so behave exactly as `MemoryGuards`), with times from Redis' own
`TIME` so replicas with skewed clocks agree; tests pass a clock instead. A marker key records
that the state was seeded: when Redis restarts empty or is flushed, `admit` raises `Unseeded`
until `seed` has replayed the store's runs. Redis being unreachable raises `GuardsUnavailable`
(fail closed). Run Redis with `maxmemory-policy noeviction`: an evicted key is a lost budget.

Keys, all under the prefix: `seeded`; `seq` (unique rate-log and failure members);
`rate:<limit>` (sorted set, admission times); `reach:<key>` (sorted set, target -> when a run
last changed it, for a blast radius); `breaker:<key>` (hash: state, opened_at,
trial_run, trial_until); `failures:<key>` (sorted set, failure times while closed); `trials`
(hash, breaker key -> its half-open trial run); `slots` (sorted set, run id -> expiry);
`leases` (hash, target -> "token expiry owner"); `fences` (hash, target -> last token);
`finished` (sorted set, run id -> when its outcome was counted: each run counts once).
Scripts read the keys they are given, except `renew`, which follows `trials` to the breaker of
the run's trial: use one Redis server (with replicas if you like), not Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from remediator.guards.base import (
    Attempt,
    BreakerSpec,
    BreakerState,
    BreakerView,
    Budget,
    GuardsUnavailable,
    Lease,
    Limit,
    PastRun,
    Reach,
    ReachView,
    Snapshot,
    Transition,
    Unseeded,
    Verdict,
)
from remediator.guards.state import finished_runs, replay, replay_reaches

_LOG_HORIZON = 7 * 86400.0  # rate-log entries older than this are dropped (as in MemoryGuards)

# Shared by every script. Numbers cross into Redis commands and back to Python as strings with
# 17 significant digits, which round-trip a double exactly (Lua's own tostring keeps only 14).
# An empty clock argument means "use the server's TIME".
_PRELUDE = """
local function num(x) return string.format('%.17g', x) end
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function opt(field)
  if field == false or field == nil or field == '' then return nil end
  return tonumber(field)
end
local function parse_lease(value)
  local token, expires, owner = string.match(value, '^(%d+) (%S+) (.*)$')
  return token, tonumber(expires), owner
end
"""

# Rate limits (every window of every limit), then blast radii, then the breaker, then the
# concurrency cap; takes (a rate-log entry per limit, the target in each blast radius, the
# trial if the breaker lets one through, a slot) only when all allow. A blast radius lets the
# target through when it is already inside the window (not counted again) or fewer than
# `count` targets are. Returns {"unseeded"}, {"allowed", state}, or {guard, state, retry_after,
# ...}. KEYS: seeded, seq, slots, trials, breaker, rate:<limit>..., reach:<key>... ARGV: clock,
# run id, breaker key, cooldown, max concurrent, run ttl, horizon, number of limits, trial ttl,
# target, number of blast radii, then per limit: number of windows, then max and per of each;
# then per blast radius: count and per.
_ADMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unseeded'} end
local now = clock(ARGV[1])
local run_id, breaker_key = ARGV[2], ARGV[3]
local cooldown, cap, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local horizon, limits, trial_ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local b = redis.call('HMGET', KEYS[5], 'state', 'opened_at', 'trial_until', 'trial_run')
local state = b[1] or 'closed'

local target, reaches = ARGV[10], tonumber(ARGV[11])
local at = 12
for i = 1, limits do
  local log = KEYS[5 + i]
  redis.call('ZREMRANGEBYSCORE', log, '-inf', num(now - horizon))
  local windows, counts, wait = tonumber(ARGV[at]), {}, nil
  at = at + 1
  for w = 1, windows do
    local max, per = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
    at = at + 2
    local lo, hi = '(' .. num(now - per), num(now)
    local inside = redis.call('ZCOUNT', log, lo, hi)
    counts[w] = inside
    if inside >= max then
      -- the oldest entry that must leave before the window has room again
      local leaves = redis.call('ZRANGEBYSCORE', log, lo, hi, 'WITHSCORES',
        'LIMIT', inside - max, 1)
      local this_wait = tonumber(leaves[2]) + per - now
      if wait == nil or this_wait > wait then wait = this_wait end
    end
  end
  if wait ~= nil then return {'rate_limit', state, num(wait), i, counts} end
end

for j = 1, reaches do
  local set = KEYS[5 + limits + j]
  local count, per = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  at = at + 2
  redis.call('ZREMRANGEBYSCORE', set, '-inf', num(now - horizon))
  local lo, hi = '(' .. num(now - per), num(now)
  local mine = opt(redis.call('ZSCORE', set, target))
  local again = mine ~= nil and mine > now - per and mine <= now
  local inside = redis.call('ZCOUNT', set, lo, hi)
  if not again and inside >= count then
    local changed = redis.call('ZRANGEBYSCORE', set, lo, hi, 'WITHSCORES')
    local leaves = tonumber(changed[2 * (inside - count) + 2])
    return {'blast_radius', state, num(leaves + per - now), j, changed}
  end
end

local trial = false
local own_trial = state == 'half_open' and b[4] == run_id
if state ~= 'closed' and not own_trial then
  local trial_until = opt(b[3])
  if state == 'half_open' and trial_until ~= nil and trial_until > now then
    return {'circuit_breaker', state, num(trial_until - now)}
  end
  local reopens = tonumber(b[2]) + cooldown
  if state == 'open' and now < reopens then
    return {'circuit_breaker', state, num(reopens - now)}
  end
  trial = true  -- cooldown over, or a trial that lapsed unfinished: this run is the trial
end

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(now))
local in_flight = redis.call('ZCARD', KEYS[3])
if in_flight >= cap then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  local wait = ''
  if first[2] then wait = num(tonumber(first[2]) - now) end
  return {'concurrency', state, wait, in_flight}
end

for i = 1, limits do
  local seq = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[5 + i], num(now), seq .. ':' .. run_id)
end
for j = 1, reaches do
  redis.call('ZADD', KEYS[5 + limits + j], num(now), target)
end
if trial then
  state = 'half_open'
  redis.call('HSET', KEYS[5], 'state', state, 'trial_run', run_id,
    'trial_until', num(now + trial_ttl))
  redis.call('HSET', KEYS[4], breaker_key, run_id)
end
redis.call('ZADD', KEYS[3], num(now + ttl), run_id)
return {'allowed', state}
"""

# Frees the run's slot and counts its outcome: while closed a failure joins the failures in the
# window and opens the breaker at `failures`; while open or half-open only the trial's outcome
# counts (success closes, failure reopens; a trial that tried nothing lapses). A run already
# counted (a retry whose first attempt landed after all, or one the seed replayed) changes
# nothing. Returns {state before, after}.
# KEYS: seq, slots, trials, breaker, failures, finished. ARGV: clock, run id, breaker key,
# succeeded ("1"/"0", "" when it tried nothing), failures, window, horizon.
_FINISH = """
local now = clock(ARGV[1])
local run_id, breaker_key, succeeded = ARGV[2], ARGV[3], ARGV[4] == '1'
local failed = ARGV[4] == '0'
local threshold, window = tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZREM', KEYS[2], run_id)
local b = redis.call('HMGET', KEYS[4], 'state', 'trial_run')
local before = b[1] or 'closed'
local after = before
if redis.call('ZSCORE', KEYS[6], run_id) then return {before, after} end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', num(now - tonumber(ARGV[7])))
redis.call('ZADD', KEYS[6], num(now), run_id)
if before ~= 'closed' then
  if b[2] == run_id and not (succeeded or failed) then
    redis.call('HDEL', KEYS[4], 'trial_until')
  elseif b[2] == run_id then
    redis.call('DEL', KEYS[4], KEYS[5])
    redis.call('HDEL', KEYS[3], breaker_key)
    after = 'closed'
    if not succeeded then
      after = 'open'
      redis.call('HSET', KEYS[4], 'state', after, 'opened_at', num(now))
    end
  end
elseif failed then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', num(now - window))
  redis.call('ZADD', KEYS[5], num(now), redis.call('INCR', KEYS[1]) .. ':' .. run_id)
  if redis.call('ZCARD', KEYS[5]) >= threshold then
    redis.call('DEL', KEYS[5])
    after = 'open'
    redis.call('HSET', KEYS[4], 'state', after, 'opened_at', num(now))
  end
end
return {before, after}
"""

# Extends a lease still held (same token, not expired), the run's slot, and the deadline of a
# half-open trial the run is (never shortening it). Returns the new expiry, or nil when the
# lease was lost.
# KEYS: leases, slots, trials. ARGV: clock, run id, target, token, owner, ttl, breaker prefix.
_RENEW = """
local now = clock(ARGV[1])
local run_id, target, token, owner = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local current = redis.call('HGET', KEYS[1], target)
if not current then return false end
local held, expires, holder = parse_lease(current)
if held ~= token or holder ~= owner or expires <= now then return false end
local expiry = num(now + tonumber(ARGV[6]))
redis.call('HSET', KEYS[1], target, token .. ' ' .. expiry .. ' ' .. owner)
redis.call('ZADD', KEYS[2], expiry, run_id)
local trials = redis.call('HGETALL', KEYS[3])
for i = 1, #trials, 2 do
  if trials[i + 1] == run_id then
    local breaker = ARGV[7] .. trials[i]
    local until_now = opt(redis.call('HGET', breaker, 'trial_until'))
    if until_now == nil or until_now < tonumber(expiry) then
      redis.call('HSET', breaker, 'trial_until', expiry)
    end
  end
end
return expiry
"""

# Takes a target's lease unless an unexpired one of another owner exists; the token comes
# from a per-target counter that outlives every lease, so each new holder's token is larger
# than the last.
# KEYS: leases, fences. ARGV: clock, target, owner, ttl. Returns {token, expiry} or nil.
_ACQUIRE = """
local now = clock(ARGV[1])
local target, owner = ARGV[2], ARGV[3]
local current = redis.call('HGET', KEYS[1], target)
if current then
  local _, expires, holder = parse_lease(current)
  if expires > now and holder ~= owner then return false end
end
local token = redis.call('HINCRBY', KEYS[2], target, 1)
local expiry = num(now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], target, token .. ' ' .. expiry .. ' ' .. owner)
return {token, expiry}
"""

# The fencing check: 1 when the target's lease has this token and owner and has not expired.
# The owner (a run id) is compared too: after a flush the counter restarts, and a new holder
# could reach an old holder's token number.
# KEYS: leases. ARGV: clock, target, token, owner.
_HOLDS = """
local current = redis.call('HGET', KEYS[1], ARGV[2])
if not current then return 0 end
local token, expires, owner = parse_lease(current)
if token == ARGV[3] and owner == ARGV[4] and expires > clock(ARGV[1]) then return 1 end
return 0
"""

# The run's steps are done: frees its slot under the cap (the owner is the run), and drops the
# target's lease if it is still this one (a newer holder's stays).
# KEYS: leases, slots. ARGV: target, token, owner.
_RELEASE = """
redis.call('ZREM', KEYS[2], ARGV[3])
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local token, _, owner = parse_lease(current)
if token == ARGV[2] and owner == ARGV[3] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

# Writes the rate logs and breakers replayed from the store, once: the marker is set with NX in
# the same atomic step, so a second replica seeding at the same time changes nothing. Returns
# 1 when it seeded. KEYS: seeded, seq, trials, finished, then rate:<limit> per log, then
# breaker and failures per breaker. ARGV: number of logs, then per log: count and times;
# number of breakers, then per breaker: key, state, opened_at, trial_run, trial_until ("" for
# none), count and failure times; then the number of finished runs, and each run's id and
# finish time (their outcomes are in the replay: not to be counted again); then the number of
# blast radii (their keys follow the breakers'), per blast radius: count, then target and
# time of each.
_SEED = """
if not redis.call('SET', KEYS[1], '1', 'NX') then return 0 end
local at, k = 1, 5
local logs = tonumber(ARGV[at])
at = at + 1
for i = 1, logs do
  local log, n = KEYS[k], tonumber(ARGV[at])
  k, at = k + 1, at + 1
  redis.call('DEL', log)
  for j = 1, n do
    redis.call('ZADD', log, ARGV[at], redis.call('INCR', KEYS[2]) .. ':seed')
    at = at + 1
  end
end
local breakers = tonumber(ARGV[at])
at = at + 1
for i = 1, breakers do
  local hash, failures = KEYS[k], KEYS[k + 1]
  local key, state, trial_run = ARGV[at], ARGV[at + 1], ARGV[at + 3]
  local fields = {'opened_at', ARGV[at + 2], 'trial_run', trial_run, 'trial_until', ARGV[at + 4]}
  local n = tonumber(ARGV[at + 5])
  k, at = k + 2, at + 6
  redis.call('DEL', hash, failures)
  redis.call('HDEL', KEYS[3], key)
  redis.call('HSET', hash, 'state', state)
  for f = 1, #fields, 2 do
    if fields[f + 1] ~= '' then redis.call('HSET', hash, fields[f], fields[f + 1]) end
  end
  if state == 'half_open' then redis.call('HSET', KEYS[3], key, trial_run) end
  for j = 1, n do
    redis.call('ZADD', failures, ARGV[at], redis.call('INCR', KEYS[2]) .. ':seed')
    at = at + 1
  end
end
local finished = tonumber(ARGV[at])
at = at + 1
for i = 1, finished do
  redis.call('ZADD', KEYS[4], ARGV[at + 1], ARGV[at])
  at = at + 2
end
local reaches = tonumber(ARGV[at])
at = at + 1
for i = 1, reaches do
  local set, n = KEYS[k], tonumber(ARGV[at])
  k, at = k + 1, at + 1
  redis.call('DEL', set)
  for j = 1, n do
    redis.call('ZADD', set, ARGV[at + 1], ARGV[at])
    at = at + 2
  end
end
return 1
"""

# A consistent read of budgets, blast radii, breakers, leases and slots at one instant.
# KEYS: slots, leases, rate:<limit> per limit, breaker and failures per breaker, reach:<key>
# per blast radius. ARGV: clock, number of limits, per limit: number of windows and each per;
# number of breakers, per breaker: window; number of blast radii, per blast radius: per.
# Returns {now, counts per limit, breakers, leases, in flight, targets per blast radius}.
_SNAPSHOT = """
local now = clock(ARGV[1])
local at, k = 2, 3
local limits = tonumber(ARGV[at])
at = at + 1
local budgets = {}
for i = 1, limits do
  local windows, counts = tonumber(ARGV[at]), {}
  at = at + 1
  for w = 1, windows do
    counts[w] = redis.call('ZCOUNT', KEYS[k], '(' .. num(now - tonumber(ARGV[at])), num(now))
    at = at + 1
  end
  budgets[i] = counts
  k = k + 1
end
local breakers = {}
local count = tonumber(ARGV[at])
for i = 1, count do
  local b = redis.call('HMGET', KEYS[k], 'state', 'opened_at', 'trial_until')
  local recent = redis.call('ZCOUNT', KEYS[k + 1], '(' .. num(now - tonumber(ARGV[at + i])), '+inf')
  breakers[i] = {b[1] or 'closed', recent, b[2] or '', b[3] or ''}
  k = k + 2
end
at = at + count + 1
local reaches = {}
for i = 1, tonumber(ARGV[at]) do
  local lo = '(' .. num(now - tonumber(ARGV[at + i]))
  reaches[i] = redis.call('ZRANGEBYSCORE', KEYS[k], lo, num(now), 'WITHSCORES')
  k = k + 1
end
local leases = {}
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local token, expires, owner = parse_lease(all[i + 1])
  if expires > now then
    table.insert(leases, {all[i], owner, token, num(expires)})
  end
end
local in_flight = redis.call('ZCOUNT', KEYS[1], '(' .. num(now), '+inf')
return {num(now), budgets, breakers, leases, in_flight, reaches}
"""

# The health check: a script, as every guard decision is one. PING alone still answers while
# scripts wait (CLIENT PAUSE WRITE, say), and every remediation would then be blocked unseen.
_PING = "return 1"

# Errors that mean "Redis cannot be reached or will not take writes": fail closed on them.
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (loading its dataset)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after a failover
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ClusterDownError,  # includes MasterDownError
    redis.exceptions.TryAgainError,
    OSError,  # includes the builtin (and asyncio) TimeoutError
)


class RedisGuards:
    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = "remediator:",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._admit = client.register_script(_PRELUDE + _ADMIT)
        self._finish = client.register_script(_PRELUDE + _FINISH)
        self._renew = client.register_script(_PRELUDE + _RENEW)
        self._acquire = client.register_script(_PRELUDE + _ACQUIRE)
        self._holds = client.register_script(_PRELUDE + _HOLDS)
        self._release = client.register_script(_PRELUDE + _RELEASE)
        self._seed = client.register_script(_PRELUDE + _SEED)
        self._snapshot = client.register_script(_PRELUDE + _SNAPSHOT)
        self._ping = client.register_script(_PING)

    @classmethod
    async def connect(
        cls, url: str, prefix: str = "remediator:", *, socket_timeout: float = 2.0
    ) -> RedisGuards:
        """A client that gives up quickly: one retry (for a stale connection), short timeouts."""
        client = redis.asyncio.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, prefix)

    async def admit(self, attempt: Attempt) -> Verdict:
        spec = attempt.breaker
        keys = [
            self._key("seeded"),
            self._key("seq"),
            self._key("slots"),
            self._key("trials"),
            self._key("breaker:", spec.key),
            *(self._key("rate:", limit.key) for limit in attempt.limits),
            *(self._key("reach:", reach.key) for reach in attempt.reaches),
        ]
        args: list[str] = [
            self._now(),
            attempt.run_id,
            spec.key,
            _num(spec.cooldown),
            str(attempt.max_concurrent),
            _num(attempt.run_ttl),
            _num(_LOG_HORIZON),
            str(len(attempt.limits)),
            _num(attempt.trial_for),
            attempt.target,
            str(len(attempt.reaches)),
        ]
        for limit in attempt.limits:
            args.append(str(len(limit.windows)))
            for window in limit.windows:
                args += [str(window.max), _num(window.per)]
        for reach in attempt.reaches:
            args += [str(reach.count), _num(reach.per)]
        reply = await self._call(self._admit(keys, args), "admit")
        outcome = _text(reply[0])
        if outcome == "unseeded":
            raise Unseeded(f"no guard state under {self._prefix!r} in Redis: seed it")
        state = BreakerState(_text(reply[1]))
        if outcome == "allowed":
            return Verdict(True, breaker=state)
        wait = _float_or_none(reply[2])
        # The same detail text as MemoryGuards, word for word.
        if outcome == "rate_limit":
            limit = attempt.limits[int(reply[3]) - 1]
            spent = ", ".join(
                f"{int(count)}/{window.max} in {window.per:g}s"
                for count, window in zip(reply[4], limit.windows, strict=True)
            )
            detail = f"rate limit {limit.key} spent: {spent}"
        elif outcome == "blast_radius":
            reach = attempt.reaches[int(reply[3]) - 1]
            changed = _pairs(reply[4])
            targets = ", ".join(target for target, _ in changed)
            detail = (
                f"blast radius {reach.key} spent: {len(changed)}/{reach.count} in"
                f" {reach.per:g}s: {targets}"
            )
            return Verdict(False, outcome, detail, wait, state, reach, changed)
        elif outcome == "circuit_breaker":
            detail = f"circuit breaker {spec.key} is {state}"
        else:
            detail = f"{int(reply[3])} runs in flight, the cap is {attempt.max_concurrent}"
        return Verdict(False, outcome, detail, wait, state)

    async def finish(self, run_id: str, breaker: BreakerSpec, succeeded: bool | None) -> Transition:
        keys = [
            self._key("seq"),
            self._key("slots"),
            self._key("trials"),
            self._key("breaker:", breaker.key),
            self._key("failures:", breaker.key),
            self._key("finished"),
        ]
        args = [
            self._now(),
            run_id,
            breaker.key,
            "" if succeeded is None else "1" if succeeded else "0",
            str(breaker.failures),
            _num(breaker.window),
            _num(_LOG_HORIZON),
        ]
        before, after = await self._call(self._finish(keys, args), "finish")
        return Transition(breaker.key, BreakerState(_text(before)), BreakerState(_text(after)))

    async def renew(self, run_id: str, lease: Lease, ttl: float) -> Lease | None:
        keys = [self._key("leases"), self._key("slots"), self._key("trials")]
        args = [
            self._now(),
            run_id,
            lease.target,
            str(lease.token),
            lease.owner,
            _num(ttl),
            self._key("breaker:"),
        ]
        expiry = await self._call(self._renew(keys, args), "renew")
        if expiry is None:
            return None
        return Lease(lease.target, lease.owner, lease.token, float(expiry))

    async def acquire_lease(self, target: str, owner: str, ttl: float) -> Lease | None:
        keys = [self._key("leases"), self._key("fences")]
        reply = await self._call(
            self._acquire(keys, [self._now(), target, owner, _num(ttl)]), "acquire_lease"
        )
        if reply is None:
            return None
        token, expiry = reply
        return Lease(target, owner, int(token), float(expiry))

    async def holds(self, lease: Lease) -> bool:
        args = [self._now(), lease.target, str(lease.token), lease.owner]
        return bool(await self._call(self._holds([self._key("leases")], args), "holds"))

    async def release_lease(self, lease: Lease) -> None:
        args = [lease.target, str(lease.token), lease.owner]
        keys = [self._key("leases"), self._key("slots")]
        await self._call(self._release(keys, args), "release_lease")

    async def seed(self, history: Sequence[PastRun]) -> None:
        logs, breakers = replay(history)
        keys = [self._key("seeded"), self._key("seq"), self._key("trials"), self._key("finished")]
        args = [str(len(logs))]
        for key, times in logs.items():
            keys.append(self._key("rate:", key))
            args += [str(len(times)), *(_num(at) for at in sorted(times))]
        args.append(str(len(breakers)))
        for key, record in breakers.items():
            keys += [self._key("breaker:", key), self._key("failures:", key)]
            args += [
                key,
                record.state.value,
                _num_or_empty(record.opened_at),
                record.trial_run or "",
                _num_or_empty(record.trial_until),
                str(len(record.failures)),
                *(_num(at) for at in record.failures),
            ]
        finished = finished_runs(history)
        args.append(str(len(finished)))
        for run_id, at in finished.items():
            args += [run_id, _num(at)]
        reaches = replay_reaches(history)
        args.append(str(len(reaches)))
        for key, changed in reaches.items():
            keys.append(self._key("reach:", key))
            args.append(str(len(changed)))
            for target, at in changed.items():
                args += [target, _num(at)]
        await self._call(self._seed(keys, args), "seed")

    async def snapshot(
        self,
        limits: Sequence[Limit],
        breakers: Sequence[BreakerSpec],
        reaches: Sequence[Reach] = (),
    ) -> Snapshot:
        keys = [self._key("slots"), self._key("leases")]
        args = [self._now(), str(len(limits))]
        for limit in limits:
            keys.append(self._key("rate:", limit.key))
            args += [str(len(limit.windows)), *(_num(window.per) for window in limit.windows)]
        args.append(str(len(breakers)))
        for spec in breakers:
            keys += [self._key("breaker:", spec.key), self._key("failures:", spec.key)]
            args.append(_num(spec.window))
        args.append(str(len(reaches)))
        for reach in reaches:
            keys.append(self._key("reach:", reach.key))
            args.append(_num(reach.per))
        now, counts, views, leases, in_flight, changed = await self._call(
            self._snapshot(keys, args), "snapshot"
        )
        budgets = {
            limit.key: tuple(
                Budget(window, int(count))
                for window, count in zip(limit.windows, per_limit, strict=True)
            )
            for limit, per_limit in zip(limits, counts, strict=True)
        }
        breaker_views = {
            spec.key: BreakerView(
                BreakerState(_text(state)),
                int(recent),
                _float_or_none(opened_at),
                _float_or_none(trial_until),
            )
            for spec, (state, recent, opened_at, trial_until) in zip(breakers, views, strict=True)
        }
        held = tuple(
            Lease(_text(target), _text(owner), int(token), float(expiry))
            for target, owner, token, expiry in leases
        )
        radii = {
            reach.key: ReachView(reach, _pairs(entries))
            for reach, entries in zip(reaches, changed, strict=True)
        }
        return Snapshot(float(now), breaker_views, budgets, held, int(in_flight), radii)

    async def ping(self) -> None:
        """Redis runs the guards' scripts now: what every decision needs."""
        await self._call(self._ping([], []), "ping")

    def shadow(self) -> RedisGuards:
        return RedisGuards(self._client, f"{self._prefix}shadow:", self._clock)

    async def close(self) -> None:
        await self._client.aclose()

    def _key(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}{kind}{name}"

    def _now(self) -> str:
        """The clock argument of every script: empty means Redis' TIME."""
        return "" if self._clock is None else _num(self._clock())

    async def _call(self, pending: Awaitable[Any], what: str) -> Any:
        try:
            return await pending
        except _UNAVAILABLE as exc:
            raise GuardsUnavailable(f"guard state in Redis is unavailable ({what}): {exc}") from exc
        except redis.exceptions.ResponseError as exc:
            if str(exc).startswith("MISCONF"):  # persistence failing: Redis refuses writes
                raise GuardsUnavailable(f"Redis refuses writes ({what}): {exc}") from exc
            raise


def _num(value: float) -> str:
    """A float as text that Lua's tonumber reads back as the same double."""
    return repr(float(value))


def _num_or_empty(value: float | None) -> str:
    return "" if value is None else _num(value)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _float_or_none(value: str | bytes) -> float | None:
    text = _text(value)
    return float(text) if text else None


def _pairs(reply: Sequence[str | bytes]) -> tuple[tuple[str, float], ...]:
    """A ZRANGE ... WITHSCORES reply as (member, score) pairs, in its order (oldest first)."""
    pairs = zip(reply[0::2], reply[1::2], strict=True)
    return tuple((_text(member), float(score)) for member, score in pairs)
