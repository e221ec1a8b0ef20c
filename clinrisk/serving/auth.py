"""Local bearer tokens that stand in for Cognito access tokens, and the scope check handlers share.

In the cloud a Cognito user pool issues access tokens and API Gateway's Cognito authorizer checks
them. Locally, `clinrisk token create` issues HS256 JWTs with the same claims (iss, sub, client_id,
token_use "access", scope, iat, exp, jti), signed with a key kept in the clinrisk home directory,
and `TokenVerifier` checks them for the local API server. Handlers never see tokens, only the
claims the authorizer passes on; `granted_scopes` reads the scopes from those claims.

Tokens and the key are secrets: nothing here logs them or puts them in an exception message.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import jwt

from clinrisk.errors import ClinriskError
from clinrisk.settings import Settings

RESOURCE_SERVER: Final = "clinrisk"
"""The Cognito resource server identifier: scopes travel as "clinrisk/<scope>"."""
SCOPES: Final = ("predict", "explain", "admin")

LOCAL_ISSUER: Final = "clinrisk-local"
LOCAL_CLIENT_ID: Final = "clinrisk-local-cli"
SIGNING_KEY_FILE: Final = "api-signing.key"
DEFAULT_TTL_SECONDS: Final = 3600

_ALGORITHM: Final = "HS256"
_KEY_BYTES: Final = 32
_REQUIRED_CLAIMS: Final = ("iss", "sub", "client_id", "token_use", "scope", "iat", "exp", "jti")


class UnknownScopeError(ClinriskError):
    """A scope name that clinrisk does not define."""


class InvalidTokenError(ClinriskError):
    """A token that must be refused. The message names the reason, never the token."""


# Why PyJWT refused a token, in words for the log; looked up along the exception's class hierarchy
# (InvalidSignatureError is a DecodeError, ExpiredSignatureError an InvalidTokenError).
_REFUSALS: Final[dict[type[jwt.PyJWTError], str]] = {
    jwt.ExpiredSignatureError: "expired",
    jwt.InvalidSignatureError: "bad signature",
    jwt.InvalidAlgorithmError: "algorithm not allowed",
    jwt.InvalidAudienceError: "wrong audience (aud)",
    jwt.InvalidIssuerError: "wrong issuer",
    jwt.ImmatureSignatureError: "not valid yet",
    jwt.MissingRequiredClaimError: "a required claim is missing",
    jwt.DecodeError: "malformed",
}


class SigningKeyError(ClinriskError):
    """The local signing key file is unreadable, too short, or readable by others."""


# --------------------------------------------------------------------------- scopes


def qualified_scope(name: str) -> str:
    """ "predict" → "clinrisk/predict", the form Cognito puts in the `scope` claim."""
    if name not in SCOPES:
        raise UnknownScopeError(f"unknown scope {name!r}; choose from {', '.join(SCOPES)}")
    return f"{RESOURCE_SERVER}/{name}"


def granted_scopes(event: Mapping[str, Any]) -> frozenset[str]:
    """The short scope names ("predict", ...) granted to an API Gateway REST proxy event.

    Reads `requestContext.authorizer.claims.scope`, a space-separated string as the Cognito
    authorizer passes it. Accepts "clinrisk/predict" and bare "predict"; ignores other resource
    servers' scopes and unknown names. Anything absent or of the wrong type grants nothing.
    """
    context = event.get("requestContext")
    authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
    claims = authorizer.get("claims") if isinstance(authorizer, Mapping) else None
    scope = claims.get("scope") if isinstance(claims, Mapping) else None
    if not isinstance(scope, str):
        return frozenset()
    prefix = f"{RESOURCE_SERVER}/"
    names = (item.removeprefix(prefix) for item in scope.split())
    return frozenset(name for name in names if name in SCOPES)


# --------------------------------------------------------------------------- signing key


def signing_key_path(settings: Settings | None = None) -> Path:
    return (settings or Settings()).home_dir / SIGNING_KEY_FILE


def load_signing_key(path: Path) -> bytes:
    """The key at `path`, created on first use (32 random bytes, mode 0600).

    Creation is atomic and race-free: the key is written to a private temporary file and then
    hard-linked into place, which fails if another process got there first; in that case its key
    wins and is read back. So concurrent first uses never end with two different keys in play.
    """
    if not path.exists():
        _create_key_file(path)
    return _read_key_file(path)


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(secrets.token_bytes(_KEY_BYTES))
            stream.flush()
            os.fsync(stream.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: use that one
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        key = path.read_bytes()
    except OSError as error:
        raise SigningKeyError(f"cannot read the API signing key {path}: {error.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"the API signing key {path} is accessible by other users; run: chmod 600 {path}")
    if len(key) < _KEY_BYTES:
        raise SigningKeyError(
            f"the API signing key {path} is shorter than {_KEY_BYTES} bytes; delete it to make a new one"
        )
    return key


# --------------------------------------------------------------------------- tokens


def create_token(
    key: bytes,
    scopes: Iterable[str],
    *,
    subject: str = "local-user",
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    issuer: str = LOCAL_ISSUER,
    client_id: str = LOCAL_CLIENT_ID,
    now: int | None = None,
) -> str:
    """An HS256 JWT shaped like a Cognito access token, granting `scopes` (short names)."""
    names = list(dict.fromkeys(scopes))  # de-duplicated, order kept
    if not names:
        raise UnknownScopeError(f"a token needs at least one scope; choose from {', '.join(SCOPES)}")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    issued_at = int(time.time()) if now is None else now
    claims = {
        "iss": issuer,
        "sub": subject,
        "client_id": client_id,
        "token_use": "access",
        "scope": " ".join(qualified_scope(name) for name in names),
        "iat": issued_at,
        "exp": issued_at + ttl_seconds,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm=_ALGORITHM)


def issue_token(scopes: Iterable[str], *, subject: str, ttl_seconds: int, settings: Settings | None = None) -> str:
    """A token signed with the local key of `settings`' home (the key is created on first use)."""
    return create_token(load_signing_key(signing_key_path(settings)), scopes, subject=subject, ttl_seconds=ttl_seconds)


