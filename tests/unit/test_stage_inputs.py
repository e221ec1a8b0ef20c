from __future__ import annotations

import pytest
from pydantic import ValidationError

from clinrisk.stages import EvaluateInput, PromoteInput


@pytest.mark.parametrize("prefix", ["../x", "/abs", "runs/../x", "runs/./x", "a//b", ""])
def test_store_prefixes_cannot_escape_or_be_absolute(prefix: str) -> None:
    with pytest.raises(ValidationError, match="model_prefix"):
        EvaluateInput(run_id="r1", model_prefix=prefix, test_prefix="runs/r1/channels/test")


def test_a_well_formed_evaluate_input_is_accepted() -> None:
    request = EvaluateInput(
        run_id="20261123T0900-ab12", model_prefix="runs/x/model", test_prefix="runs/x/channels/test"
    )
    assert request.trigger == "manual"


@pytest.mark.parametrize("run_id", ["", "has space", "a/b", "x" * 65])
def test_run_ids_are_short_plain_names(run_id: str) -> None:
    with pytest.raises(ValidationError, match="run_id"):
        EvaluateInput(run_id=run_id, model_prefix="m", test_prefix="t")


def test_promote_needs_a_positive_version_and_an_explicit_expected_champion() -> None:
    with pytest.raises(ValidationError, match="model_version"):
        PromoteInput(model_version=0, expected_champion=None)
    with pytest.raises(ValidationError, match="expected_champion"):
        PromoteInput.model_validate({"model_version": 3})
