"""The `aws.*` actions with real boto3 over HTTP against moto's standalone server.

One ThreadedMotoServer for the module, on a free port, reset before each test; the resources
(an Auto Scaling group from a launch template, an EKS cluster and node group, an RDS instance)
are seeded through boto3 against it, as anyone would make them. Credentials are moto's fake
ones, from the environment; no shared config file or instance metadata is read.
"""

from __future__ import annotations

import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from remediator.actions import aws as aws_module
from remediator.actions.aws import (
    SCALED_TAG,
    AwsActions,
    AwsClients,
    _client_failure,
    open_aws_actions,
)
from remediator.actions.base import Action, Outcome, StepContext, Transient
from remediator.actions.registry import open_actions
from remediator.config import SettingsError, load_settings
from remediator.engine.plan import RenderedTarget
from remediator.policy.parameters import (
    CATALOGUE,
    RENDERED,
    AutoScalingSetCapacity,
    EksNodegroupScale,
    RdsCreateSnapshot,
)
from tests.support.services import free_port

REGION = "eu-west-1"
OTHER_ACCOUNT = "111122223333"
ROLE_ARN = f"arn:aws:iam::{OTHER_ACCOUNT}:role/remediator"
AMI = "ami-12c6146b"  # one of the images moto knows
STARTED = datetime(2026, 5, 1, 12, 30, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10) as answer:
        assert answer.status == 200
    return moto_server


@dataclass
class Seeded:
    """Clients of the account the resources were made in, to seed and inspect them."""

    session: boto3.session.Session
    endpoint: str

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def group(self, name: str = "web") -> Any:
        return self.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[name]
        )["AutoScalingGroups"][0]

    def scaling(self, cluster: str = "prod", nodegroup: str = "workers") -> dict[str, int]:
        answer = self.client("eks").describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)
        scaling: dict[str, int] = answer["nodegroup"]["scalingConfig"]
        return scaling

    def snapshots(self, instance: str = "orders-db") -> list[str]:
        answer = self.client("rds").describe_db_snapshots(
            DBInstanceIdentifier=instance, SnapshotType="manual"
        )
        return sorted(s["DBSnapshotIdentifier"] for s in answer["DBSnapshots"])


def seed(session: boto3.session.Session, endpoint: str) -> Seeded:
    """An Auto Scaling group `web` (1..6, at 3), node group `prod/workers` (1..5, at 2) and the
    PostgreSQL instance `orders-db`."""
    seeded = Seeded(session, endpoint)
    seeded.client("ec2").create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.micro"}
    )
    seeded.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="web",
        LaunchTemplate={"LaunchTemplateName": "web", "Version": "$Latest"},
        MinSize=1,
        MaxSize=6,
        DesiredCapacity=3,
        AvailabilityZones=[f"{REGION}a"],
    )
    eks = seeded.client("eks")
    eks.create_cluster(
        name="prod",
        roleArn="arn:aws:iam::123456789012:role/eks-cluster",
        resourcesVpcConfig={"subnetIds": ["subnet-1"]},
    )
    eks.create_nodegroup(
        clusterName="prod",
        nodegroupName="workers",
        nodeRole="arn:aws:iam::123456789012:role/eks-node",
        subnets=["subnet-1"],
        scalingConfig={"minSize": 1, "maxSize": 5, "desiredSize": 2},
    )
    seeded.client("rds").create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="orders",
        MasterUserPassword="not-a-secret",
        AllocatedStorage=20,
    )
    return seeded


@pytest.fixture
def aws(endpoint: str) -> Seeded:
    return seed(boto3.session.Session(region_name=REGION), endpoint)


@pytest.fixture
async def actions(endpoint: str) -> AsyncIterator[dict[str, Action]]:
    async with open_aws_actions(REGION, endpoint_url=endpoint) as opened:
        yield opened


def context(*, dry_run: bool = False, started: datetime = STARTED) -> StepContext:
    target = RenderedTarget("Application", "web", None, None, "http://web:8080")
    return StepContext(target=target, dry_run=dry_run, run_started_at=started)


def asg(**params: Any) -> AutoScalingSetCapacity:
    return AutoScalingSetCapacity.model_validate({"group": "web", **params}, context=RENDERED)


