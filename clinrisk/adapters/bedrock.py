"""Bedrock: the narrative writer (Converse with a Guardrail) and Titan Text Embeddings v2.

The Converse request puts the retrieved passages in a `guardContent` block qualified as the
grounding source and the question as the query, so the Guardrail's contextual grounding check
scores the answer against exactly what was retrieved; its sensitive-information filters and the
denied topic (prescribing or dosing) apply to the same call. A guardrail intervention comes back
as `guardrail_action="INTERVENED"`; throttling, timeouts and unreachable endpoints raise
`GenerationUnavailableError`. The explain domain degrades on both.

The model id comes from cdk.json (`bedrock.textModelId`); where a model is offered only through a
cross-region inference profile, the profile id (e.g. `us.amazon.nova-lite-v1:0`) is the model id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from clinrisk.adapters.aws import _error_code
from clinrisk.explain.brief import Brief
from clinrisk.explain.ports import Draft, GenerationUnavailableError
from clinrisk.explain.prompt import numbers_text, passages_text, question, system_prompt
from clinrisk.settings import Settings

MAX_TOKENS = 700
# Bedrock errors that mean "not now": the caller degrades and may retry later.
_UNAVAILABLE = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelTimeoutException",
        "ModelNotReadyException",
        "InternalServerException",
        "ModelErrorException",
    }
)


def bedrock_runtime(region: str | None, *, read_timeout: float) -> Any:
    """A bedrock-runtime client whose own timeouts fit the explanation budget; one retry at most,
    since the budget leaves no room for botocore's default backoff."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        read_timeout=read_timeout,
        connect_timeout=min(3.0, read_timeout),
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.client("bedrock-runtime", region_name=region, config=config)


def _unavailable(what: str, error: Exception) -> GenerationUnavailableError:
    return GenerationUnavailableError(f"{what} failed: {_error_code(error)}")


@dataclass(frozen=True)
class BedrockWriter:
    client: Any
    model_id: str
    guardrail_id: str | None
    guardrail_version: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> BedrockWriter:
        explain = settings.explain
        client = bedrock_runtime(settings.aws_region, read_timeout=explain.budget_seconds)
        return cls(client, explain.text_model_id, explain.guardrail_id, explain.guardrail_version)

    def request(self, brief: Brief) -> dict[str, Any]:
        content = [
            {"guardContent": {"text": {"text": passages_text(brief), "qualifiers": ["grounding_source"]}}},
            {"guardContent": {"text": {"text": question(brief), "qualifiers": ["query"]}}},
            {"text": numbers_text(brief)},
        ]
        request: dict[str, Any] = {
            "modelId": self.model_id,
            "system": [{"text": system_prompt(brief)}],
            "messages": [{"role": "user", "content": content}],
            "inferenceConfig": {"maxTokens": MAX_TOKENS, "temperature": 0.0},
        }
        if self.guardrail_id and self.guardrail_version:
            request["guardrailConfig"] = {
                "guardrailIdentifier": self.guardrail_id,
                "guardrailVersion": self.guardrail_version,
                "trace": "enabled",
            }
        return request

    def write(self, brief: Brief, *, timeout: float) -> Draft:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            response = self.client.converse(**self.request(brief))
        except ClientError as error:
            code = _error_code(error)
            if code in _UNAVAILABLE:
                raise _unavailable("Bedrock Converse", error) from None
            raise GenerationUnavailableError(f"Bedrock Converse refused the request: {code}") from None
        except BotoCoreError as error:  # read or connect timeout, endpoint unreachable
            raise _unavailable("Bedrock Converse", error) from None
        intervened = response.get("stopReason") == "guardrail_intervened"
        text = " ".join(block["text"] for block in response["output"]["message"]["content"] if "text" in block)
        return Draft(text=text, model_id=self.model_id, guardrail_action="INTERVENED" if intervened else "NONE")


@dataclass(frozen=True)
class TitanEmbedder:
    """Titan Text Embeddings v2: one InvokeModel per text (the model takes one input), normalised."""

    client: Any
    model_id: str
    dimensions: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TitanEmbedder:
        explain = settings.explain
        client = bedrock_runtime(settings.aws_region, read_timeout=explain.budget_seconds)
        return cls(client, explain.embedding_model_id, explain.embedding_dimensions)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.array([self._one(text) for text in texts], dtype=np.float32).reshape(len(texts), self.dimensions)

    def _one(self, text: str) -> list[float]:
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps({"inputText": text, "dimensions": self.dimensions, "normalize": True})
        try:
            response = self.client.invoke_model(
                modelId=self.model_id, body=body, contentType="application/json", accept="application/json"
            )
        except (ClientError, BotoCoreError) as error:
            raise _unavailable("Titan embeddings", error) from None
        vector: list[float] = json.loads(response["body"].read())["embedding"]
        if len(vector) != self.dimensions:
            raise GenerationUnavailableError(f"Titan returned {len(vector)} dimensions, not {self.dimensions}")
        return vector
