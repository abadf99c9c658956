"""The `aws.*` actions: an Auto Scaling group's desired capacity, an EKS managed node group's
desired size, a manual RDS snapshot.

boto3 is blocking, so every call runs in a thread (`asyncio.to_thread`); the clients are built
there on first use, for the configured region, with the default credential chain or, when a
role is configured, with credentials from STS AssumeRole that are renewed before they expire.
botocore's own timeouts bound each call (a step's timeout cannot stop a thread) and it retries
once; further retries are the runner's, on Transient.

Every action reads before it writes. A capacity change is recorded first, as a tag
(`remediator/scaled` on the group; `remediator/scaled/NODEGROUP` on the EKS cluster), so that a
step re-run after a crash or a lost answer finishes the change instead of adding `by` again; a
snapshot's name holds the run's start time, so a re-run finds the snapshot it made. In dry-run
the reads happen and the result says what would be done.

Errors: throttling, 429, 5xx, dropped connections, timeouts and "busy" answers (a scaling
activity or a node group update in progress) raise Transient; a missing resource, AccessDenied
(with the permission needed) and validation errors are failed results.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from remediator.actions.base import (
    Action,
    StepContext,
    StepResult,
    Transient,
    dry_run,
    failed,
    ok,
    skipped,
)
from remediator.policy.durations import format_duration
from remediator.policy.parameters import (
    AutoScalingSetCapacity,
    Capacity,
    EksNodegroupScale,
    RdsCreateSnapshot,
)

if TYPE_CHECKING:
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_eks import EKSClient
    from mypy_boto3_rds import RDSClient
    from mypy_boto3_rds.type_defs import DBSnapshotTypeDef

CONFIG = Config(
    connect_timeout=5,
    read_timeout=20,
    retries={"mode": "standard", "max_attempts": 2},
    user_agent_extra="remediator",
)
SESSION_NAME = "remediator"
SCALED_TAG = "remediator/scaled"  # "AT from N to M"
SNAPSHOT_POLL = 10.0  # seconds between reads while waiting for a snapshot
_RENEW_BEFORE = timedelta(minutes=5)

_THROTTLED = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_BUSY = frozenset(
    {
        "ScalingActivityInProgress",  # an Auto Scaling group's activity is running
        "ResourceContention",  # Auto Scaling: another update of the group at the same time
        "ResourceInUseException",  # EKS: an update of the node group is in progress
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServerException",
    }
)
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "UnauthorizedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "AuthFailure",
        "SignatureDoesNotMatch",
    }
)
_NOT_FOUND = frozenset(
    {
        "ResourceNotFoundException",
        "NotFoundException",
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
    }
)
_INVALID = frozenset(
    {
        "ValidationError",
        "ValidationException",
        "InvalidParameterException",
        "InvalidParameterValue",
        "InvalidParameterCombination",
        "InvalidRequestException",
    }
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class _Clients:
    autoscaling: AutoScalingClient
    eks: EKSClient
    rds: RDSClient
    renew_at: datetime | None  # None: the default chain renews its own credentials

    def close(self) -> None:
        for client in (self.autoscaling, self.eks, self.rds):
            client.close()


class AwsClients:
    """boto3 clients for one region, built on first use in the calling thread (never the event
    loop's); under an assumed role they are built anew before its credentials expire."""

    def __init__(
        self, region: str, role_arn: str | None = None, endpoint_url: str | None = None
    ) -> None:
        self.region, self.role_arn, self.endpoint_url = region, role_arn, endpoint_url
        self._lock = threading.Lock()
        self._clients: _Clients | None = None
        self._retired: list[_Clients] = []

    def get(self) -> _Clients:
        with self._lock:
            current = self._clients
            if current is None or (current.renew_at is not None and _now() >= current.renew_at):
                self._retire()
                current = self._clients = self._build()
            return current

    def forget_credentials(self) -> None:
        """The credentials were refused as expired: the next call builds new clients."""
        with self._lock:
            self._retire()

    def _retire(self) -> None:
        """Calls may still be using the current clients: they are closed a generation later,
        long after botocore's timeouts have ended any call."""
        for clients in self._retired:
            clients.close()
        self._retired = [self._clients] if self._clients is not None else []
        self._clients = None

    def close(self) -> None:
        with self._lock:
            for clients in [*self._retired, *([self._clients] if self._clients else [])]:
                clients.close()
            self._clients, self._retired = None, []

    def _build(self) -> _Clients:
        session = boto3.session.Session(region_name=self.region)
        renew_at = None
        if self.role_arn is not None:
            sts = session.client("sts", endpoint_url=self.endpoint_url, config=CONFIG)
            try:
                answer = sts.assume_role(RoleArn=self.role_arn, RoleSessionName=SESSION_NAME)
            finally:
                sts.close()
            credentials = answer["Credentials"]
            session = boto3.session.Session(
                aws_access_key_id=credentials["AccessKeyId"],
                aws_secret_access_key=credentials["SecretAccessKey"],
                aws_session_token=credentials["SessionToken"],
                region_name=self.region,
            )
            renew_at = _aware(credentials["Expiration"]) - _RENEW_BEFORE
        endpoint, config = self.endpoint_url, CONFIG
        return _Clients(
            autoscaling=session.client("autoscaling", endpoint_url=endpoint, config=config),
            eks=session.client("eks", endpoint_url=endpoint, config=config),
            rds=session.client("rds", endpoint_url=endpoint, config=config),
            renew_at=renew_at,
        )


class _Done(Exception):
    """A call's failure, already a result: the action ends with it."""

    def __init__(self, result: StepResult) -> None:
        super().__init__(result.message)
        self.result = result


def _aws_errors(method: F) -> F:
    @wraps(method)
    async def wrapper(self: AwsActions, params: Any, context: StepContext) -> StepResult:
        try:
            result: StepResult = await method(self, params, context)
        except _Done as done:
            return done.result
        return result

    return wrapper  # type: ignore[return-value]


class AwsActions:
    def __init__(self, clients: AwsClients) -> None:
        self._clients = clients

    def actions(self) -> dict[str, Action]:
        return {
            "aws.autoscaling_set_capacity": self.autoscaling_set_capacity,
            "aws.eks_nodegroup_scale": self.eks_nodegroup_scale,
            "aws.rds_create_snapshot": self.rds_create_snapshot,
        }

    async def _call(self, what: str, permission: str, call: Callable[[_Clients], T]) -> T:
        """`call` with this service's clients, in a thread; AWS's refusals as results."""

        calling = False  # until then, building the clients (assuming the role) failed

        def run() -> T:
            nonlocal calling
            clients = self._clients.get()
            calling = True
            return call(clients)

        try:
            return await asyncio.to_thread(run)
        except ClientError as exc:
            if _error_code(exc) in _EXPIRED:
                self._clients.forget_credentials()
            if not calling:
                what, permission = f"{what}: assume {self._clients.role_arn}", "sts:AssumeRole"
            raise _Done(_client_failure(exc, what, permission, self._clients)) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise Transient(f"{what}: AWS unreachable: {exc}") from exc
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as exc:
            raise _Done(
                failed(
                    f"{what}: no usable AWS credentials ({exc}); give the service an identity"
                    " (instance profile, IRSA, AWS_* variables) or set REMEDIATOR_AWS_ROLE_ARN"
                )
            ) from exc
        except BotoCoreError as exc:
            raise _Done(failed(f"{what}: {exc}")) from exc

    @_aws_errors
    async def autoscaling_set_capacity(
        self, params: AutoScalingSetCapacity, context: StepContext
    ) -> StepResult:
        name = params.group
        groups = await self._call(
            f"read Auto Scaling group {name}",
            "autoscaling:DescribeAutoScalingGroups",
            lambda aws: aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
                "AutoScalingGroups"
            ],
        )
        if not groups:
            return failed(f"no Auto Scaling group named {name!r} in {self._clients.region}")
        group = groups[0]
        current, low, high = group["DesiredCapacity"], group["MinSize"], group["MaxSize"]
        tags = {tag.get("Key"): tag.get("Value") for tag in group.get("Tags", [])}
        record = _record(tags.get(SCALED_TAG))
        data = {"desired": current, "min_size": low, "max_size": high}
        decided = _desired(params, f"ASG {name}", current, low, high, record, context, data)
        if isinstance(decided, StepResult):
            return decided
        if decided == current:
            return ok(f"ASG {name} is already at {current}", **data)
        if context.dry_run:
            return dry_run(f"would set ASG {name} from {current} to {decided}", **data)
        if not _by_this_run(record, context):
            note = _note(current, decided)
            await self._call(
                f"record the change on Auto Scaling group {name}",
                "autoscaling:CreateOrUpdateTags",
                lambda aws: aws.autoscaling.create_or_update_tags(
                    Tags=[
                        {
                            "ResourceId": name,
                            "ResourceType": "auto-scaling-group",
                            "Key": SCALED_TAG,
                            "Value": note,
                            "PropagateAtLaunch": False,
                        }
                    ]
                ),
            )
        await self._call(
            f"set the desired capacity of Auto Scaling group {name}",
            "autoscaling:SetDesiredCapacity",
            lambda aws: aws.autoscaling.set_desired_capacity(
                AutoScalingGroupName=name, DesiredCapacity=decided, HonorCooldown=False
            ),
        )
        return ok(f"set ASG {name} from {current} to {decided}", **{**data, "desired": decided})

    @_aws_errors
    async def eks_nodegroup_scale(
        self, params: EksNodegroupScale, context: StepContext
    ) -> StepResult:
        cluster_name, name = params.cluster, params.nodegroup
        what = f"EKS node group {cluster_name}/{name}"
        nodegroup = await self._call(
            f"read {what}",
            "eks:DescribeNodegroup",
            lambda aws: aws.eks.describe_nodegroup(clusterName=cluster_name, nodegroupName=name)[
                "nodegroup"
            ],
        )
        status = nodegroup.get("status", "")
        if status not in ("ACTIVE", "DEGRADED", "UPDATING"):
            return failed(f"{what} is {status}: not scaling it")
        scaling = nodegroup.get("scalingConfig", {})
        current = scaling.get("desiredSize", 0)
        low, high = scaling.get("minSize", 0), scaling.get("maxSize", current)
        cluster = await self._call(
            f"read EKS cluster {cluster_name}",
            "eks:DescribeCluster",
            lambda aws: aws.eks.describe_cluster(name=cluster_name)["cluster"],
        )
        tag = f"{SCALED_TAG}/{name}"
        record = _record(cluster.get("tags", {}).get(tag))
        data = {"desired": current, "min_size": low, "max_size": high}
        decided = _desired(params, what, current, low, high, record, context, data)
        if isinstance(decided, StepResult):
            return decided
        if decided == current:
            return ok(f"{what} is already at {current}", **data)
        if context.dry_run:
            return dry_run(f"would scale {what} from {current} to {decided}", **data)
        if status == "UPDATING":
            raise Transient(f"{what} is being updated: scaling it once it is ACTIVE again")
        if not _by_this_run(record, context):
            note, arn = _note(current, decided), cluster["arn"]
            await self._call(
                f"record the change on EKS cluster {cluster_name}",
                "eks:TagResource",
                lambda aws: aws.eks.tag_resource(resourceArn=arn, tags={tag: note}),
            )
        update = await self._call(
            f"scale {what}",
            "eks:UpdateNodegroupConfig",
            lambda aws: aws.eks.update_nodegroup_config(
                clusterName=cluster_name, nodegroupName=name, scalingConfig={"desiredSize": decided}
            )["update"],
        )
        return ok(
            f"scaling {what} from {current} to {decided} (update {update.get('id')})",
            **{**data, "desired": decided},
            update=update.get("id"),
        )

    @_aws_errors
    async def rds_create_snapshot(
        self, params: RdsCreateSnapshot, context: StepContext
    ) -> StepResult:
        instance = params.instance
        stamp = context.run_started_at.astimezone(UTC).strftime("%Y%m%d%H%M%S")
        identifier = f"{params.prefix}-{instance}-{stamp}".lower()
        described = await self._call(
            f"read DB instance {instance}",
            "rds:DescribeDBInstances",
            lambda aws: aws.rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"],
        )
        if not described:
            return failed(f"no DB instance {instance!r} in {self._clients.region}")
        data: dict[str, Any] = {"snapshot": identifier, "instance": instance}
        snapshot = await self._snapshot(identifier)
        if snapshot is None and context.dry_run:
            state = described[0].get("DBInstanceStatus")
            return dry_run(
                f"would create snapshot {identifier} of DB instance {instance} (now {state})",
                **data,
                status=None,
            )
        done = "found snapshot" if snapshot is not None else "created snapshot"
        if snapshot is None:
            created: DBSnapshotTypeDef = await self._call(
                f"create snapshot {identifier} of DB instance {instance}",
                "rds:CreateDBSnapshot",
                lambda aws: _create_snapshot(aws.rds, identifier, instance),
            )
            snapshot = created
        status = snapshot.get("Status")
        if status != "available" and params.wait_up_to > timedelta(0):
            status = await self._wait_available(identifier, params.wait_up_to)
            if status != "available":
                waited = format_duration(params.wait_up_to)
                return failed(f"snapshot {identifier} is still {status} after {waited}", **data)
        message = f"{done} {identifier} of DB instance {instance} ({status})"
        return ok(message, **data, status=status)

    async def _snapshot(self, identifier: str) -> DBSnapshotTypeDef | None:
        def read(aws: _Clients) -> DBSnapshotTypeDef | None:
            try:
                found = aws.rds.describe_db_snapshots(DBSnapshotIdentifier=identifier)
            except aws.rds.exceptions.DBSnapshotNotFoundFault:
                return None
            return found["DBSnapshots"][0] if found["DBSnapshots"] else None

        return await self._call(f"read snapshot {identifier}", "rds:DescribeDBSnapshots", read)

    async def _wait_available(self, identifier: str, wait_up_to: timedelta) -> str | None:
        deadline = asyncio.get_running_loop().time() + wait_up_to.total_seconds()
        while True:
            snapshot = await self._snapshot(identifier)
            status = snapshot.get("Status") if snapshot is not None else None
            left = deadline - asyncio.get_running_loop().time()
            if status == "available" or left <= 0:
                return status
            await asyncio.sleep(min(SNAPSHOT_POLL, left))


