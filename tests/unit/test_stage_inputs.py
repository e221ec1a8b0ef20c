from __future__ import annotations

import pytest
from pydantic import ValidationError

from clinrisk.pipeline.contracts import (
    CLOUD_RUN_ID_MAX_LENGTH,
    EvaluateInput,
    PromoteInput,
    RunInput,
    Trigger,
    ValidateInput,
)


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


# --------------------------------------------------------------------------- the cloud's validate event

DEFAULT_DATA = "s3://clinrisk-data-111122223333/cohorts/current.csv"


def _validate_event(request: object, run_id: str = "20261123T090000-manual-ab12cd34") -> dict[str, object]:
    return {"run_id": run_id, "request": request, "default_data_uri": DEFAULT_DATA}


def test_a_minimal_execution_input_uses_the_default_data() -> None:
    event = ValidateInput.model_validate(_validate_event({"trigger": "schedule"}))
    assert event.data_uri == DEFAULT_DATA
    assert event.request.approval_requested is False
    assert event.run() == RunInput(run_id="20261123T090000-manual-ab12cd34", trigger="schedule")


def test_an_execution_input_may_name_data_in_the_data_bucket_and_ask_for_approval() -> None:
    uri = "s3://clinrisk-data-111122223333/cohorts/2026-11.parquet"
    event = ValidateInput.model_validate(
        _validate_event({"trigger": "manual", "data_uri": uri, "approval_requested": True})
    )
    assert (event.data_uri, event.request.approval_requested) == (uri, True)


def test_the_starters_run_id_is_accepted_when_it_is_the_execution_name() -> None:
    # clinrisk.pipeline.orchestration.start_retraining repeats the execution name in the input.
    ValidateInput.model_validate(_validate_event({"trigger": "manual", "run_id": "run-1"}, run_id="run-1"))
    with pytest.raises(ValidationError, match=r"request\.run_id must equal the execution name"):
        ValidateInput.model_validate(_validate_event({"trigger": "manual", "run_id": "run-2"}, run_id="run-1"))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({}, "trigger"),
        ({"trigger": "whenever"}, "trigger"),
        ({"trigger": "manual", "approval_required": True}, "approval_required"),  # misspelt: refused, not ignored
        ({"trigger": "manual", "data_uri": "s3://another-bucket/cohorts/current.csv"}, "data bucket"),
        ({"trigger": "manual", "data_uri": "s3://clinrisk-data-111122223333/../secrets.csv"}, "data_uri"),
        ({"trigger": "manual", "data_uri": "https://example.org/cohort.csv"}, "data_uri"),
        ({"trigger": "manual", "approval_requested": "maybe"}, "approval_requested"),
        ("manual", "request"),
        (["manual"], "request"),
    ],
)
def test_bad_execution_input_is_refused_naming_the_field(request_: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ValidateInput.model_validate(_validate_event(request_))


@pytest.mark.parametrize(
    "run_id",
    ["has_underscore", "ends-with-hyphen-", "-starts-with-hyphen", "x" * 55, "", "a/b"],
)
def test_a_run_id_must_make_a_sagemaker_job_name(run_id: str) -> None:
    with pytest.raises(ValidationError, match="run_id"):
        ValidateInput.model_validate(_validate_event({"trigger": "manual"}, run_id=run_id))


def test_the_longest_cloud_run_id_makes_a_63_character_job_name() -> None:
    run_id = "a" * CLOUD_RUN_ID_MAX_LENGTH
    ValidateInput.model_validate(_validate_event({"trigger": "manual"}, run_id=run_id))
    assert len(f"clinrisk-{run_id}") == 63


def test_execution_names_from_the_starter_are_valid_cloud_run_ids() -> None:
    from datetime import UTC, datetime

    from clinrisk.pipeline.orchestration import TRIGGERS, execution_name

    for trigger in TRIGGERS:
        name = execution_name(trigger, datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
        ValidateInput.model_validate(_validate_event({"trigger": trigger, "run_id": name}, run_id=name))


def test_the_trigger_literal_matches_the_starters_triggers() -> None:
    from typing import get_args

    from clinrisk.pipeline.orchestration import TRIGGERS

    assert set(get_args(Trigger)) == set(TRIGGERS)


def test_the_validate_event_refuses_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="data_key"):
        ValidateInput.model_validate({**_validate_event({"trigger": "manual"}), "data_key": "x.csv"})


# --------------------------------------------------------------------------- the evaluate event's archive


@pytest.mark.parametrize(
    "archive",
    [
        "runs/x/training/job/output/model.tar.gz",  # a key, not a URI
        "s3://clinrisk-artifacts/runs/../model.tar.gz",
        "file:///tmp/model.tar.gz",
        "s3:///model.tar.gz",
    ],
)
def test_a_model_archive_must_be_an_s3_uri_without_escapes(archive: str) -> None:
    with pytest.raises(ValidationError, match="model_archive"):
        EvaluateInput(run_id="r1", model_prefix="runs/r1/model", test_prefix="runs/r1/channels/test",
                      model_archive=archive)  # fmt: skip


def test_the_evaluate_event_refuses_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="model_tarball"):
        EvaluateInput.model_validate(
            {"run_id": "r1", "model_prefix": "m", "test_prefix": "t", "model_tarball": "s3://b/k.tar.gz"}
        )
