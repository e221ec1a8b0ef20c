"""A task's API contract, generated from its task file, and the serving feature rows built from it:
strict types, units, ranges and codes in the schema, and the same model input as training builds."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from clinrisk.data.task_tables import read_task_files, validate_task_table
from clinrisk.serving.task_contract import record_model, request_model
from clinrisk.serving.task_scoring import feature_rows
from clinrisk.settings import Settings
from clinrisk.taskspec.catalogue import TASKS_DIR
from clinrisk.taskspec.features import feature_matrix
from clinrisk.taskspec.spec import TaskSpec, load_task
from tests.heart_synthetic import heart_frame, write_site_file

HEART = TASKS_DIR / "heart-disease.yaml"


@pytest.fixture(scope="module")
def heart() -> TaskSpec:
    return load_task(HEART).spec


def _problems(spec: TaskSpec, record: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        request_model(spec).model_validate({"records": [{"row_id": "r-1", **record}]})
    return [(e["loc"][2:], e["type"]) for e in caught.value.errors()]


def test_the_schema_names_every_model_input_with_its_unit_range_and_codes(heart: TaskSpec) -> None:
    schema = record_model(heart).model_json_schema()
    properties = schema["properties"]
    assert list(properties) == ["row_id", *(c.name for c in heart.feature_columns)]
    assert schema["required"] == ["row_id"] and schema["additionalProperties"] is False
    chol = properties["chol"]
    assert "mg/dl" in chol["description"] and chol["anyOf"][0] == {"type": "number", "minimum": 80.0, "maximum": 700.0}
    cp = properties["cp"]
    assert cp["anyOf"][0] == {"type": "integer", "enum": [1, 2, 3, 4]}
    assert cp["x-code-labels"]["4"] == "asymptomatic" and "4 = asymptomatic" in cp["description"]
    assert properties["age"]["anyOf"][0]["type"] == "integer"  # `integer: true` in the file
    assert properties["fbs"]["anyOf"][0] == {"type": "boolean"}
    assert "num" not in properties and "site" not in properties  # the target and a loader's column


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"cp": True}, [(("cp",), "int_type")]),  # true is not the code 1
        ({"cp": "4"}, [(("cp",), "literal_error")]),  # a string is not the integer code
        ({"cp": 5}, [(("cp",), "literal_error")]),  # outside the declared codes
        ({"age": "63"}, [(("age",), "int_type")]),
        ({"age": 63.5}, [(("age",), "int_type")]),
        ({"chol": 20}, [(("chol",), "greater_than_equal")]),  # below the plausible range
        ({"fbs": 1}, [(("fbs",), "bool_type")]),
        ({"glyburide": 1}, [(("glyburide",), "extra_forbidden")]),
    ],
)
def test_the_contract_is_strict(heart: TaskSpec, record: dict[str, Any], expected: list[tuple[Any, ...]]) -> None:
    assert _problems(heart, record) == expected


def test_an_integer_takes_9_0_missing_is_null_or_absent_and_the_id_is_required(heart: TaskSpec) -> None:
    request = request_model(heart).model_validate(
        {"records": [{"row_id": "r-1", "age": 63.0, "cp": 4.0, "chol": None, "fbs": False}]}
    )
    record = request.records[0].model_dump()
    assert (record["age"], record["cp"], record["chol"], record["thal"], record["fbs"]) == (63, 4, None, None, False)
    assert _problems(heart, {"row_id": None}) == [(("row_id",), "string_type")]


def test_the_serving_feature_rows_equal_the_training_feature_matrix(heart: TaskSpec, tmp_path: Path) -> None:
    """Serving builds the model input from API records with numpy; training from the validated
    frame with pandas. The same rows must give the same matrix, missing values included."""
    frame = heart_frame(200, seed=4)
    frame.loc[::7, "chol"] = np.nan
    frame.loc[::11, "thal"] = np.nan
    frame.loc[::13, "chol"] = 0  # the task's value for "not recorded"
    raw = read_task_files(heart, [write_site_file(tmp_path / "processed.cleveland.data", frame)])
    typed = validate_task_table(heart, raw).frame
    expected = feature_matrix(heart, typed).to_numpy()
    model = record_model(heart)
    records = [
        model.model_validate({"row_id": row["row_id"], **_json_values(heart, row)}).model_dump()
        for row in typed.to_dict("records")
    ]
    np.testing.assert_array_equal(feature_rows(heart, records), expected)


def _json_values(spec: TaskSpec, row: Mapping[Hashable, Any]) -> dict[str, Any]:
    """A typed frame's row as a client would send it: numbers, integer codes, booleans, null."""
    values: dict[str, Any] = {}
    schema = record_model(spec).model_json_schema()["properties"]
    for column in spec.feature_columns:
        value = row[column.name]
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        kind = schema[column.name]["anyOf"][0]["type"]
        values[column.name] = {"integer": int, "number": float, "boolean": bool}[kind](float(value))
    return values


def test_a_drafted_tasks_text_codes_are_string_enums(tmp_path: Path) -> None:
    text = HEART.read_text().replace("codes: {0: female, 1: male}", "codes: {F: female, M: male}")
    (tmp_path / "t.yaml").write_text(text)
    spec = load_task(tmp_path / "t.yaml").spec
    sex = record_model(spec).model_json_schema()["properties"]["sex"]
    assert sex["anyOf"][0] == {"type": "string", "enum": ["F", "M"]}
    assert _problems(spec, {"sex": "X"}) == [(("sex",), "literal_error")]
    assert feature_rows(spec, [{"sex": "M"}, {"sex": None}])[:, 1:3].tolist() == [[0.0, 1.0], [0.0, 0.0]]


def test_bands_follow_the_tasks_operating_threshold(heart: TaskSpec) -> None:
    from clinrisk.serving.task_scoring import task_bands

    settings = Settings()
    bands = task_bands(settings, heart)
    assert bands.high_from == 0.5
    assert bands.medium_from == pytest.approx(settings.serving.medium_risk_from / settings.operating_threshold * 0.5)
    assert bands.of(np.array([0.1, 0.3, 0.6])) == ["low", "medium", "high"]
