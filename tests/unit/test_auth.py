"""Local bearer tokens: issuing, verifying like the Cognito authorizer, the signing key file, the
scopes handlers read from API Gateway events, and `clinrisk token create`."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from clinrisk.local.cli import app
from clinrisk.serving.auth import (
    LOCAL_ISSUER,
    SIGNING_KEY_FILE,
    InvalidTokenError,
    SigningKeyError,
    TokenVerifier,
    UnknownScopeError,
    create_token,
    granted_scopes,
    load_signing_key,
)
from clinrisk.settings import Settings

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def _event(scope: Any) -> dict[str, Any]:
    return {"requestContext": {"authorizer": {"claims": {"scope": scope}}}}


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": LOCAL_ISSUER,
        "sub": "someone",
        "client_id": "client",
        "token_use": "access",
        "scope": "clinrisk/predict",
        "iat": now,
        "exp": now + 3600,  # tokens are built at collection time, long before some tests run
        "jti": "j",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


# --------------------------------------------------------------------------- granted_scopes


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("clinrisk/predict clinrisk/explain", {"predict", "explain"}),
        ("predict", {"predict"}),
        ("clinrisk/admin  aws.cognito.signin.user.admin other/predict", {"admin"}),
        ("clinrisk/unknown", set()),
        ("", set()),
        (["clinrisk/predict"], set()),  # not a string: the authorizer never sends that
    ],
)
def test_granted_scopes_reads_the_scope_claim(scope: Any, expected: set[str]) -> None:
    assert granted_scopes(_event(scope)) == expected


@pytest.mark.parametrize(
    "event",
    [{}, {"requestContext": None}, {"requestContext": {}}, {"requestContext": {"authorizer": None}},
     {"requestContext": {"authorizer": {"claims": None}}}, {"requestContext": {"authorizer": {"claims": {}}}}],
)  # fmt: skip
def test_granted_scopes_is_empty_when_anything_is_absent(event: dict[str, Any]) -> None:
    assert granted_scopes(event) == frozenset()


# --------------------------------------------------------------------------- tokens


def test_a_created_token_verifies_and_has_the_cognito_access_token_claims() -> None:
    token = create_token(KEY, ["predict", "explain", "predict"], subject="ehr", ttl_seconds=120)
    claims = TokenVerifier(KEY).verify(token)
    assert claims["scope"] == "clinrisk/predict clinrisk/explain"
    assert claims["token_use"] == "access"
    assert claims["sub"] == "ehr"
    assert claims["iss"] == LOCAL_ISSUER
    assert claims["exp"] - claims["iat"] == 120
    assert {"client_id", "jti"} <= claims.keys()
    assert granted_scopes(_event(claims["scope"])) == {"predict", "explain"}


def test_unknown_or_no_scope_cannot_be_issued() -> None:
    with pytest.raises(UnknownScopeError, match="unknown scope"):
        create_token(KEY, ["predict", "delete"])
    with pytest.raises(UnknownScopeError, match="at least one"):
        create_token(KEY, [])


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (create_token(KEY, ["predict"], now=int(time.time()) - 7200, ttl_seconds=60), "expired"),
        (create_token(OTHER_KEY, ["predict"]), "bad signature"),
        (create_token(KEY, ["predict"], issuer="https://cognito-idp.example/other"), "wrong issuer"),
        ("not-a-jwt", "malformed"),
        (jwt.encode(_claims(scope=None), KEY, algorithm="HS256"), "a required claim is missing"),
        (jwt.encode(_claims(aud="someone-else"), KEY, algorithm="HS256"), "wrong audience \\(aud\\)"),
        (jwt.encode(_claims(), KEY * 2, algorithm="HS512"), "algorithm not allowed"),
        (jwt.encode(_claims(), "", algorithm="none"), "algorithm not allowed"),
        (jwt.encode(_claims(token_use="id"), KEY, algorithm="HS256"), "not an access token"),
    ],
)
def test_tokens_the_authorizer_refuses(token: str, reason: str) -> None:
    with pytest.raises(InvalidTokenError, match=reason):
        TokenVerifier(KEY).verify(token)


def test_client_ids_play_the_part_of_the_audience() -> None:
    token = create_token(KEY, ["predict"], client_id="ehr-app")
    assert TokenVerifier(KEY, client_ids={"ehr-app"}).verify(token)["client_id"] == "ehr-app"
    with pytest.raises(InvalidTokenError, match="client_id"):
        TokenVerifier(KEY, client_ids={"care-tool"}).verify(token)


def test_refusals_never_quote_the_token() -> None:
    token = create_token(OTHER_KEY, ["predict"])
    with pytest.raises(InvalidTokenError) as caught:
        TokenVerifier(KEY).verify(token)
    assert token not in str(caught.value)
    assert not any(part in str(caught.value) for part in token.split("."))
    assert "k" * 32 not in repr(TokenVerifier(KEY))


# --------------------------------------------------------------------------- signing key


def test_the_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "home" / SIGNING_KEY_FILE
    key = load_signing_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path) == key
    assert [p.name for p in path.parent.iterdir()] == [SIGNING_KEY_FILE]  # no temporary file left


def test_concurrent_first_uses_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / SIGNING_KEY_FILE
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait()
        keys.append(load_signing_key(path))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1


def test_a_key_others_can_read_or_a_short_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / SIGNING_KEY_FILE
    load_signing_key(path)
    path.chmod(0o644)
    with pytest.raises(SigningKeyError, match="chmod 600"):
        load_signing_key(path)
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(SigningKeyError, match="shorter"):
        load_signing_key(path)


# --------------------------------------------------------------------------- clinrisk token create


def test_cli_prints_only_a_token_the_verifier_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        app, ["token", "create", "--scope", "predict", "--scope", "explain", "--ttl-minutes", "5", "--subject", "ehr"]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token
    claims = TokenVerifier.from_settings(Settings()).verify(token)
    assert granted_scopes(_event(claims["scope"])) == {"predict", "explain"}
    assert claims["sub"] == "ehr"
    assert claims["exp"] - claims["iat"] == 300
    key_file = tmp_path / "home" / SIGNING_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--scope", "predict", "--scope", "delete"], "unknown scope delete"),
        ([], "--scope"),
        (["--scope", "predict", "--ttl-minutes", "0"], "ttl-minutes"),
    ],
)
def test_cli_bad_input_exits_2(
    arguments: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["token", "create", *arguments])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""
