"""What users deploy, each file checked by the tool that reads it and against the code it serves.

Kubernetes manifests (deploy/kubernetes/) against the API's schemas (kubernetes-validate, strict)
and the actions' calls; Alertmanager's configuration with amtool and a real Alertmanager posting
to the service; the alert rules with promtool and the shipped policies; the compose stack with
docker-compose; the image's Dockerfile with dockerfile-parse.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from remediator.alerts import Alert, AlertStatus
from remediator.config import Settings, env_name
from remediator.engine.decide import decide
from remediator.engine.plan import Plan
from remediator.policy.loader import load_policies
from remediator.policy.policyset import PolicySet
from remediator.store import open_store
from tests.support.alertmanager import running_alertmanager
from tests.support.policies import SHIPPED_POLICIES
from tests.support.service_process import ServiceProcess, eventually
from tests.support.services import missing_service

ROOT = Path(__file__).resolve().parents[1]
KUBERNETES = ROOT / "deploy" / "kubernetes"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = PROMETHEUS / "rules.test.yml"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_TOKEN = ROOT / "deploy" / "compose" / "remediator-webhook-token"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUBERNETES_ACTIONS = ROOT / "service" / "remediator" / "actions" / "kubernetes.py"

# The oldest Kubernetes release still commonly run, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.33", "1.37")
SECRET_TEMPLATES = "secrets.example.yaml"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# (API group, resource, verb): what the shipped actions need, and not one more.
LEAST_PRIVILEGE = {
    ("apps", "deployments", "get"),
    ("apps", "deployments", "patch"),
    ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "patch"),
    ("apps", "replicasets", "list"),
    ("", "pods", "get"),
    ("", "pods", "list"),
    ("", "pods", "delete"),
    ("", "configmaps", "get"),
    ("", "configmaps", "patch"),
    ("", "events", "list"),
}
# What kubernetes.node_status reads, the one cluster-wide grant (a ClusterRole): a Node, and the
# pods on it in every namespace. Reads only.
CLUSTER_READS = {
    ("", "nodes", "get"),
    ("", "pods", "list"),
}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def tool(name: str, how: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing_service(f"`{name}`", how)
    assert found is not None
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def policy_alertnames() -> dict[str, str]:
    """alertname -> policy name, from each shipped policy's `alertname="..."` matcher."""
    names: dict[str, str] = {}
    for path in sorted(SHIPPED_POLICIES.glob("*.yaml")):
        document = load(path)
        for matcher in document.get("match", []):
            found = re.fullmatch(r'alertname="([^"]+)"', matcher)
            if found:
                names[found.group(1)] = document["name"]
    return names


