"""The HMAC key that signs approval links (clinrisk.registry.approval): a Secrets Manager secret, generated
at deploy time, encrypted with the data key, readable by the two approval Lambdas only.

Rotation is manual on purpose: a rotated key invalidates every approve/reject link already e-mailed
(they are signed with the old key), so it is done between approval requests with
`aws secretsmanager rotate-secret` / `put-secret-value`, not on a timer that could silently void a
pending decision. The decision Lambda reads the key once per cold start (`signing_secret`).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk_app.compliance import acknowledge

# 64 characters from letters and digits: ~380 bits, above HMAC-SHA256's 256 and clinrisk.registry.approval's
# MIN_SECRET_BYTES (32).
SECRET_LENGTH = 64


class ApprovalSecret(Construct):
    secret: secretsmanager.Secret

    def __init__(self, scope: Construct, id: str, *, key: kms.IKey, env_name: str) -> None:
        super().__init__(scope, id)
        self._key = key
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description=f"clinrisk {env_name}: HMAC-SHA256 key that signs model approval links",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=SECRET_LENGTH, exclude_punctuation=True, include_space=False
            ),
            removal_policy=RemovalPolicy.DESTROY,  # a new key only voids links that are pending anyway
        )
        for rule in ("AwsSolutions-SMG4", "HIPAA.Security-SecretsManagerRotationEnabled"):
            acknowledge(
                self.secret,
                rule,
                "Rotating this HMAC key voids every approval link already e-mailed, so a scheduled rotation could"
                " silently cancel a pending model approval; operators rotate it between approvals (see the"
                " construct's docstring). It guards approval links only, never patient data.",
            )

    def grant_read(self, principal: iam.IGrantable) -> None:
        """GetSecretValue on this secret and Decrypt with its key, explicitly (no wildcard actions)."""
        policy = principal.grant_principal
        policy.add_to_principal_policy(
            iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=[self.secret.secret_arn])
        )
        policy.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:Decrypt"],
                resources=[self._key.key_arn],
                # Only as Secrets Manager decrypts the secret: the data key protects patient data too.
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{Stack.of(self).region}.amazonaws.com"}
                },
            )
        )