@asynccontextmanager
async def open_aws_actions(
    region: str | None, role_arn: str | None = None, endpoint_url: str | None = None
) -> AsyncIterator[dict[str, Action]]:
    """The aws.* actions for this region, or none without one; their clients closed after."""
    if region is None:
        yield {}
        return
    clients = AwsClients(region, role_arn, endpoint_url)
    try:
        yield AwsActions(clients).actions()
    finally:
        await asyncio.to_thread(clients.close)


def _create_snapshot(rds: RDSClient, identifier: str, instance: str) -> DBSnapshotTypeDef:
    try:
        created = rds.create_db_snapshot(
            DBSnapshotIdentifier=identifier,
            DBInstanceIdentifier=instance,
            Tags=[{"Key": "created-by", "Value": "remediator"}],
        )
    except rds.exceptions.DBSnapshotAlreadyExistsFault:
        # An earlier attempt of this step made it and its answer was lost.
        return rds.describe_db_snapshots(DBSnapshotIdentifier=identifier)["DBSnapshots"][0]
    return created["DBSnapshot"]


def _desired(
    params: Capacity,
    what: str,
    current: int,
    low: int,
    high: int,
    record: Mapping[str, Any],
    context: StepContext,
    data: Mapping[str, Any],
) -> int | StepResult:
    """The capacity to set, within both the resource's and the policy's bounds, or why none."""
    lower, upper = max(low, params.min), min(high, params.max)
    if lower > upper:
        return failed(
            f"{what}: its bounds [{low}, {high}] and the policy's [{params.min}, {params.max}]"
            " do not overlap",
            **data,
        )
    if _by_this_run(record, context):
        return min(max(int(record["to"]), lower), upper)  # a re-run: finish, never add again
    wanted = params.desired if params.desired is not None else current + (params.by or 0)
    desired = min(max(wanted, lower), upper)
    if params.by is not None and (desired - current) * params.by < 0:
        return skipped(
            f"{what} is at {current}, outside [{lower}, {upper}]: not scaling against"
            f" `by: {params.by}`",
            **data,
        )
    return desired


