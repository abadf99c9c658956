"""Game day: the runbooks' incidents played against the policies, scored by their outcomes.

Run it from the repository root:

    .venv/bin/python bench/gameday.py                          # every scenario in bench/scenarios
    .venv/bin/python bench/gameday.py --scenario crash,bad-deploy
    .venv/bin/python bench/gameday.py --scenario my-incident.yaml --policies my-policies/
    .venv/bin/python bench/gameday.py --compress 120 --json gameday.json

Each scenario starts the real service (`python -m remediator serve`, live mode, an embedded
SQLite store) on the policies (the shipped ones unless --policies), with PagerDuty and Slack
pointed at recording HTTP stand-ins and e-mail at an SMTP server of the bench (aiosmtpd). The
world it acts on is bench/gameday_world.py: services on a Kubernetes stand-in whose health
follows their state. A scenario file (YAML, see bench/scenarios/) names the services, what
happens to them and when, and what a good outcome is. The bench plays it, posting Alertmanager
webhooks as the services' state raises and clears alerts, with time compressed (--compress 60:
a game minute is a second; the policies' windows, cooldowns and verification waits are divided
alike, step timeouts are not), then scores what happened to the incident, not the calls made:

- resolved: every service healthy and no alert firing at the end; `min` is the game minutes
  from the first fault until it stayed so;
- pages: the PagerDuty triggers, Slack messages and e-mails sent; `needed` whether the
  scenario needs a person (a P1 is paged at once, a leak needs its developers);
- changes: Kubernetes changes (a restart, an undo, a scale, a pod deleted) and admin calls,
  each judged by the world as it is made: useful when it removes a cause of the trouble (a
  restart clears a crash or a leaking pod, an undo a bad release, a scale-up an overload, the
  slow polling a budget running out), wrong when it does not (a restart while a dependency is
  down, a scale-up against a batch job's CPU);
- harmful: a change to a service with nothing wrong with it (a restore of what a run changed
  aside), a third restart of one service within 30 game minutes (a restart storm), or
  replicas beyond twice what the load needs;
- made worse: a good release rolled back, or fewer replicas than before.

An incident is handled right when it ends resolved (or not) as the scenario expects, pages as
it expects, changes no more than its `max_changes` and leaves the replicas it expects, with no
harmful change and nothing made worse. Targets: every incident handled right, 0 harmful
actions, 0 incidents made worse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fake_kubernetes import KUBECONFIG  # noqa: E402
from tests.support.mailbox import Mailbox  # noqa: E402
from tests.support.notify_recorder import PD_ACCEPTED, Answer, Recorder  # noqa: E402
from tests.support.service_process import ServiceProcess  # noqa: E402
from tests.support.services import free_port  # noqa: E402
from tests.support.stack import fingerprint_of  # noqa: E402

from gameday_world import (  # noqa: E402
    ADMIN_TOKEN,
    Clock,
    Fault,
    ServiceSpec,
    World,
)
from remediator.policy.durations import format_duration, parse_duration  # noqa: E402

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TOKEN = "gameday-webhook-token"
TICK = 0.25  # game minutes between looks at the world
# The keys of the policy files whose durations are game time (windows, waits for an outcome,
# cooldowns): divided by --compress. Step timeouts and waits for a rollout are real time.
GAME_TIME_KEYS = frozenset(
    {
        "resolved_within", "per", "window", "cooldown", "recurs_within", "wait_for_slot",
        "after", "respond_within", "only_if_changed_within", "resolve_after", "run_timeout",
    }
)  # fmt: skip
# In-cluster addresses the shipped policies use, pointed at the service's own stand-in.
ADDRESSES = {"{{ labels.deployment }}.{{ labels.namespace }}.svc:5000": "{{ labels.instance }}"}


# -- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    resolved: bool = True
    paged: bool = False
    max_changes: int | None = None
    max_pages: int | None = None  # messages to people, every channel together
    replicas: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    minutes: float
    services: list[ServiceSpec]
    dependencies: list[str]
    faults: list[Fault]
    expect: Expect


def load_scenario(path: Path) -> Scenario:
    data = yaml.safe_load(path.read_text())
    services = [
        ServiceSpec(
            **{
                **s,
                "releases": tuple(s.get("releases", ("good", "good"))),
                "depends_on": tuple(s.get("depends_on", ())),
            }
        )
        for s in data["services"]
    ]
    return Scenario(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        minutes=float(data["minutes"]),
        services=services,
        dependencies=list(data.get("dependencies", [])),
        faults=sorted((Fault(**f) for f in data.get("faults", [])), key=lambda f: f.at),
        expect=Expect(**data.get("expect", {})),
    )


def scenario_paths(names: str | None) -> list[Path]:
    if not names:
        return sorted(SCENARIOS.glob("*.yaml"))
    found = []
    for name in names.split(","):
        path = Path(name) if name.endswith((".yaml", ".yml")) else SCENARIOS / f"{name}.yaml"
        if not path.is_file():
            raise SystemExit(f"no scenario {name!r}: {path} does not exist")
        found.append(path)
    return found


# -- the policies, time compressed --------------------------------------------------------------


def compressed(value: Any, compress: float, world_url: str) -> Any:
    """A policy file's content with its game-time durations divided by `compress` (at least
    1 s), the in-cluster addresses pointed at the stand-ins, and GitHub's API at the world's."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in GAME_TIME_KEYS and isinstance(item, str):
                seconds = parse_duration(item).total_seconds() / compress
                out[key] = format_duration(parse_duration(f"{max(1, round(seconds))}s"))
            else:
                out[key] = compressed(item, compress, world_url)
        if out.get("action") == "github.rate_limit":
            out["params"] = {**(out.get("params") or {}), "api_url": world_url}
        return out
    if isinstance(value, list):
        return [compressed(item, compress, world_url) for item in value]
    if isinstance(value, str):
        for address, stand_in in ADDRESSES.items():
            value = value.replace(address, stand_in)
    return value


