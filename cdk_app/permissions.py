"""IAM statements with explicit actions, for wiring pieces together.

The CDK's `grant_*` helpers on buckets and keys add wildcard actions (`s3:GetObject*`,
`s3:List*`, `kms:GenerateDataKey*`, `kms:ReEncrypt*`). clinrisk's rule is no wildcard actions
anywhere (tests/infrastructure checks every policy), so stacks grant through these functions,
which name each action the code actually calls. Object keys are scoped by prefix; the `*` after
a prefix is the only wildcard resource, and the caller acknowledges it with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns

# S3 with SSE-KMS: a GET needs Decrypt; a PUT needs GenerateDataKey, and Decrypt for multipart uploads.
KMS_DECRYPT = ("kms:Decrypt",)
KMS_ENCRYPT = ("kms:GenerateDataKey", "kms:Decrypt")


def _objects(bucket: s3.IBucket, prefixes: Sequence[str]) -> list[str]:
    return [bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes]


def allow_read_objects(
    principal: iam.IGrantable, bucket: s3.IBucket, *, key: kms.IKey, prefixes: Sequence[str] = ("",)
) -> None:
    """GetObject (and ListBucket, limited to the prefixes) under `prefixes` of `bucket`."""
    _add(principal, ["s3:GetObject"], _objects(bucket, prefixes))
    _add(
        principal,
        ["s3:ListBucket"],
        [bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in prefixes]}} if any(prefixes) else None,
    )
    _add(principal, list(KMS_DECRYPT), [key.key_arn])


def allow_write_objects(
    principal: iam.IGrantable, bucket: s3.IBucket, *, key: kms.IKey, prefixes: Sequence[str] = ("",)
) -> None:
    """PutObject under `prefixes` of `bucket` (SSE-KMS with `key`)."""
    _add(principal, ["s3:PutObject"], _objects(bucket, prefixes))
    _add(principal, list(KMS_ENCRYPT), [key.key_arn])


def allow_publish(principal: iam.IGrantable, topic: sns.ITopic, *, key: kms.IKey) -> None:
    """Publish to a KMS-encrypted topic."""
    _add(principal, ["sns:Publish"], [topic.topic_arn])
    _add(principal, list(KMS_ENCRYPT), [key.key_arn])


def _add(
    principal: iam.IGrantable,
    actions: list[str],
    resources: list[str],
    *,
    conditions: dict[str, object] | None = None,
) -> None:
    principal.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=actions, resources=resources, conditions=conditions)
    )
