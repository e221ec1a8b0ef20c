"""The batch-scoring state machine (`state_machines/batch_scoring.asl.json`), checked offline:

- the graph (inside the Distributed Map too): every target exists, every state is reachable, no
  cycles, every failure is notified and ends in a Fail state;
- the Map: distributed, reads the manifest Plan writes, tolerates no failed chunk, bounded
  concurrency, and hands every chunk the one model version Plan pinned;
- each Lambda payload and result selector against the pydantic models of `clinrisk.batch.cloud`;
- `asl-validator` (npm) after substitution, and every service request (Lambda Invoke, SNS Publish,
  the ItemReader's S3 GetObject) against its botocore model;
- Retry on transient errors only, never on our own errors;
- the substitution variables equal the table in state_machines/README.md.

The helpers that check service requests and retries are the retraining machine's
(tests/unit/test_state_machines.py), so both machines are held to the same rules.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cdk_app.state_machine import MissingSubstitutionError, definition_text, load_definition, substitution_variables
from clinrisk.batch import cloud as batch_cloud
from tests.unit.test_state_machines import (
    README,
    RETRY_WILDCARDS,
    TRANSIENT_ERRORS,
    _asl_validator,
    _domain_error_names,
    validation_errors,
)

DEFINITION = batch_cloud.DEFINITION_FILE
_ACCOUNT = "111122223333"
_REGION = "eu-west-1"
SAMPLE_SUBSTITUTIONS: dict[str, str] = {
    "AlertsTopicArn": f"arn:aws:sns:{_REGION}:{_ACCOUNT}:clinrisk-alerts",
    "FinishFunctionArn": f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:clinrisk-batch-finish",
    "MapResultsPrefix": "batch-scoring/map-results",
    "PlanFunctionArn": f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:clinrisk-batch-plan",
    "ScoreChunkFunctionArn": f"arn:aws:lambda:{_REGION}:{_ACCOUNT}:function:clinrisk-batch-score",
    "WorkBucket": f"clinrisk-data-{_ACCOUNT}",
}
NOTIFY_STATES = {"Notify", "NotifyFailed"}
MAX_CONCURRENCY_CEILING = 50  # well under the account's Lambda concurrency; the stack reserves this much


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return load_definition(SAMPLE_SUBSTITUTIONS, DEFINITION)


def _all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those of a Map's ItemProcessor."""
    for name, state in states.items():
        yield name, state
        if "ItemProcessor" in state:
            yield from _all_states(state["ItemProcessor"]["States"])


def _targets(state: dict[str, Any]) -> list[str]:
    targets = [state[key] for key in ("Next", "Default") if key in state]
    targets += [rule["Next"] for rule in state.get("Choices", [])]
    return targets + [catcher["Next"] for catcher in state.get("Catch", [])]


