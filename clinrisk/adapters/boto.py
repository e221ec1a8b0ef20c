"""What every AWS adapter shares: one way to make a boto3 client, one way to name an AWS error.

boto3 is imported inside `client`, never at module import, so the domain and the local backend
run without it.
"""

from __future__ import annotations

from typing import Any


def error_code(error: Exception) -> str:
    """The AWS error code of a ClientError, or the class name of any other botocore error."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(error).__name__))
    return type(error).__name__


def client(service: str, region: str | None = None) -> Any:
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=60)
    return boto3.client(service, region_name=region, config=config)