def write_policies(
    source: Path, target: Path, compress: float, world: World, stand_ins: Any
) -> None:
    target.mkdir()
    for path in sorted(source.glob("*.yaml")):
        data = compressed(yaml.safe_load(path.read_text()), compress, world.url)
        if path.name == "escalation.yaml":
            channels = data["channels"]
            channels["pagerduty"]["events_url"] = f"{stand_ins.pagerduty.url}/v2/enqueue"
            channels["email"].update(
                {"smtp_host": "127.0.0.1", "smtp_port": stand_ins.smtp_port,
                 "username_env": None, "password_env": None}
            )  # fmt: skip
        if path.name == "guardrails.yaml":
            # The world's services and GitHub stand-in listen on loopback, which
            # allowed_hosts refuses unless an entry names it: the game day names it.
            data["allowed_hosts"] = [*data.get("allowed_hosts", []), "127.0.0.1"]
        (target / path.name).write_text(yaml.safe_dump(data, sort_keys=False))


# -- the stand-ins and the service ---------------------------------------------------------------


@dataclass
class StandIns:
    pagerduty: Recorder
    slack: Recorder
    mailbox: Mailbox
    smtp_port: int


@contextlib.asynccontextmanager
async def stand_ins() -> AsyncIterator[StandIns]:
    pagerduty = Recorder(Answer(202, PD_ACCEPTED))
    slack = Recorder(Answer(200, "ok"))
    await pagerduty.start()
    await slack.start()
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield StandIns(pagerduty, slack, mailbox, port)
    finally:
        controller.stop()
        await pagerduty.close()
        await slack.close()


