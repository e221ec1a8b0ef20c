"""Bedrock through botocore's Stubber, which validates every request against the real
bedrock-runtime service model: the Converse request (guardContent grounding source and query,
guardrail), Titan embeddings, and each way a reply can go wrong, through the explain domain's
narrative step (verification, fallback, degradation)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import ReadTimeoutError  # type: ignore[import-untyped]
from botocore.response import StreamingBody  # type: ignore[import-untyped]
from botocore.stub import Stubber  # type: ignore[import-untyped]

from clinrisk.adapters.bedrock import BedrockWriter, TitanEmbedder
from clinrisk.explain.brief import Brief
from clinrisk.explain.corpus import Chunk
from clinrisk.explain.deadline import Deadline
from clinrisk.explain.ports import GenerationUnavailableError
from clinrisk.explain.service import write_narrative
from clinrisk.explain.similar import summarise
from clinrisk.explain.writer import WRITER_ID
from clinrisk.serving.scoring import RiskFactor

MODEL = "us.amazon.nova-lite-v1:0"
PASSAGE = Chunk(
    id="lace-index#1-0123456789abcdef",
    doc_id="lace-index",
    number=1,
    content_hash="0123456789abcdef",
    heading_path=("The LACE index", "Length of stay"),
    text="Longer stays earn more points.",
    title="The LACE index",
    source="van Walraven C, et al. CMAJ 2010",
    url="https://doi.org/10.1503/cmaj.091117",
    task="readmission",
    factors=("time_in_hospital",),
)
FACTOR = RiskFactor(
    factor="time_in_hospital", label="time in hospital", value="9", contribution=0.3, direction="increases"
)
SIMILAR = summarise([1] * 9 + [0] * 41, {"age": ["[70-80)"] * 50}, model_version=1)  # 18.0%
BRIEF = Brief("readmission", 0.2341, "high", (FACTOR,), (PASSAGE,), {"time_in_hospital": (PASSAGE.id,)}, SIMILAR)


def reply(text: str, stop: str = "end_turn") -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop,
        "usage": {"inputTokens": 10, "outputTokens": 10, "totalTokens": 20},
        "metrics": {"latencyMs": 5},
    }


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-runtime", region_name="us-east-1")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def writer(client: Any) -> BedrockWriter:
    return BedrockWriter(client, MODEL, guardrail_id="gr-abc123", guardrail_version="1")


def expected_request() -> dict[str, Any]:
    return writer(boto3.client("bedrock-runtime", region_name="us-east-1")).request(BRIEF)


def narrate(client: Any, budget: float = 5.0) -> tuple[Any, Any, list[str]]:
    reasons: list[str] = []
    draft, verified = write_narrative(BRIEF, writer(client), Deadline(budget), reasons)
    return draft, verified, reasons


def test_the_converse_request_grounds_on_the_passages_with_the_guardrail(client: Any, stubber: Stubber) -> None:
    request = expected_request()
    content = request["messages"][0]["content"]
    assert content[0]["guardContent"]["text"]["qualifiers"] == ["grounding_source"]
    assert PASSAGE.id in content[0]["guardContent"]["text"]["text"]
    assert content[1]["guardContent"]["text"]["qualifiers"] == ["query"]
    assert "23.4%" in content[2]["text"] and "18.0%" in content[2]["text"]
    assert request["guardrailConfig"] == {
        "guardrailIdentifier": "gr-abc123",
        "guardrailVersion": "1",
        "trace": "enabled",
    }
    assert "square brackets" in request["system"][0]["text"] and "dose" in request["system"][0]["text"]
    text = f"The model estimates a 23.4% probability. Longer stays add risk [{PASSAGE.id}]."
    stubber.add_response("converse", reply(text), request)  # the Stubber validates it against the service model
    draft, verified, reasons = narrate(client)
    assert (draft.model_id, draft.guardrail_action, reasons) == (MODEL, "NONE", [])
    assert verified.text == text and verified.cited == (PASSAGE.id,)


def test_a_reply_citing_a_passage_that_was_not_retrieved_loses_that_sentence(client: Any, stubber: Stubber) -> None:
    text = f"Longer stays add risk [{PASSAGE.id}]. Low sodium adds risk [hospital-score#1-ffffffffffffffff]."
    stubber.add_response("converse", reply(text), expected_request())
    _, verified, reasons = narrate(client)
    assert verified.text == f"Longer stays add risk [{PASSAGE.id}]."
    assert verified.dropped == {"unretrieved_citation": 1} and reasons == []


def test_a_reply_stating_a_wrong_probability_loses_that_sentence(client: Any, stubber: Stubber) -> None:
    text = f"The model estimates a 42% probability. Longer stays add risk [{PASSAGE.id}]."
    stubber.add_response("converse", reply(text), expected_request())
    _, verified, _ = narrate(client)
    assert "42%" not in verified.text and verified.dropped == {"unverified_number": 1}


def test_a_reply_with_nothing_cited_falls_back_to_the_deterministic_writer(client: Any, stubber: Stubber) -> None:
    stubber.add_response(
        "converse", reply("Insulin doses should be raised. Readmission is likely."), expected_request()
    )
    draft, verified, reasons = narrate(client)
    assert reasons == ["generated narrative failed verification"]
    assert draft.model_id == WRITER_ID and verified.cited == (PASSAGE.id,)


def test_a_guardrail_intervention_degrades_to_the_deterministic_writer(client: Any, stubber: Stubber) -> None:
    stubber.add_response(
        "converse", reply("Sorry, I cannot help with that.", "guardrail_intervened"), expected_request()
    )
    draft, verified, reasons = narrate(client)
    assert reasons == ["narrative generation blocked by the guardrail"]
    assert (draft.model_id, draft.guardrail_action) == (WRITER_ID, "INTERVENED")
    assert "23.4%" in verified.text and PASSAGE.id in verified.cited


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailableException", "ModelTimeoutException"])
def test_throttling_and_unavailability_degrade(client: Any, stubber: Stubber, code: str) -> None:
    stubber.add_client_error(
        "converse", service_error_code=code, http_status_code=429, expected_params=expected_request()
    )
    with pytest.raises(GenerationUnavailableError, match=code):
        writer(client).write(BRIEF, timeout=5)
    stubber.add_client_error(
        "converse", service_error_code=code, http_status_code=429, expected_params=expected_request()
    )
    draft, _, reasons = narrate(client)
    assert reasons == ["narrative generation unavailable (GenerationUnavailableError)"]
    assert (draft.model_id, draft.guardrail_action) == (WRITER_ID, "NOT_APPLIED")


def test_a_read_timeout_degrades() -> None:
    """No Stubber here: the request is validated, signed and handed to the HTTP layer, which times out."""
    client = boto3.client("bedrock-runtime", region_name="us-east-1", config=Config(retries={"max_attempts": 1}))

    def time_out(**_: Any) -> None:
        raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")

    client.meta.events.register("before-send.bedrock-runtime.Converse", time_out)
    with pytest.raises(GenerationUnavailableError, match="ReadTimeoutError"):
        writer(client).write(BRIEF, timeout=5)
    _, _, reasons = narrate(client)
    assert reasons == ["narrative generation unavailable (GenerationUnavailableError)"]


def test_a_reply_slower_than_the_budget_is_abandoned_and_the_answer_comes_in_time(
    client: Any, stubber: Stubber
) -> None:
    """The budget, not botocore's timeout, bounds the wait: a reply arriving after it is ignored."""
    client.meta.events.register("before-parameter-build.bedrock-runtime.Converse", lambda **_: time.sleep(1.5))
    stubber.add_response("converse", reply(f"Late [{PASSAGE.id}]."), expected_request())
    started = time.monotonic()
    draft, _, reasons = narrate(client, budget=0.3)
    waited = time.monotonic() - started
    assert reasons == ["narrative generation unavailable (BudgetExceededError)"]
    assert draft.model_id == WRITER_ID
    assert waited < 1.5, "the answer waited for the late reply"
    time.sleep(1.5)  # let the abandoned call finish before the Stubber checks its queue


def test_titan_embeddings_request_and_vector(client: Any, stubber: Stubber) -> None:
    vector = [0.1] * 512
    body = StreamingBody(io.BytesIO(json.dumps({"embedding": vector}).encode()), len(json.dumps({"embedding": vector})))
    stubber.add_response(
        "invoke_model",
        {"body": body, "contentType": "application/json"},
        {
            "modelId": "amazon.titan-embed-text-v2:0",
            "body": json.dumps({"inputText": "insulin", "dimensions": 512, "normalize": True}),
            "contentType": "application/json",
            "accept": "application/json",
        },
    )
    embedded = TitanEmbedder(client, "amazon.titan-embed-text-v2:0", 512).embed(["insulin"])
    assert embedded.shape == (1, 512) and float(embedded[0, 0]) == pytest.approx(0.1)


def test_titan_throttling_is_unavailability(client: Any, stubber: Stubber) -> None:
    stubber.add_client_error("invoke_model", service_error_code="ThrottlingException", http_status_code=429)
    with pytest.raises(GenerationUnavailableError, match="ThrottlingException"):
        TitanEmbedder(client, "amazon.titan-embed-text-v2:0", 512).embed(["insulin"])