def _reachable(states: dict[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        name = pending.pop()
        if name not in seen:
            seen.add(name)
            pending.extend(_targets(states[name]))
    return seen


def _graphs(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The top-level graph and each ItemProcessor graph (each has its own StartAt and States)."""
    yield definition
    for _, state in _all_states(definition["States"]):
        if "ItemProcessor" in state:
            yield state["ItemProcessor"]


def _tasks(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: state for name, state in _all_states(definition["States"]) if state["Type"] == "Task"}


def _states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = definition["States"]
    return states


# --------------------------------------------------------------------------- the graph


def test_raw_definition_is_json_with_placeholders_only_inside_strings() -> None:
    raw = json.loads(definition_text(DEFINITION))
    assert raw["StartAt"] in raw["States"]


def test_every_graph_is_closed_reachable_and_acyclic(definition: dict[str, Any]) -> None:
    for graph in _graphs(definition):
        states = graph["States"]
        dangling = {(n, t) for n, s in states.items() for t in _targets(s) if t not in states}
        assert not dangling, f"transitions to missing states: {sorted(dangling)}"
        assert set(states) == _reachable(states, graph["StartAt"])
        for name, state in states.items():
            assert not any(name in _reachable(states, t) for t in _targets(state)), f"{name} is on a cycle"


def test_state_names_are_unique_across_the_map(definition: dict[str, Any]) -> None:
    # Step Functions requires it; the inner states would otherwise shadow the outer ones.
    names = [name for name, _ in _all_states(definition["States"])]
    assert len(names) == len(set(names))


def test_every_outer_task_and_the_map_catch_everything_into_a_notification(definition: dict[str, Any]) -> None:
    for name, state in _states(definition).items():
        if state["Type"] not in ("Task", "Map"):
            continue
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name
        assert all("ResultPath" in catcher for catcher in state["Catch"]), name
        expected = "Failed" if name == "NotifyFailed" else "NotifyFailed"
        assert state["Catch"][-1]["Next"] == expected, name


def test_a_failed_chunk_fails_its_child_and_so_the_map(definition: dict[str, Any]) -> None:
    processor = _states(definition)["ScoreChunks"]["ItemProcessor"]
    for name, state in processor["States"].items():
        assert "Catch" not in state, f"{name} would swallow a chunk's failure"
    assert _states(definition)["ScoreChunks"]["ToleratedFailureCount"] == 0
    assert "ToleratedFailurePercentage" not in _states(definition)["ScoreChunks"]


def test_failures_are_notified_then_end_in_a_fail_state(definition: dict[str, Any]) -> None:
    states = _states(definition)
    assert _reachable(states, "NotifyFailed") == {"NotifyFailed", "Failed"}
    assert states["Failed"]["Type"] == "Fail"
    # Nothing after a failure writes the output.
    assert "Finish" not in _reachable(states, "NotifyFailed")


def test_the_happy_path_runs_plan_map_finish_notify(definition: dict[str, Any]) -> None:
    states = _states(definition)
    path, name = [], definition["StartAt"]
    while name:
        path.append(name)
        state = states[name]
        name = state["Choices"][0]["Next"] if state["Type"] == "Choice" else state.get("Next")
    assert path == ["Prepare", "Plan", "AnyRowsToScore", "ScoreChunks", "Finish", "Notify"]
    assert states["AnyRowsToScore"]["Default"] == "Finish"  # no valid row: no Map, still a summary


def test_nothing_before_plan_reads_the_execution_input(definition: dict[str, Any]) -> None:
    # A Pass state cannot catch: a JSONPath into bad input would fail the run without a notification.
    prepare = _states(definition)["Prepare"]
    assert prepare["Type"] == "Pass"
    assert set(prepare["Parameters"].values()) == {"$$.Execution.Input"}


# --------------------------------------------------------------------------- the Distributed Map


def test_the_map_is_distributed_over_the_plan_manifest(definition: dict[str, Any]) -> None:
    scored = _states(definition)["ScoreChunks"]
    assert scored["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    reader = scored["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"]["InputType"] == "JSON"
    assert reader["Parameters"] == {"Bucket": SAMPLE_SUBSTITUTIONS["WorkBucket"], "Key.$": "$.plan.manifest_key"}
    assert scored["ResultWriter"]["Parameters"]["Bucket"] == SAMPLE_SUBSTITUTIONS["WorkBucket"]
    assert 1 <= scored["MaxConcurrency"] <= MAX_CONCURRENCY_CEILING
    assert scored["Label"] == "ScoreChunks"  # the IAM policy on child executions names this label


def test_every_chunk_gets_the_model_version_plan_pinned(definition: dict[str, Any]) -> None:
    selector = _states(definition)["ScoreChunks"]["ItemSelector"]
    assert selector["model.$"] == "$.plan.model"
    assert selector["chunk.$"] == "$$.Map.Item.Value"


def _fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def _keys(mapping: dict[str, Any]) -> set[str]:
    return {key.removesuffix(".$") for key in mapping}


def test_lambda_payloads_are_the_handlers_input_models(definition: dict[str, Any]) -> None:
    states = _states(definition)
    assert _keys(states["Plan"]["Parameters"]["Payload"]) == _fields(batch_cloud.PlanInput)
    assert _keys(states["Finish"]["Parameters"]["Payload"]) == _fields(batch_cloud.FinishInput)
    assert _keys(states["ScoreChunks"]["ItemSelector"]) == _fields(batch_cloud.ScoreChunkInput)
    # The manifest's items are what ScoreChunkInput.chunk parses: Plan writes ChunkItems.
    assert batch_cloud.ScoreChunkInput.model_fields["chunk"].annotation is batch_cloud.ChunkItem


def test_result_selectors_pick_fields_the_handlers_return(definition: dict[str, Any]) -> None:
    states = _states(definition)
    inner = states["ScoreChunks"]["ItemProcessor"]["States"]["ScoreChunk"]
    checked: list[tuple[dict[str, Any], type[BaseModel]]] = [
        (states["Plan"]["ResultSelector"], batch_cloud.PlanOutput),
        (states["Finish"]["ResultSelector"], batch_cloud.BatchSummary),
        (inner["ResultSelector"], batch_cloud.ChunkScored),
    ]
    for selector, model in checked:
        picked = {value.removeprefix("$.Payload.") for value in selector.values()}
        assert picked <= _fields(model), picked - _fields(model)
        assert _keys(selector) == picked  # each field keeps its name
    # What the Map and the notification read from the plan is selected.
    assert {"manifest_key", "model", "factors", "run_id", "chunks"} <= _keys(states["Plan"]["ResultSelector"])


def test_machine_uses_jsonpath_and_has_a_timeout(definition: dict[str, Any]) -> None:
    assert definition["QueryLanguage"] == "JSONPath"
    assert isinstance(definition["TimeoutSeconds"], int)
    for name, state in _all_states(definition["States"]):
        assert not {"Arguments", "Output", "Assign", "QueryLanguage"} & set(state), name


def test_every_task_says_where_its_result_goes(definition: dict[str, Any]) -> None:
    for name, state in _tasks(definition).items():
        assert "ResultPath" in state, name
        if state["Resource"].endswith("lambda:invoke"):
            assert "ResultSelector" in state, f"{name} passes the Lambda's whole response envelope on"


# --------------------------------------------------------------------------- asl-validator and botocore


def test_asl_validator_accepts_the_substituted_definition(definition: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "batch_scoring.asl.json"
    path.write_text(json.dumps(definition))
    result = _asl_validator(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asl_validator_rejects_a_broken_map(definition: dict[str, Any], tmp_path: Path) -> None:
    broken = copy.deepcopy(definition)
    broken["States"]["ScoreChunks"]["ItemProcessor"]["States"]["ScoreChunk"]["Next"] = "NoSuchState"
    del broken["States"]["ScoreChunks"]["ItemProcessor"]["States"]["ScoreChunk"]["End"]
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(broken))
    assert _asl_validator(path).returncode != 0


def test_every_service_task_sends_a_valid_request(definition: dict[str, Any]) -> None:
    reports = {name: validation_errors(state) for name, state in _tasks(definition).items()}
    assert {name: report for name, report in reports.items() if report} == {}


def test_the_item_reader_sends_a_valid_get_object(definition: dict[str, Any]) -> None:
    reader = _states(definition)["ScoreChunks"]["ItemReader"]
    assert validation_errors(reader) == ""
    misspelt = copy.deepcopy(reader)
    misspelt["Parameters"]["Kye.$"] = misspelt["Parameters"].pop("Key.$")
    assert "Kye" in validation_errors(misspelt)


def test_a_misspelt_lambda_parameter_fails_validation(definition: dict[str, Any]) -> None:
    plan = copy.deepcopy(_states(definition)["Plan"])
    plan["Parameters"]["FunctionNam"] = plan["Parameters"].pop("FunctionName")
    assert "FunctionNam" in validation_errors(plan)


# --------------------------------------------------------------------------- retries


def test_every_task_retries_its_transient_errors_with_backoff(definition: dict[str, Any]) -> None:
    for name, state in _tasks(definition).items():
        service = state["Resource"].split(":")[5]
        retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
        assert not TRANSIENT_ERRORS[service] - retried, f"{name} does not retry {TRANSIENT_ERRORS[service] - retried}"
        for retrier in state["Retry"]:
            assert retrier["BackoffRate"] > 1 and retrier["MaxAttempts"] >= 2, name


def test_no_task_retries_a_domain_error_or_a_wildcard(definition: dict[str, Any]) -> None:
    forbidden = _domain_error_names() | RETRY_WILDCARDS
    assert {"LocationNotAllowedError", "BatchRowsRejectedError", "PinnedModelError"} <= forbidden
    for name, state in _all_states(definition["States"]):
        retried = {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}
        assert not retried & forbidden, f"{name} retries {sorted(retried & forbidden)}"


# --------------------------------------------------------------------------- substitutions


def _documented_variables() -> set[str]:
    """First-column names of the substitution table in the README's "Batch scoring" section."""
    section = README.read_text(encoding="utf-8").split("\n## Batch scoring", 1)[1]
    table = section.split("### Batch substitution variables", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\|\s*`([A-Za-z][A-Za-z0-9]*)`\s*\|", table, flags=re.MULTILINE))


def test_substitution_variables_match_the_readme_table() -> None:
    assert substitution_variables(definition_text(DEFINITION)) == _documented_variables()


def test_samples_cover_every_substitution_variable() -> None:
    assert substitution_variables(definition_text(DEFINITION)) == set(SAMPLE_SUBSTITUTIONS)


def test_substitution_refuses_a_missing_value() -> None:
    values = {k: v for k, v in SAMPLE_SUBSTITUTIONS.items() if k != "WorkBucket"}
    with pytest.raises(MissingSubstitutionError, match="WorkBucket"):
        load_definition(values, DEFINITION)
