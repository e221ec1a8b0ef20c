"""AWS adapters: S3 for the object store, SNS for notifications.

boto3 is imported inside the constructors (`clinrisk.adapters.boto`), never at module import, so the
domain (and the local backend) runs without it. Every AWS error leaves this module as a
`ClinriskError` subclass whose message names the bucket, key or topic and the AWS error code,
never a payload.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from clinrisk.adapters.boto import client as _client
from clinrisk.adapters.boto import error_code as _error_code
from clinrisk.errors import ClinriskError, ConfigurationError
from clinrisk.ports import ObjectNotFoundError, StoreUnavailableError, TrainingJob

if TYPE_CHECKING:
    from clinrisk.settings import Settings

# Error codes S3 answers with when the object is not there (HeadObject has no body, so only
# the HTTP status survives as the code).
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
SNS_SUBJECT_LIMIT = 100
REGISTRY_LOCK_PATH = Path("/tmp/clinrisk/registry.lock")  # Lambda's only writable disk


class NotificationError(ClinriskError):
    """SNS could not be reached or refused the message."""


class TrainingUnavailableError(ClinriskError):
    """Training was asked of a process that cannot run it (see `UnavailableTrainer`)."""


def _clean_key(key: str, *, allow_empty: bool = False) -> str:
    """Normalise a '/'-separated key ('a//b/./c' → 'a/b/c'); refuse one that climbs out ('..')."""
    parts = [part for part in key.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("object key escapes the store")
    if not parts and not allow_empty:
        raise ValueError("object key is empty")
    return "/".join(parts)


class S3ObjectStore:
    """The ObjectStore port on one S3 bucket, under an optional key prefix.

    Every object is written with SSE-KMS (the bucket's key, or `kms_key_id`). A PutObject
    replaces the object whole, so readers see the old or the new bytes, never a mix. Files of
    a directory are uploaded one PutObject each (5 GB per file at most), so a directory upload
    as a whole is not atomic, as it is not in the local store either.
    """

    def __init__(self, bucket: str, *, prefix: str = "", kms_key_id: str | None = None, client: Any = None) -> None:
        if not bucket:
            raise ValueError("bucket is empty")
        self.bucket = bucket
        self.prefix = _clean_key(prefix, allow_empty=True)
        self.kms_key_id = kms_key_id
        self.client = client if client is not None else _client("s3")

    # ------------------------------------------------------------------ keys

    def _key(self, key: str, *, allow_empty: bool = False) -> str:
        cleaned = _clean_key(key, allow_empty=allow_empty)
        return "/".join(part for part in (self.prefix, cleaned) if part)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key, allow_empty=True)}"

    def _unavailable(self, operation: str, key: str, error: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(f"S3 {operation} on s3://{self.bucket}/{key} failed: {_error_code(error)}")

    @property
    def _encryption(self) -> dict[str, str]:
        args = {"ServerSideEncryption": "aws:kms"}
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    # ------------------------------------------------------------------ objects

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        full = self._key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            return bytes(response["Body"].read())
        except ClientError as error:
            if _error_code(error) in _NOT_FOUND_CODES:
                raise ObjectNotFoundError(f"no object at s3://{self.bucket}/{full}") from None
            raise self._unavailable("GetObject", full, error) from error
        except BotoCoreError as error:
            raise self._unavailable("GetObject", full, error) from error

    def write_bytes(self, key: str, data: bytes) -> None:
        self._put(self._key(key), data)

    def _put(self, full: str, body: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=body, **self._encryption)
        except (ClientError, BotoCoreError) as error:
            raise self._unavailable("PutObject", full, error) from error

    def exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as error:
            if _error_code(error) in _NOT_FOUND_CODES:
                return False
            raise self._unavailable("HeadObject", full, error) from error
        except BotoCoreError as error:
            raise self._unavailable("HeadObject", full, error) from error
        return True

    # ------------------------------------------------------------------ directories

    def upload_dir(self, directory: Path, prefix: str) -> None:
        """Put every file under `directory` at `prefix/<its relative path>`."""
        if not directory.is_dir():
            raise FileNotFoundError(f"no directory {directory} to upload")
        base = self._key(prefix, allow_empty=True)
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            relative = path.relative_to(directory).as_posix()
            with path.open("rb") as body:
                self._put("/".join(part for part in (base, relative) if part), body)

    def download_dir(self, prefix: str, directory: Path) -> None:
        """Copy every object under `prefix/` into `directory`, keeping the relative paths."""
        base = self._key(prefix, allow_empty=True)
        listed = f"{base}/" if base else ""
        keys = self._list(listed)
        if not keys:
            raise ObjectNotFoundError(f"no objects under s3://{self.bucket}/{listed}")
        root = directory.resolve()
        for key in keys:
            relative = PurePosixPath(key[len(listed) :])
            target = (root / relative).resolve()
            if not target.is_relative_to(root):
                raise ValueError("object key escapes the target directory")
            self._download(key, target)

    def _list(self, listed: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=listed):
                # Keys ending in '/' are the empty "folder" objects the S3 console creates.
                keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
        except (ClientError, BotoCoreError) as error:
            raise self._unavailable("ListObjectsV2", listed, error) from error
        return keys

    def _download(self, key: str, target: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with target.open("wb") as handle:
                shutil.copyfileobj(body, handle)
        except (ClientError, BotoCoreError) as error:
            target.unlink(missing_ok=True)
            raise self._unavailable("GetObject", key, error) from error


class SnsNotifier:
    """The Notifier port on one SNS topic: the subject as the e-mail subject, the message as JSON."""

    def __init__(self, topic_arn: str, *, client: Any = None) -> None:
        self.topic_arn = topic_arn
        self.client = client if client is not None else _client("sns", _region_of(topic_arn))

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        arguments: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Message": json.dumps(message, default=str, sort_keys=True),
        }
        cleaned = sns_subject(subject)
        if cleaned:
            arguments["Subject"] = cleaned
        try:
            self.client.publish(**arguments)
        except (ClientError, BotoCoreError) as error:
            raise NotificationError(f"SNS Publish to {self.topic_arn} failed: {_error_code(error)}") from error


def sns_subject(subject: str) -> str:
    """A subject SNS accepts: no line breaks or control characters, at most 100 characters."""
    single_line = " ".join("".join(c if c.isprintable() else " " for c in subject).split())
    if len(single_line) <= SNS_SUBJECT_LIMIT:
        return single_line
    return single_line[: SNS_SUBJECT_LIMIT - 3].rstrip() + "..."


def _region_of(arn: str) -> str | None:
    """arn:aws:sns:REGION:ACCOUNT:NAME → REGION (a topic is reached in its own region)."""
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


class UnavailableTrainer:
    """The Trainer port of the AWS backend, which never trains from inside a Lambda.

    In the cloud the retraining state machine (Step Functions, a later issue) runs training
    itself, as a SageMaker training job task (`sagemaker_jobs/train.py` in script mode), and
    hands the model prefix to the evaluate Lambda. Nothing in a Lambda should call `train`;
    this adapter says so clearly instead of starting an untracked job.
    """

    def train(self, job: TrainingJob) -> None:
        raise TrainingUnavailableError(
            f"training in the cloud runs as a Step Functions task (a SageMaker training job), "
            f"not through the Trainer port; job {job.name} was not started"
        )


class UnconfiguredNotifier:
    """Stands in when no alerts topic is set: stages that never notify (evaluate, promote) run;
    one that does fails with a message naming the setting."""

    def publish(self, subject: str, message: dict[str, Any]) -> None:
        raise ConfigurationError("CLINRISK_ALERTS_TOPIC_ARN is not set; the aws backend publishes notifications to it")


def step_functions_client(settings: Settings) -> Any:
    return _client("stepfunctions", settings.aws_region)


def aws_store(settings: Settings) -> S3ObjectStore:
    """The artifacts bucket: models, channels and the serving pointer."""
    if not settings.artifacts_bucket:
        raise ConfigurationError(
            "CLINRISK_ARTIFACTS_BUCKET is not set; the aws backend keeps artifacts and the serving pointer there"
        )
    return S3ObjectStore(
        settings.artifacts_bucket, kms_key_id=settings.kms_key_id, client=_client("s3", settings.aws_region)
    )


def caller_principal(client: Any) -> str:
    """Who is acting in the cloud: the IAM principal of the credentials (STS GetCallerIdentity),
    recorded with every manual promotion and rollback. `client` is a boto3 STS client."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return str(client.get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError) as error:
        raise ConfigurationError(
            f"cannot tell who is acting (STS GetCallerIdentity: {_error_code(error)}); a promotion or rollback"
            " is recorded with its principal, so it was not done"
        ) from None


def acting_principal(settings: Settings) -> str:
    """The principal a registry change is recorded under: the IAM principal on aws, the OS user locally."""
    if settings.backend != "aws":
        from clinrisk.registry.model_registry import local_user

        return local_user()
    return caller_principal(_client("sts", settings.aws_region))