def nodegroup(**params: Any) -> EksNodegroupScale:
    return EksNodegroupScale.model_validate(
        {"cluster": "prod", "nodegroup": "workers", **params}, context=RENDERED
    )


def snapshot(**params: Any) -> RdsCreateSnapshot:
    return RdsCreateSnapshot.model_validate({"instance": "orders-db", **params}, context=RENDERED)


# -- the catalogue, the parameters and the settings ------------------------------------------


def test_every_aws_catalogue_name_has_an_implementation_and_each_is_mutating() -> None:
    names = {name for name in CATALOGUE if name.startswith("aws.")}
    assert names == {
        "aws.autoscaling_set_capacity",
        "aws.eks_nodegroup_scale",
        "aws.rds_create_snapshot",
    }
    assert set(AwsActions(AwsClients(REGION)).actions()) == names
    assert all(CATALOGUE[name].mutating for name in names)
    assert CATALOGUE["aws.autoscaling_set_capacity"].parameters == [
        "desired",
        "by",
        "min",
        "max",
        "group",
    ]


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        pytest.param({"group": "web", "max": 5}, "exactly one of desired and by", id="neither"),
        pytest.param({"group": "web", "desired": 2, "by": 1, "max": 5}, "exactly one", id="both"),
        pytest.param({"group": "web", "by": 1}, "max", id="no-max"),
        pytest.param({"group": "web", "by": 1, "min": 6, "max": 5}, "min is above max", id="min"),
        pytest.param({"group": "", "by": 1, "max": 5}, "Auto Scaling group name", id="empty"),
        pytest.param({"group": "web", "by": 1, "max": 5, "size": 2}, "size", id="unknown"),
    ],
)
def test_capacity_parameters_are_checked(params: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AutoScalingSetCapacity.model_validate(params)


def test_names_may_be_templates_until_rendered_and_must_be_names_after() -> None:
    templated = {"cluster": "{{ labels.cluster }}", "nodegroup": "workers", "by": 1, "max": 9}
    assert EksNodegroupScale.model_validate(templated).cluster == "{{ labels.cluster }}"
    with pytest.raises(ValueError, match="an EKS name"):
        EksNodegroupScale.model_validate({**templated, "cluster": "prod; rm"}, context=RENDERED)
    assert RdsCreateSnapshot.model_validate({"instance": "{{ labels.db }}"}).prefix == "remediator"
    for bad in ("orders--db", "orders-", "1orders", "orders_db"):
        with pytest.raises(ValueError, match="an RDS identifier"):
            RdsCreateSnapshot.model_validate({"instance": bad}, context=RENDERED)


def test_aws_settings_are_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REMEDIATOR_AWS_REGION", "REMEDIATOR_AWS_ROLE_ARN", "REMEDIATOR_AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().aws_region is None
    monkeypatch.setenv("REMEDIATOR_AWS_REGION", "eu-west-1")
    monkeypatch.setenv("REMEDIATOR_AWS_ROLE_ARN", ROLE_ARN)
    monkeypatch.setenv("REMEDIATOR_AWS_ENDPOINT_URL", "http://localstack:4566")
    settings = load_settings()
    assert (settings.aws_region, settings.aws_role_arn) == ("eu-west-1", ROLE_ARN)
    assert settings.aws_endpoint_url == "http://localstack:4566"
    with pytest.raises(SettingsError, match=r"REMEDIATOR_AWS_REGION .* expected an AWS region"):
        load_settings({"aws_region": "Ireland"})
    with pytest.raises(SettingsError, match=r"REMEDIATOR_AWS_ROLE_ARN .* IAM role ARN"):
        load_settings({"aws_role_arn": "remediator"})
    with pytest.raises(SettingsError, match="REMEDIATOR_AWS_ENDPOINT_URL"):
        load_settings({"aws_endpoint_url": "localstack:4566"})
    monkeypatch.delenv("REMEDIATOR_AWS_REGION")
    with pytest.raises(SettingsError, match="need REMEDIATOR_AWS_REGION"):
        load_settings()


# -- aws.autoscaling_set_capacity -------------------------------------------------------------


async def test_asg_by_is_clamped_to_the_groups_max(aws: Seeded, actions: dict[str, Action]) -> None:
    result = await actions["aws.autoscaling_set_capacity"](asg(by=5, max=10), context())
    assert result.outcome is Outcome.OK, result.message
    assert result.message == "set ASG web from 3 to 6"
    assert result.data == {"desired": 6, "min_size": 1, "max_size": 6}
    assert aws.group()["DesiredCapacity"] == 6


async def test_asg_desired_is_clamped_to_the_policys_max_and_min(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    action = actions["aws.autoscaling_set_capacity"]
    result = await action(asg(desired=9, max=4), context())
    assert (result.outcome, result.message) == (Outcome.OK, "set ASG web from 3 to 4")
    assert aws.group()["DesiredCapacity"] == 4
    later = context(started=datetime.now(UTC))
    result = await action(asg(by=-3, min=2, max=4), later)
    assert (result.outcome, result.message) == (Outcome.OK, "set ASG web from 4 to 2")
    assert aws.group()["DesiredCapacity"] == 2


async def test_asg_already_at_desired_is_ok_and_changes_nothing(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.autoscaling_set_capacity"](asg(desired=3, max=5), context())
    assert (result.outcome, result.message) == (Outcome.OK, "ASG web is already at 3")
    group = aws.group()
    assert group["DesiredCapacity"] == 3
    assert SCALED_TAG not in {tag["Key"] for tag in group.get("Tags", [])}


async def test_asg_dry_run_reads_and_changes_nothing(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.autoscaling_set_capacity"](asg(by=2, max=5), context(dry_run=True))
    assert (result.outcome, result.message) == (Outcome.DRY_RUN, "would set ASG web from 3 to 5")
    group = aws.group()
    assert group["DesiredCapacity"] == 3
    assert SCALED_TAG not in {tag["Key"] for tag in group.get("Tags", [])}


async def test_asg_rerun_of_the_same_run_finishes_instead_of_adding_again(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    action = actions["aws.autoscaling_set_capacity"]
    started = datetime.now(UTC) - timedelta(seconds=1)
    first = await action(asg(by=1, max=6), context(started=started))
    assert first.message == "set ASG web from 3 to 4"
    tags = {tag["Key"]: tag["Value"] for tag in aws.group()["Tags"]}
    assert tags[SCALED_TAG].endswith(" from 3 to 4")
    again = await action(asg(by=1, max=6), context(started=started))
    assert (again.outcome, again.message) == (Outcome.OK, "ASG web is already at 4")
    next_run = await action(asg(by=1, max=6), context(started=datetime.now(UTC)))
    assert next_run.message == "set ASG web from 4 to 5"
    assert aws.group()["DesiredCapacity"] == 5


async def test_asg_outside_the_policys_bounds_is_not_scaled_against_by(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.autoscaling_set_capacity"](asg(by=1, max=2), context())
    assert result.outcome is Outcome.SKIPPED
    assert "not scaling against `by: 1`" in result.message
    assert aws.group()["DesiredCapacity"] == 3


async def test_asg_whose_bounds_miss_the_policys_is_a_failure(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.autoscaling_set_capacity"](asg(desired=8, min=7, max=9), context())
    assert result.outcome is Outcome.FAILED
    assert "its bounds [1, 6] and the policy's [7, 9] do not overlap" in result.message


async def test_a_missing_group_is_a_clear_failure(aws: Seeded, actions: dict[str, Action]) -> None:
    params = AutoScalingSetCapacity.model_validate({"group": "nope", "by": 1, "max": 3})
    result = await actions["aws.autoscaling_set_capacity"](params, context())
    assert result.outcome is Outcome.FAILED
    assert result.message == f"no Auto Scaling group named 'nope' in {REGION}"


# -- aws.eks_nodegroup_scale ------------------------------------------------------------------


async def test_nodegroup_by_is_clamped_to_its_max_size(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.eks_nodegroup_scale"](nodegroup(by=10, max=20), context())
    assert result.outcome is Outcome.OK, result.message
    assert result.message.startswith("scaling EKS node group prod/workers from 2 to 5")
    assert result.data["desired"] == 5
    assert result.data["update"]
    assert aws.scaling() == {"minSize": 1, "maxSize": 5, "desiredSize": 5}


async def test_nodegroup_desired_is_clamped_to_the_policys_max(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.eks_nodegroup_scale"](nodegroup(desired=5, max=3), context())
    assert result.outcome is Outcome.OK, result.message
    assert aws.scaling()["desiredSize"] == 3
    again = await actions["aws.eks_nodegroup_scale"](nodegroup(desired=5, max=3), context())
    assert (again.outcome, again.message) == (
        Outcome.OK,
        "EKS node group prod/workers is already at 3",
    )


async def test_nodegroup_dry_run_changes_nothing(aws: Seeded, actions: dict[str, Action]) -> None:
    result = await actions["aws.eks_nodegroup_scale"](nodegroup(by=1, max=5), context(dry_run=True))
    assert (result.outcome, result.message) == (
        Outcome.DRY_RUN,
        "would scale EKS node group prod/workers from 2 to 3",
    )
    assert aws.scaling()["desiredSize"] == 2
    cluster = aws.client("eks").describe_cluster(name="prod")["cluster"]
    assert f"{SCALED_TAG}/workers" not in cluster.get("tags", {})


async def test_nodegroup_rerun_of_the_same_run_does_not_add_again(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    first = await actions["aws.eks_nodegroup_scale"](
        nodegroup(by=2, max=5), context(started=started)
    )
    assert first.outcome is Outcome.OK, first.message
    again = await actions["aws.eks_nodegroup_scale"](
        nodegroup(by=2, max=5), context(started=started)
    )
    assert again.message == "EKS node group prod/workers is already at 4"
    assert aws.scaling()["desiredSize"] == 4


async def test_a_missing_nodegroup_is_a_clear_failure(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    params = EksNodegroupScale.model_validate(
        {"cluster": "prod", "nodegroup": "gpu", "by": 1, "max": 3}
    )
    result = await actions["aws.eks_nodegroup_scale"](params, context())
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith(f"read EKS node group prod/gpu: not found in {REGION}")


# -- aws.rds_create_snapshot ------------------------------------------------------------------


async def test_snapshot_is_created_with_the_prefix_instance_and_run_start(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.rds_create_snapshot"](
        snapshot(prefix="before-failover", wait_up_to="1m"), context()
    )
    expected = "before-failover-orders-db-20260501123005"
    assert result.outcome is Outcome.OK, result.message
    assert result.message == f"created snapshot {expected} of DB instance orders-db (available)"
    assert result.data == {"snapshot": expected, "instance": "orders-db", "status": "available"}
    assert aws.snapshots() == [expected]
    described = aws.client("rds").describe_db_snapshots(DBSnapshotIdentifier=expected)
    made = described["DBSnapshots"][0]
    assert (made["DBInstanceIdentifier"], made["SnapshotType"]) == ("orders-db", "manual")


async def test_snapshot_rerun_finds_its_snapshot_and_makes_no_second(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    first = await actions["aws.rds_create_snapshot"](snapshot(), context())
    again = await actions["aws.rds_create_snapshot"](snapshot(), context())
    assert first.message.startswith("created snapshot remediator-orders-db-20260501123005")
    assert again.message.startswith("found snapshot remediator-orders-db-20260501123005")
    assert aws.snapshots() == ["remediator-orders-db-20260501123005"]


async def test_snapshot_dry_run_says_what_it_would_create(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.rds_create_snapshot"](snapshot(), context(dry_run=True))
    assert result.outcome is Outcome.DRY_RUN
    assert result.message == (
        "would create snapshot remediator-orders-db-20260501123005 of DB instance orders-db"
        " (now available)"
    )
    assert aws.snapshots() == []


async def test_snapshot_of_a_missing_instance_is_a_clear_failure(
    aws: Seeded, actions: dict[str, Action]
) -> None:
    result = await actions["aws.rds_create_snapshot"](snapshot(instance="billing-db"), context())
    assert result.outcome is Outcome.FAILED
    assert result.message.startswith(f"read DB instance billing-db: not found in {REGION}")


# -- credentials, configuration and errors ----------------------------------------------------


async def test_a_configured_role_is_assumed_through_sts(endpoint: str) -> None:
    """The resources live in another account, reachable only as the role: moto, like AWS,
    answers an assumed role's requests from the role's account."""
    sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION)
    credentials = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="seed")["Credentials"]
    other = boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )
    seeded = seed(other, endpoint)
    async with open_aws_actions(REGION, endpoint_url=endpoint) as own:
        result = await own["aws.autoscaling_set_capacity"](asg(by=1, max=6), context())
    assert result.message == f"no Auto Scaling group named 'web' in {REGION}"
    clients = AwsClients(REGION, ROLE_ARN, endpoint)
    try:
        as_role = AwsActions(clients).actions()
        result = await as_role["aws.autoscaling_set_capacity"](asg(by=1, max=6), context())
        assert (result.outcome, result.message) == (Outcome.OK, "set ASG web from 3 to 4")
        assert seeded.group()["DesiredCapacity"] == 4
        result = await as_role["aws.rds_create_snapshot"](snapshot(), context())
        assert result.outcome is Outcome.OK, result.message
        assert seeded.snapshots() == ["remediator-orders-db-20260501123005"]
        assert clients.get().renew_at is not None  # the role's, renewed before they expire
    finally:
        clients.close()


async def test_an_assumed_roles_credentials_are_renewed_before_they_expire(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sts = boto3.client("sts", endpoint_url=endpoint, region_name=REGION)
    credentials = sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="seed")["Credentials"]
    seeded = seed(
        boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=REGION,
        ),
        endpoint,
    )
    monkeypatch.setattr(aws_module, "_RENEW_BEFORE", timedelta(hours=2))  # always due
    clients = AwsClients(REGION, ROLE_ARN, endpoint)
    try:
        first = clients.get()
        assert clients.get() is not first
        action = AwsActions(clients).actions()["aws.autoscaling_set_capacity"]
        for expected in (4, 5):
            result = await action(asg(by=1, max=6), context(started=datetime.now(UTC)))
            assert result.outcome is Outcome.OK, result.message
            assert seeded.group()["DesiredCapacity"] == expected
    finally:
        clients.close()


async def test_without_a_region_aws_actions_are_dry_run_only() -> None:
    async with open_actions(None) as actions:
        result = await actions["aws.autoscaling_set_capacity"](asg(by=1, max=3), context())
    assert result.outcome is Outcome.DRY_RUN
    assert "dry-run only, no AWS region configured (set REMEDIATOR_AWS_REGION)" in result.message


async def test_with_a_region_the_registry_binds_the_real_actions(
    aws: Seeded, endpoint: str
) -> None:
    async with open_actions(None, aws_region=REGION, aws_endpoint_url=endpoint) as actions:
        result = await actions["aws.autoscaling_set_capacity"](asg(by=1, max=6), context())
    assert (result.outcome, result.message) == (Outcome.OK, "set ASG web from 3 to 4")


async def test_an_unreachable_endpoint_is_transient(endpoint: str) -> None:
    async with open_aws_actions(REGION, endpoint_url=f"http://127.0.0.1:{free_port()}") as dead:
        with pytest.raises(Transient, match="AWS unreachable"):
            await dead["aws.rds_create_snapshot"](snapshot(), context())


def _client_error(code: str, status: int, message: str = "no") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SetDesiredCapacity",
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("TooManyRequestsException", 429),
        ("ScalingActivityInProgress", 400),
        ("ResourceInUseException", 409),
        ("InternalFailure", 500),
        ("Whatever", 503),
    ],
)
def test_throttling_busy_and_server_errors_are_transient(code: str, status: int) -> None:
    with pytest.raises(Transient, match=code):
        _client_failure(_client_error(code, status), "set ASG web", "x", AwsClients(REGION))


def test_access_denied_and_validation_errors_are_failures_that_say_why() -> None:
    clients = AwsClients(REGION, ROLE_ARN)
    denied = _client_failure(
        _client_error("AccessDenied", 403, "not authorized"),
        "set the desired capacity of Auto Scaling group web",
        "autoscaling:SetDesiredCapacity",
        clients,
    )
    assert denied.outcome is Outcome.FAILED
    assert denied.message == (
        "set the desired capacity of Auto Scaling group web: access denied (not authorized):"
        f" the role {ROLE_ARN} needs autoscaling:SetDesiredCapacity"
    )
    invalid = _client_failure(
        _client_error("ValidationError", 400, "DesiredCapacity too big"), "set", "x", clients
    )
    assert invalid.outcome is Outcome.FAILED
    assert invalid.message == "set: AWS refused the request: DesiredCapacity too big"