# --- Kubernetes ------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def applied() -> list[dict[str, Any]]:
    """Every object `kubectl apply -k deploy/kubernetes` creates."""
    kustomization = load(KUBERNETES / "kustomization.yaml")
    return [doc for name in kustomization["resources"] for doc in load_all(KUBERNETES / name)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in applied() if doc["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    found = of_kind(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def main_container() -> dict[str, Any]:
    (container,) = pod_spec()["containers"]
    assert isinstance(container, dict)
    return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def manifests() -> list[Any]:
    return [
        pytest.param(doc, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}")
        for path in manifest_files()
        for doc in load_all(path)
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifest", manifests())
def test_every_manifest_is_valid_for_the_kubernetes_api_in_strict_mode(
    manifest: dict[str, Any], version: str
) -> None:
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(
            f"{manifest['kind']}/{manifest['metadata']['name']}: {exc.message} at {exc.path}"
        )


def test_kustomize_applies_every_manifest_except_the_secret_templates() -> None:
    kustomization = load(KUBERNETES / "kustomization.yaml")
    expected = {path.name for path in manifest_files()} - {SECRET_TEMPLATES}
    assert set(kustomization["resources"]) == expected
    assert len(kustomization["resources"]) == len(expected), "a manifest is listed twice"
    # A kustomization-wide namespace would move the Roles out of the namespaces they grant.
    assert "namespace" not in kustomization
    images = {image["name"] for image in kustomization["images"]}
    containers = pod_spec()["containers"] + pod_spec()["initContainers"]
    assert {container["image"].split(":")[0] for container in containers} == images


def test_each_allowed_namespace_has_a_role_with_exactly_the_least_privilege_rules(
    shipped: PolicySet,
) -> None:
    allowed = shipped.guardrails.allowed_namespaces
    for namespace in allowed:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace), (
            f"allowed_namespaces entry {namespace!r} is a pattern: RBAC needs one Role and "
            "RoleBinding per namespace it stands for (deploy/kubernetes/rbac.yaml)"
        )
    roles = of_kind("Role")
    assert sorted(role["metadata"]["namespace"] for role in roles) == sorted(allowed)
    for role in roles:
        where, rules = role["metadata"]["namespace"], granted(role)
        assert rules == LEAST_PRIVILEGE, (
            f"in {where}: extra {sorted(rules - LEAST_PRIVILEGE)}, "
            f"missing {sorted(LEAST_PRIVILEGE - rules)}"
        )
        assert all("nonResourceURLs" not in rule for rule in role["rules"])


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of each rule of a Role or ClusterRole."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_one_cluster_role_grants_only_the_node_reads_to_remediator_only() -> None:
    role = one("ClusterRole")
    assert granted(role) == CLUSTER_READS, (
        f"cluster-wide: extra {sorted(granted(role) - CLUSTER_READS)}, "
        f"missing {sorted(CLUSTER_READS - granted(role))}"
    )
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames, no URLs"
        assert set(rule["verbs"]) <= {"get", "list"}, "cluster-wide, Remediator only reads"
    binding = one("ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one("ServiceAccount")["metadata"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    assert "namespace" not in role["metadata"]
    assert "namespace" not in binding["metadata"]


def test_each_role_is_bound_to_remediators_service_account_only() -> None:
    account = one("ServiceAccount")["metadata"]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind("Role")}
    bindings = of_kind("RoleBinding")
    bound = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in bindings}
    assert bound == roles
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
    assert pod_spec()["serviceAccountName"] == account["name"]
    assert one("Deployment")["metadata"]["namespace"] == account["namespace"]


def kubernetes_calls() -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """(group, resource, verb) of every API call in the Kubernetes actions' source: those in a
    namespace (`read_namespaced_pod`), and those across the cluster (`read_node`, a
    cluster-scoped object; `list_pod_for_all_namespaces`)."""
    source = KUBERNETES_ACTIONS.read_text()
    calls = re.findall(r"self\._(apps|core)\.(\w+)\(", source)
    verbs = {"read": "get", "list": "list", "patch": "patch", "delete": "delete"}
    verbs |= {"create": "create", "replace": "update"}
    namespaced: set[tuple[str, str, str]] = set()
    cluster: set[tuple[str, str, str]] = set()
    for api, method in calls:
        parsed = re.fullmatch(
            r"(read|list|patch|delete|create|replace)_(namespaced_)?(\w+?)(_for_all_namespaces)?",
            method,
        )
        assert parsed, f"self._{api}.{method}: map this call to its RBAC verb in {__file__}"
        verb, in_namespace, kind, all_namespaces = parsed.groups()
        assert kind in {"node"} or in_namespace or all_namespaces, (
            f"self._{api}.{method}: is {kind} cluster-scoped? Add it here, and to CLUSTER_READS"
        )
        resource = kind.replace("_", "") + "s"
        if kind.endswith("_scale"):
            resource = kind.removesuffix("_scale").replace("_", "") + "s/scale"
        call = ("apps" if api == "apps" else "", resource, verbs[verb])
        (namespaced if in_namespace else cluster).add(call)
    return namespaced, cluster


def test_every_call_the_kubernetes_actions_make_is_granted() -> None:
    namespaced, cluster = kubernetes_calls()
    assert len(namespaced) >= 10, f"too few API calls to be the actions' source: {namespaced}"
    for role in of_kind("Role"):
        missing = namespaced - granted(role)
        assert not missing, f"a 403 waiting to happen in {role['metadata']['namespace']}: {missing}"
    # Cluster-wide, exactly what the actions read: no grant beyond them, none missing.
    assert cluster == CLUSTER_READS == granted(one("ClusterRole"))


def effective_security(container: dict[str, Any]) -> dict[str, Any]:
    return {**pod_spec().get("securityContext", {}), **container.get("securityContext", {})}


def test_the_deployment_runs_three_hardened_replicas_with_limits() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = pod_spec()
    assert pod["enableServiceLinks"] is False, (
        "Kubernetes would set REMEDIATOR_SERVICE_HOST and friends, which the service refuses"
    )
    for container in pod["containers"] + pod["initContainers"]:
        security = effective_security(container)
        assert security["runAsNonRoot"] is True
        assert security.get("runAsUser", 1) != 0
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert security.get("privileged", False) is False
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}, container["name"]