async def start_service(directory: Path, world: World, outside: StandIns) -> ServiceProcess:
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(url=world.kubernetes.url))
    os.environ.update(
        {
            "PAGERDUTY_ROUTING_KEY": "gameday-routing-key",
            "SLACK_WEBHOOK_URL": f"{outside.slack.url}/services/T0/B0/gameday",
            "GITHUB_TOKEN": "gameday-github-token",
            "CLAUDE_MANAGER_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )
    return await ServiceProcess.start(
        directory,
        database_url=f"sqlite:///{directory / 'remediator.db'}",
        mode="live",
        webhook_token=TOKEN,
        api_token="gameday-operator-token",
        kubeconfig=str(kubeconfig),
        policies=str(directory / "policies"),
        lease_seconds="5",
    )


# -- playing it ----------------------------------------------------------------------------------


@dataclass
class Track:
    """What the bench saw, each look at the world."""

    firing: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)  # labels, start
    settled_at: float | None = None  # since when nothing fired and every service was healthy
    first_fault: float | None = None


async def play(scenario: Scenario, args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock(args.compress)
    world = World(scenario.services, scenario.dependencies, clock)
    await world.start(free_port())
    track = Track()
    with tempfile.TemporaryDirectory(prefix="gameday-") as tmp:
        directory = Path(tmp)
        async with stand_ins() as outside:
            write_policies(
                Path(args.policies), directory / "policies", args.compress, world, outside
            )
            service = await start_service(directory, world, outside)
            try:
                clock.started = time.monotonic()  # the game starts once the service is up
                async with aiohttp.ClientSession() as session:
                    await run_game(scenario, world, clock, track, session, service.url)
                    await asyncio.sleep(clock.seconds_for(1.0))  # the last messages go out
            finally:
                service.stop()
            initial = {s.name: (len(s.releases), s.replicas) for s in scenario.services}
            result = score(scenario, world, track, outside, initial)
    await world.close()
    return result


async def run_game(
    scenario: Scenario,
    world: World,
    clock: Clock,
    track: Track,
    session: aiohttp.ClientSession,
    url: str,
) -> None:
    faults, now = list(scenario.faults), 0.0
    while now < scenario.minutes:
        while faults and faults[0].at <= now:
            world.apply(faults.pop(0), now)
            track.first_fault = track.first_fault if track.first_fault is not None else now
        world.advance(now, TICK)
        await alert(world, track, session, url, now)
        await asyncio.sleep(max(0.0, clock.seconds_for(now + TICK - clock.minutes())))
        now = clock.minutes()


async def alert(
    world: World, track: Track, session: aiohttp.ClientSession, url: str, now: float
) -> None:
    """Post what started and stopped firing since the last look, as Alertmanager would."""
    firing = {fingerprint_of(labels): labels for labels in world.firing(now)}
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for key, labels in firing.items():
        if key not in track.firing:
            track.firing[key] = (labels, stamp)
            await post(session, url, labels, key, stamp, "firing", stamp)
    for key in [k for k in track.firing if k not in firing]:
        labels, started = track.firing.pop(key)
        await post(session, url, labels, key, started, "resolved", stamp)
    quiet = not track.firing and not any(world.unhealthy(s) for s in world.services.values())
    if not quiet:
        track.settled_at = None
    elif track.settled_at is None and track.first_fault is not None:
        track.settled_at = now


async def post(
    session: aiohttp.ClientSession, url: str, labels: dict[str, str], key: str,
    starts_at: str, status: str, ends_at: str,
) -> None:  # fmt: skip
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{labels['alertname']} on {labels.get('deployment')}"},
        "startsAt": starts_at,
        "endsAt": ends_at if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": key,
    }
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "remediator",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.gameday",
        "alerts": [alert],
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.post(f"{url}/api/v1/alerts", json=body, headers=headers) as answer:
        if answer.status != 200:
            raise RuntimeError(f"the webhook answered {answer.status}: {await answer.text()}")


# -- scoring -------------------------------------------------------------------------------------


def score(
    scenario: Scenario, world: World, track: Track, outside: StandIns,
    initial: dict[str, tuple[int, int]],
) -> dict[str, Any]:  # fmt: skip
    changes = world.changes
    sent = [r.json or {} for r in outside.pagerduty.requests]
    triggers = [event for event in sent if event.get("event_action") == "trigger"]
    pages = {
        "pagerduty": len(triggers),
        "slack": len(outside.slack.requests),
        "email": len(outside.mailbox.received),
    }
    resolved = track.settled_at is not None
    worse = made_worse(world, initial)
    replicas = {s.spec.name: world.replicas(s) for s in world.services.values()}
    wrong = [c for c in changes if not c.useful and not c.restore]
    harmful = [c for c in changes if c.harmful]
    expect = scenario.expect
    checks = {
        "resolved as expected": resolved == expect.resolved,
        "paged as expected": (sum(pages.values()) > 0) == expect.paged,
        "changes within bound": expect.max_changes is None or len(changes) <= expect.max_changes,
        "pages within bound": expect.max_pages is None or sum(pages.values()) <= expect.max_pages,
        "replicas as expected": all(replicas.get(k) == v for k, v in expect.replicas.items()),
        "no harmful change": not harmful,
        "nothing made worse": not worse,
    }
    return {
        "scenario": scenario.name,
        "handled_right": all(checks.values()),
        "checks": checks,
        "resolved": resolved,
        "minutes_to_resolve": None
        if not resolved or track.first_fault is None
        else round((track.settled_at or 0) - track.first_fault, 1),
        "pages": pages,
        "incidents": len({t.get("dedup_key") for t in triggers}),
        "paged_needed": expect.paged,
        "changes": [asdict(c) for c in changes],
        "useful": sum(1 for c in changes if c.useful),
        "wrong": len(wrong),
        "harmful": [f"{c.service}: {c.what}: {c.harmful}" for c in harmful],
        "made_worse": worse,
        "replicas": replicas,
        "oom_kills": sum(s.oom_kills for s in world.services.values()),
        "messages": messages(outside),
    }


def messages(outside: StandIns) -> list[str]:
    """What people were sent, in order per channel: PagerDuty's action and summary, Slack's
    text, each e-mail's Subject."""
    sent = [
        f"pagerduty {e.get('event_action')} {str(e.get('dedup_key'))[-12:]}: "
        f"{(e.get('payload') or {}).get('summary', '')}"
        for e in (r.json or {} for r in outside.pagerduty.requests)
    ]
    sent += [f"slack: {(r.json or {}).get('text', '')[:160]}" for r in outside.slack.requests]
    for envelope, _ in outside.mailbox.received:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        subject = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
        sent.append(f"e-mail: {subject}")
    return sent


def made_worse(world: World, initial: dict[str, tuple[int, int]]) -> list[str]:
    worse = []
    for name, service in world.services.items():
        release, replicas = initial[name]
        good_before = service.releases[release - 1] == "good"
        now_release = world.release(service)
        if now_release < release and good_before and service.releases[now_release - 1] == "good":
            worse.append(f"{name}: good release {release} rolled back to {now_release}")
        if world.replicas(service) < replicas:
            worse.append(f"{name}: {world.replicas(service)} replicas, {replicas} before")
    return worse


# -- the report ----------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | handled right | resolved (game min) | pages sent PD/Slack/e-mail (needed) "
        "| changes (useful/wrong) | harmful | made worse |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        failed = [name for name, ok in r["checks"].items() if not ok]
        right = "yes" if r["handled_right"] else "NO: " + ", ".join(failed)
        resolved = f"yes ({r['minutes_to_resolve']})" if r["resolved"] else "no"
        p = r["pages"]
        pages = (
            f"{p['pagerduty']}/{p['slack']}/{p['email']} ({'yes' if r['paged_needed'] else 'no'})"
        )
        changes = f"{len(r['changes'])} ({r['useful']}/{r['wrong']})"
        lines.append(
            f"| {r['scenario']} | {right} | {resolved} | {pages} | {changes} "
            f"| {len(r['harmful'])} | {len(r['made_worse'])} |"
        )
    return lines


def details(result: dict[str, Any], show_messages: bool) -> list[str]:
    lines = [f"{result['scenario']}:"]
    for change in result["changes"]:
        verdict = "restore" if change["restore"] else "useful" if change["useful"] else "wrong"
        extra = f", HARMFUL: {change['harmful']}" if change["harmful"] else ""
        lines.append(
            f"  {change['at']:6.1f} min  {change['service']}: {change['what']} ({verdict}{extra})"
        )
    lines += [f"  made worse: {w}" for w in result["made_worse"]]
    if show_messages:
        lines += [f"  sent {message}" for message in result["messages"]]
    return lines


async def main(args: argparse.Namespace) -> int:
    results = []
    for path in scenario_paths(args.scenario):
        scenario = load_scenario(path)
        print(f"playing {scenario.name} ({scenario.minutes:g} game minutes) ...", flush=True)
        results.append(await play(scenario, args))
    print(f"\nGame day: {len(results)} scenarios, --compress {args.compress:g}, "
          f"policies {args.policies}\n")  # fmt: skip
    print("\n".join(table(results)))
    print()
    for result in results:
        print("\n".join(details(result, args.messages)))
    harmful = sum(len(r["harmful"]) for r in results)
    worse = sum(len(r["made_worse"]) for r in results)
    right = sum(r["handled_right"] for r in results)
    print(f"\nhandled right {right}/{len(results)}; harmful actions {harmful}; made worse {worse}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0 if right == len(results) and not harmful and not worse else 1


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scenario", help="names in bench/scenarios, or YAML files, comma-separated"
    )
    parser.add_argument("--policies", default=str(ROOT / "policies"), help="the policy directory")
    parser.add_argument("--compress", type=float, default=60.0, help="game minutes a real minute")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--messages", action="store_true", help="list every message sent")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(arguments())))
