"""The hooks the registry calls with a new champion: the endpoint deployment can refuse a
promotion; the similar-patient index cannot (explanations degrade until the next champion)."""

from __future__ import annotations

import logging

import pytest

from clinrisk.explain.publishing import chain_publishers
from clinrisk.registry.serving_pointer import ServingPointer

POINTER = ServingPointer.model_validate(
    {
        "model_name": "m",
        "version": 4,
        "model_uri": "models:/m/4",
        "artifact_prefix": "runs/r/model",
        "checksum": "0" * 64,
        "run_id": "r",
        "promoted_at": "2026-01-01T00:00:00Z",
    }
)


def fail(pointer: ServingPointer) -> None:
    raise RuntimeError(f"refused v{pointer.version}")


def test_a_failing_similar_patient_index_does_not_block_the_promotion(caplog: pytest.LogCaptureFixture) -> None:
    called: list[int] = []
    publish = chain_publishers(lambda p: called.append(p.version), fail)
    with caplog.at_level(logging.ERROR):
        publish(POINTER)
    assert called == [4]
    assert "similar-patient index of version 4 not built: RuntimeError" in caplog.text
    assert "refused" not in caplog.text  # the type, never the message


def test_a_refusing_endpoint_still_refuses_and_the_index_is_not_built() -> None:
    built: list[int] = []
    with pytest.raises(RuntimeError, match="refused v4"):
        chain_publishers(fail, lambda p: built.append(p.version))(POINTER)
    assert built == []