def test_the_probes_ask_health_on_the_service_port() -> None:
    container = main_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    listen = env_of(container)["REMEDIATOR_LISTEN"]["value"]
    assert ports["http"] == Settings(listen=listen).port == 9095
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health", probe
        assert ports.get(check["port"], check["port"]) == 9095, probe


def test_an_init_container_migrates_the_database_first(tmp_path: Path) -> None:
    (init,) = pod_spec()["initContainers"]
    assert init["command"] == ["remediator", "migrate"]
    assert init["image"] == main_container()["image"]
    database = env_of(init)["REMEDIATOR_DATABASE_URL"]
    assert database == env_of(main_container())["REMEDIATOR_DATABASE_URL"]
    # The command exists and exits 0 once the schema is there (twice: every pod start runs it).
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env["REMEDIATOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'remediator.db'}"
    for _ in range(2):
        migrated = subprocess.run(
            [sys.executable, "-m", *init["command"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr


def test_the_deployment_sets_only_settings_the_service_knows_and_secrets_from_secrets() -> None:
    known = {env_name(field) for field in Settings.model_fields}
    for container in pod_spec()["containers"] + pod_spec()["initContainers"]:
        unknown = {n for n in env_of(container) if n.startswith("REMEDIATOR_")} - known
        assert not unknown, f"{container['name']}: the service refuses to start with {unknown}"
    env = env_of(main_container())
    assert env["REMEDIATOR_MODE"]["value"] == "dry-run"
    for secret in ("DATABASE_URL", "WEBHOOK_TOKEN", "API_TOKEN"):
        entry = env[f"REMEDIATOR_{secret}"]
        assert "value" not in entry
        assert entry["valueFrom"]["secretKeyRef"]["name"]
    plain = {
        name.removeprefix("REMEDIATOR_").lower(): entry["value"]
        for name, entry in env.items()
        if name.startswith("REMEDIATOR_") and "value" in entry
    }
    assert set(plain) >= {"mode", "listen", "policies", "redis_url"}
    placeholders = {"database_url": "postgresql://u@db/remediator", "webhook_token": "t"}
    # Switching to live is only the one variable: the webhook token is already there.
    Settings.model_validate({**plain, **placeholders, "api_token": "t", "mode": "live"})


def variables_named(value: Any, key: str = "") -> set[str]:
    """The environment variables a matrix or step parameters name (`*_env`, headers_from_env)."""
    if isinstance(value, dict):
        named = set(value.get("headers_from_env", {}).values())
        for name, item in value.items():
            named |= variables_named(item, str(name)) if name != "headers_from_env" else set()
        return named
    if isinstance(value, list):
        return {name for item in value for name in variables_named(item, key)}
    return {value} if key.endswith("_env") and isinstance(value, str) else set()


def test_every_variable_the_matrix_and_policies_read_reaches_the_container(
    shipped: PolicySet,
) -> None:
    wanted = variables_named(shipped.matrix.channels.model_dump())
    for labels in expected_alerts():
        plan = decide(firing(labels), shipped, NOW)
        assert isinstance(plan, Plan)
        for step in plan.steps + plan.on_resolved:
            wanted |= variables_named(step.params.model_dump())
    assert wanted >= {"PAGERDUTY_ROUTING_KEY", "SLACK_WEBHOOK_URL", "GITHUB_TOKEN"}
    assert "CLAUDE_MANAGER_ADMIN_TOKEN" in wanted
    env = env_of(main_container())
    assert not wanted - set(env), f"not given to the container: {sorted(wanted - set(env))}"
    for name in wanted:
        assert "secretKeyRef" in env[name]["valueFrom"], f"{name} must come from a Secret"


def test_the_secret_templates_hold_only_placeholders_for_every_key_referenced() -> None:
    templates = load_all(KUBERNETES / SECRET_TEMPLATES)
    assert {doc["kind"] for doc in templates} == {"Secret"}
    offered = set()
    for secret in templates:
        assert "data" not in secret, "base64 would hide whether a value is a placeholder"
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"
            offered.add((secret["metadata"]["name"], key))
        assert secret["metadata"]["namespace"] == one("Deployment")["metadata"]["namespace"]
    referenced = {
        (entry["valueFrom"]["secretKeyRef"]["name"], entry["valueFrom"]["secretKeyRef"]["key"])
        for container in pod_spec()["containers"] + pod_spec()["initContainers"]
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert offered == referenced


def test_the_policies_configmap_is_the_policy_directory_and_loads_as_mounted(
    tmp_path: Path, shipped: PolicySet
) -> None:
    configmap = one("ConfigMap")
    files = sorted([*SHIPPED_POLICIES.glob("*.yaml"), *SHIPPED_POLICIES.glob("*.yml")])
    expected = {path.name: path.read_text() for path in files}
    assert configmap["data"] == expected, (
        "deploy/kubernetes/policies-configmap.yaml differs from policies/: "
        "run `python3 deploy/kubernetes/policies_configmap.py`"
    )
    (volume,) = [v for v in pod_spec()["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    (mount,) = [m for m in main_container()["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == env_of(main_container())["REMEDIATOR_POLICIES"]["value"]
    assert mount.get("readOnly") is True
    # The kubelet's layout: a timestamped directory, ..data pointing at it, a link per key.
    mounted = tmp_path / "policies"
    stamped = mounted / "..2026_11_25_12_00_00.000000001"
    stamped.mkdir(parents=True)
    for name, text in configmap["data"].items():
        (stamped / name).write_text(text)
        (mounted / name).symlink_to(Path("..data") / name)
    (mounted / "..data").symlink_to(stamped.name)
    loaded = load_policies(mounted)
    assert sorted(loaded.by_name) == sorted(shipped.by_name)
    assert loaded.guardrails == shipped.guardrails


def test_the_service_and_the_disruption_budget_select_the_deployments_pods() -> None:
    deployment = one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in main_container()["ports"]}
    budget = one("PodDisruptionBudget")
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["spec"]["maxUnavailable"] == 1 < deployment["spec"]["replicas"] - 1


def test_the_egress_policy_selects_the_pods_and_never_reaches_the_metadata_service() -> None:
    policy = one("NetworkPolicy")
    deployment = one("Deployment")
    assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
    assert policy["spec"]["policyTypes"] == ["Egress"]
    rules = policy["spec"]["egress"]
    dns = [r for r in rules if {"protocol": "UDP", "port": 53} in r.get("ports", [])]
    assert dns, "DNS must be allowed"
    blocks = [peer["ipBlock"] for rule in rules for peer in rule["to"] if "ipBlock" in peer]
    metadata = [ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254")]
    for block in blocks:
        network = ipaddress.ip_network(block["cidr"])
        excepted = [ipaddress.ip_network(e) for e in block.get("except", [])]
        for address in metadata:
            if address.version == network.version and address in network:
                assert any(address in e for e in excepted), block
    ports = {p["port"] for rule in rules for p in rule.get("ports", [])}
    assert {443, 587} <= ports  # PagerDuty, Slack and GitHub; SMTP submission


# --- Alertmanager ----------------------------------------------------------------------------


@pytest.fixture
def amtool() -> str:
    return tool("amtool", "install it with `apt-get install prometheus-alertmanager`")


def test_amtool_accepts_the_alertmanager_config(amtool: str) -> None:
    checked = run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@pytest.mark.parametrize("alertname", sorted(policy_alertnames()))
def test_every_alert_a_policy_handles_routes_to_remediator(amtool: str, alertname: str) -> None:
    routed = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        "--verify.receivers=remediator",
        f"alertname={alertname}",
        "namespace=claude-deployment-prod",
        "deployment=api",
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == ["remediator"]


def test_other_alerts_go_to_the_default_receiver(amtool: str) -> None:
    routed = run(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        "alertname=DiskFull",
        "severity=critical",
    )
    assert routed.returncode == 0, routed.stdout + routed.stderr
    assert routed.stdout.split() == ["default"]


def remediator_webhook() -> dict[str, Any]:
    config = load(ALERTMANAGER_CONFIG)
    (receiver,) = [r for r in config["receivers"] if r["name"] == "remediator"]
    (webhook,) = receiver["webhook_configs"]
    assert set(receiver) == {"name", "webhook_configs"}
    assert isinstance(webhook, dict)
    return webhook


def test_the_receiver_sends_resolutions_and_every_alert_with_a_token_file() -> None:
    webhook = remediator_webhook()
    assert webhook["send_resolved"] is True
    assert webhook["max_alerts"] == 0
    authorization = webhook["http_config"]["authorization"]
    assert authorization["type"] == "Bearer"
    assert authorization["credentials_file"].startswith("/")
    assert "credentials" not in authorization, "a token written into the config is in git"


def test_the_receiver_posts_to_the_kubernetes_service() -> None:
    service = one("Service")
    url = urlsplit(remediator_webhook()["url"])
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    assert url.hostname == f"{name}.{namespace}.svc"
    assert url.port == service["spec"]["ports"][0]["port"]
    assert url.path == "/api/v1/alerts"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    token = compose_service("remediator")["environment"]["REMEDIATOR_WEBHOOK_TOKEN"]
    database_url = f"sqlite:///{tmp_path / 'remediator.db'}"
    started = await ServiceProcess.start(tmp_path, database_url=database_url, webhook_token=token)
    yield started
    assert started.stop() == 0


@pytest.fixture
def alertmanager(
    alertmanager_binary: str, service: ServiceProcess, tmp_path: Path
) -> Iterator[str]:
    """The shipped configuration, but posting to the service on loopback and reading the token
    of the compose stack from the repository."""
    config = load(ALERTMANAGER_CONFIG)
    (receiver,) = [r for r in config["receivers"] if r["name"] == "remediator"]
    webhook = receiver["webhook_configs"][0]
    webhook["url"] = f"{service.url}/api/v1/alerts"
    webhook["http_config"]["authorization"]["credentials_file"] = str(COMPOSE_TOKEN)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    with running_alertmanager(alertmanager_binary, path, tmp_path) as url:
        yield url


async def test_the_shipped_receiver_delivers_to_the_service_with_the_compose_token(
    alertmanager: str, service: ServiceProcess, tmp_path: Path
) -> None:
    labels = {
        "alertname": "HighErrorRate",
        "namespace": "claude-deployment-prod",
        "deployment": "claude-deployment-api",
        "severity": "high",
    }
    alert = {
        "labels": labels,
        "annotations": {"summary": "through the shipped Alertmanager configuration"},
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }

    async with aiohttp.ClientSession() as session:

        async def posted() -> bool:
            try:
                async with session.post(f"{alertmanager}/api/v2/alerts", json=[alert]) as answer:
                    return answer.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(posted, what="Alertmanager to take the alert")
    store = await open_store(f"sqlite:///{tmp_path / 'remediator.db'}")
    try:

        async def stored() -> bool:
            return any(r.labels == labels for r in await store.recent_alerts(10))

        await eventually(stored, what="the alert to reach the service (a 401 never stores it)")
    finally:
        await store.close()


# --- Prometheus ------------------------------------------------------------------------------


@pytest.fixture
def promtool() -> str:
    return tool("promtool", "install it with `apt-get install prometheus`")


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def expected_alerts() -> list[dict[str, str]]:
    """The label sets rules.test.yml expects the rules to fire with (promtool checks them)."""
    return [
        {"alertname": check["alertname"], **expected["exp_labels"]}
        for test in load(RULE_TESTS)["tests"]
        for check in test["alert_rule_test"]
        for expected in check["exp_alerts"]
    ]


def firing(labels: dict[str, str]) -> Alert:
    return Alert.model_validate(
        {"status": AlertStatus.FIRING, "labels": labels, "startsAt": NOW, "fingerprint": "f00d"}
    )


def test_promtool_accepts_the_rules(promtool: str) -> None:
    checked = run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_pass_their_unit_tests(promtool: str) -> None:
    tested = run(promtool, "test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_accepts_the_compose_prometheus_config(promtool: str) -> None:
    checked = run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_there_is_a_rule_for_every_policys_alert_and_each_is_unit_tested() -> None:
    rules = {rule["alert"] for rule in alert_rules()}
    assert set(policy_alertnames()) <= rules
    fires: set[str] = set()
    silent: set[str] = set()
    for test in load(RULE_TESTS)["tests"]:
        for check in test["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    assert fires == rules, "each alert needs a test in which it fires"
    assert silent == rules, "each alert needs a test in which it stays silent"
    assert {alert["alertname"] for alert in expected_alerts()} == rules


def test_each_rule_has_a_severity_of_its_policys_level_and_a_runbook(shipped: PolicySet) -> None:
    handled_by = policy_alertnames()
    for rule in alert_rules():
        assert rule["annotations"]["runbook_url"].startswith("https://"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        policy = shipped.by_name[handled_by[rule["alert"]]]
        level = shipped.matrix.severity_labels.get(rule["labels"]["severity"])
        assert level == policy.severity, (
            f"{rule['alert']}: severity {rule['labels']['severity']!r} is {level} in "
            f"escalation.yaml, its policy {policy.name} is {policy.severity}"
        )


@pytest.mark.parametrize("labels", [pytest.param(a, id=a["alertname"]) for a in expected_alerts()])
def test_each_alert_the_rules_fire_gets_a_plan_from_its_policy(
    shipped: PolicySet, labels: dict[str, str]
) -> None:
    decision = decide(firing(labels), shipped, NOW)
    assert isinstance(decision, Plan), decision
    assert decision.policy == policy_alertnames()[labels["alertname"]]
    name_label, namespace_label = TARGET_LABELS.get(
        labels["alertname"], ("deployment", "namespace")
    )
    assert decision.target.name == labels[name_label]
    assert decision.target.namespace == (labels[namespace_label] if namespace_label else None)


# The label each alert's target is named by, and its namespace's (none: cluster-scoped, or not
# in Kubernetes); the others' are `deployment` and `namespace`.
TARGET_LABELS: dict[str, tuple[str, str | None]] = {
    "NodeNotReady": ("node", None),
    "PostgresConnectionsHigh": ("instance", None),
}


# --- docker compose --------------------------------------------------------------------------


def compose_service(name: str) -> dict[str, Any]:
    service: dict[str, Any] = load(COMPOSE)["services"][name]
    return service


def published(service: dict[str, Any]) -> set[int]:
    return {int(str(port).split(":")[-1].split("/")[0]) for port in service.get("ports", [])}


def flag(service: dict[str, Any], name: str) -> str:
    (value,) = [a.split("=", 1)[1] for a in service["command"] if a.startswith(f"{name}=")]
    return str(value)


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> the repository path mounted there (bind mounts only)."""
    found: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = (ROOT / source).resolve()
    return found


def test_compose_runs_the_stack_with_healthchecks_in_dependency_order() -> None:
    services = load(COMPOSE)["services"]
    assert set(services) == {"remediator", "postgres", "redis", "alertmanager", "prometheus"}
    assert services["remediator"]["build"] == "."
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert published(services["remediator"]) == {9095}
    assert published(services["alertmanager"]) == {9093}
    assert published(services["prometheus"]) == {9090}
    assert services["remediator"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert services["alertmanager"]["depends_on"] == {
        "remediator": {"condition": "service_healthy"}
    }
    assert services["prometheus"]["depends_on"] == {
        "alertmanager": {"condition": "service_healthy"}
    }
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name


def test_compose_remediator_starts_in_dry_run_with_the_token_alertmanager_sends() -> None:
    remediator = compose_service("remediator")
    env = remediator["environment"]
    assert env["REMEDIATOR_MODE"] in {"dry-run", "${REMEDIATOR_MODE:-dry-run}"}
    known = {env_name(field) for field in Settings.model_fields}
    assert {name for name in env if name.startswith("REMEDIATOR_")} <= known
    assert env["REMEDIATOR_WEBHOOK_TOKEN"] == COMPOSE_TOKEN.read_text().strip()
    assert urlsplit(env["REMEDIATOR_DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(env["REMEDIATOR_REDIS_URL"]).hostname == "redis"
    assert mounts(remediator)[env["REMEDIATOR_POLICIES"]] == SHIPPED_POLICIES
    assert remediator["read_only"] is True


def test_compose_alertmanager_posts_to_the_remediator_service_with_the_token_file() -> None:
    alertmanager = compose_service("alertmanager")
    mounted = mounts(alertmanager)
    assert mounted[flag(alertmanager, "--config.file")] == ALERTMANAGER_CONFIG
    webhook = remediator_webhook()
    assert mounted[webhook["http_config"]["authorization"]["credentials_file"]] == COMPOSE_TOKEN
    remediator = compose_service("remediator")
    names = {"remediator", *remediator["networks"]["default"]["aliases"]}
    url = urlsplit(webhook["url"])
    assert url.hostname in names
    listen = remediator["environment"].get("REMEDIATOR_LISTEN", "0.0.0.0:9095")
    assert url.port == Settings(listen=listen).port


def test_compose_prometheus_evaluates_the_rules_and_alerts_the_stacks_alertmanager() -> None:
    prometheus = compose_service("prometheus")
    config_path = Path(flag(prometheus, "--config.file"))
    directory = mounts(prometheus)[str(config_path.parent)]
    assert directory == PROMETHEUS
    config = load(directory / config_path.name)
    assert (directory / config["rule_files"][0]).resolve() == RULES
    (targets,) = [c["targets"] for c in config["alerting"]["alertmanagers"][0]["static_configs"]]
    assert targets == ["alertmanager:9093"]
    assert 9093 in published(compose_service("alertmanager"))


def test_docker_compose_accepts_the_file() -> None:
    compose = tool("docker-compose", "install it with `apt-get install docker-compose`")
    checked = run(compose, "-f", str(COMPOSE), "config", "-q")
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- the image -------------------------------------------------------------------------------


def stages() -> list[list[dict[str, Any]]]:
    """The Dockerfile's instructions, split at each FROM."""
    parsed: list[list[dict[str, Any]]] = []
    for instruction in DockerfileParser(path=str(DOCKERFILE)).structure:
        if instruction["instruction"] == "FROM":
            parsed.append([])
        if parsed:
            parsed[-1].append(dict(instruction))
    return parsed


def values(stage: list[dict[str, Any]], instruction: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == instruction]


COMPILERS = re.compile(
    r"\b(gcc|g\+\+|clang|cc|make|build-essential|cargo|rustc|[\w.+-]+-dev)\b", re.IGNORECASE
)


def test_the_image_builds_in_stages_and_runs_as_a_numeric_non_root_user() -> None:
    build, *_, final = stages()
    assert len(stages()) >= 2
    name = values(build, "FROM")[0].partition(" AS ")[2]
    assert name, "the build stage needs a name the final stage takes its wheels from"
    assert "pip wheel" in " ".join(values(build, "RUN"))
    final_base = values(final, "FROM")[0].split()[0]
    assert final_base.startswith("python:3.11-slim"), "the full python image ships compilers"
    assert f"from={name}" in " ".join(values(final, "RUN")), "the wheels come from the build"
    user = values(final, "USER")[-1].split(":")[0]
    assert user.isdigit(), "runAsNonRoot can only verify a numeric user"
    assert int(user) != 0
    assert values(final, "ENTRYPOINT") == ['["remediator", "serve"]']
    assert values(final, "EXPOSE") == ["9095"]
    for command in values(final, "RUN"):
        assert not COMPILERS.search(command.replace("pip install", "")), command


def dockerignored(path: str) -> bool:
    """Whether Docker leaves `path` out of the build context: the last pattern that matches
    the path or one of its parents decides."""
    excluded = False
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_the_build_context_holds_what_the_image_copies_and_nothing_secret() -> None:
    copied = [
        source
        for stage in stages()
        for value in values(stage, "COPY")
        if "--from" not in value
        for source in value.split()[:-1]
    ]
    assert copied, "the Dockerfile copies nothing?"
    for source in copied:
        assert not dockerignored(source.rstrip("/")), source
    assert not dockerignored("service/remediator/store/migrations/postgres/0001_initial.sql")
    for kept_out in [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/test_deploy.py",
        "deploy/compose/remediator-webhook-token",
        "remediator.db",
        "service/remediator/__pycache__",
        "service/remediator/__pycache__/cli.cpython-311.pyc",
    ]:
        assert dockerignored(kept_out), kept_out