class TokenVerifier:
    """Checks a bearer token the way the Cognito authorizer does, and returns its claims.

    Checked: the HS256 signature (no other algorithm is accepted, so "none" and algorithm-confusion
    tokens fail), expiry, issuer, `token_use == "access"`, that every claim of a Cognito access
    token is present, and, when `client_ids` is given, that the token's `client_id` is one of them
    (access tokens carry `client_id` where ID tokens carry `aud`). A token with an `aud` claim is
    refused: it is not an access token.
    """

    def __init__(
        self,
        key: bytes,
        *,
        issuer: str = LOCAL_ISSUER,
        client_ids: Collection[str] | None = None,
        leeway_seconds: int = 0,
    ) -> None:
        self._key = key
        self._issuer = issuer
        self._client_ids = frozenset(client_ids) if client_ids is not None else None
        self._leeway = leeway_seconds

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> TokenVerifier:
        """A verifier for tokens signed with the local key (created on first use)."""
        return cls(load_signing_key(signing_key_path(settings)))

    def __repr__(self) -> str:  # never show the key
        return f"TokenVerifier(issuer={self._issuer!r})"

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises `InvalidTokenError` with a short reason if it must be refused."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(_REQUIRED_CLAIMS)},
            )
        except jwt.PyJWTError as error:
            # Which check failed, from the exception's class; its message is left out because a
            # DecodeError may describe the token's contents.
            raise InvalidTokenError(_refusal(error)) from None
        self._check_cognito_claims(claims)
        return claims

    def _check_cognito_claims(self, claims: Mapping[str, Any]) -> None:
        if claims.get("token_use") != "access":
            raise InvalidTokenError("not an access token (token_use)")
        if not isinstance(claims.get("scope"), str):
            raise InvalidTokenError("the scope claim is not a string")
        if self._client_ids is not None and claims.get("client_id") not in self._client_ids:
            raise InvalidTokenError("wrong audience (unknown client_id)")


def _refusal(error: jwt.PyJWTError) -> str:
    return next((_REFUSALS[cls] for cls in type(error).__mro__ if cls in _REFUSALS), type(error).__name__)