def _note(current: int, desired: int) -> str:
    """A tag value (letters, digits, spaces and `+-=._:/@` only): when, from and to."""
    return f"{_now().isoformat()} from {current} to {desired}"


def _record(value: object) -> dict[str, Any]:
    """One of our tags, parsed; {} when absent or unreadable."""
    if not isinstance(value, str):
        return {}
    parts = value.split()
    if len(parts) != 5 or parts[1] != "from" or parts[3] != "to":
        return {}
    try:
        at = datetime.fromisoformat(parts[0])
        return {"at": _aware(at), "from": int(parts[2]), "to": int(parts[4])}
    except ValueError:
        return {}


def _by_this_run(record: Mapping[str, Any], context: StepContext) -> bool:
    at = record.get("at")
    return isinstance(at, datetime) and at >= context.run_started_at


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_failure(
    exc: ClientError, what: str, permission: str, clients: AwsClients
) -> StepResult:
    """A failed result for AWS's refusal, or Transient when the same call may succeed soon."""
    code = _error_code(exc)
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLED or code in _BUSY or code in _EXPIRED or status == 429 or status >= 500:
        raise Transient(f"{what}: {code or status}: {message}") from exc
    if code in _DENIED:
        who = f"the role {clients.role_arn}" if clients.role_arn else "the service's AWS identity"
        return failed(f"{what}: access denied ({message}): {who} needs {permission}", code=code)
    if code in _NOT_FOUND:
        return failed(f"{what}: not found in {clients.region} ({message})", code=code)
    if code in _INVALID:
        return failed(f"{what}: AWS refused the request: {message}", code=code)
    return failed(f"{what}: {code}: {message}", code=code)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)
