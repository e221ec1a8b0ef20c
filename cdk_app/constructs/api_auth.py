"""The Cognito user pool that issues the API's access tokens, its resource server and its machine client.

Callers are systems (an EHR integration, a care-management tool), so the one app client uses the
OAuth client-credentials flow with a client secret: it asks the pool's token endpoint (the Cognito
domain) for an access token whose `scope` claim carries "clinrisk/predict" and "clinrisk/explain".
The resource server's identifier and scope names come from `clinrisk.serving.auth`, which the handlers use
to read the scopes back, so the cloud and the local token issuer cannot drift apart.

People are not expected to sign in; if an operator account is ever created (only by an
administrator: self sign-up is off), it needs a strong password and a TOTP second factor.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, Fn, RemovalPolicy
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from clinrisk.serving.auth import RESOURCE_SERVER, SCOPES

SCOPE_DESCRIPTIONS: dict[str, str] = {
    "predict": "Score encounters (POST /v1/predict, GET /v1/model)",
    "explain": "Explain a score in plain language",
    "admin": "Operate clinrisk (approvals, model management)",
}
# What the machine client may ask for; `admin` is for operators, not for integrations.
MACHINE_CLIENT_SCOPES = ("predict", "explain")
ACCESS_TOKEN_VALIDITY = Duration.hours(1)


class ApiAuth(Construct):
    """`user_pool` backs the API's authorizer; `scopes["predict"]` is the OAuth scope object."""

    user_pool: cognito.UserPool
    resource_server: cognito.UserPoolResourceServer
    scopes: dict[str, cognito.OAuthScope]
    machine_client: cognito.UserPoolClient
    domain: cognito.UserPoolDomain

    def __init__(self, scope: Construct, id: str, *, env_name: str) -> None:
        super().__init__(scope, id)
        self.user_pool = self._user_pool(env_name)
        self.resource_server = self.user_pool.add_resource_server(
            "ResourceServer",
            identifier=RESOURCE_SERVER,
            user_pool_resource_server_name=f"clinrisk-{env_name}",
            scopes=[_scope(name) for name in SCOPES],
        )
        self.scopes = {name: cognito.OAuthScope.resource_server(self.resource_server, _scope(name)) for name in SCOPES}
        self.machine_client = self._machine_client()
        # The token endpoint: https://<prefix>.auth.<region>.amazoncognito.com/oauth2/token. The
        # prefix must be unique in the region across all accounts, hence the account id in it.
        self.domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=Fn.join("-", ["clinrisk", env_name, Aws.ACCOUNT_ID])
            ),
        )

    @staticmethod
    def qualified(name: str) -> str:
        """ "predict" → "clinrisk/predict", the form method authorization scopes name."""
        return f"{RESOURCE_SERVER}/{name}"

    def _user_pool(self, env_name: str) -> cognito.UserPool:
        return cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=f"clinrisk-{env_name}",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True, username=False),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            mfa=cognito.Mfa.REQUIRED,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=14,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            # Threat protection (compromised credentials, adaptive authentication) needs the Plus plan.
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _machine_client(self) -> cognito.UserPoolClient:
        return self.user_pool.add_client(
            "MachineClient",
            user_pool_client_name="clinrisk-machine",
            generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(client_credentials=True),
                scopes=[self.scopes[name] for name in MACHINE_CLIENT_SCOPES],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            access_token_validity=ACCESS_TOKEN_VALIDITY,
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )


def _scope(name: str) -> cognito.ResourceServerScope:
    return cognito.ResourceServerScope(scope_name=name, scope_description=SCOPE_DESCRIPTIONS[name])
