"""One API serves every task (issue 14 part 4), through the real HTTP server (`clinrisk serve`):
readmission, heart disease and a task `clinrisk task init` drafted from a synthetic CSV are live at
once; an unknown task is a 404, a task with no champion a 503; each task's contract is its own and
strict; heart disease is explained from its corpus and its similar patients, while a task without a
corpus answers degraded saying so; captures are kept per task; and
schemathesis fuzzes the per-task routes from the served document."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from clinrisk.local.cli import app as cli
from tests.heart_synthetic import HEART_RECORD as HEART
from tests.integration.live_api import LiveApi, clinrisk_serve
from tests.integration.predict_events import records
from tests.integration.test_api_fuzz import assert_clean, schemathesis
from tests.three_tasks import DRAFTED, KNOWLEDGE, build_three_tasks, cli_home, stroke_frame

pytestmark = pytest.mark.integration

UNPROMOTED = "unpromoted"
STROKE = {"visit_id": "v-1", "age": 71, "sex": "M", "hypertension": True, "avg_glucose_level": 190.5, "bmi": None,
          "smoking_status": "current"}  # fmt: skip


@pytest.fixture(scope="module")
def three_tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The root of a home with the three tasks' champions (`home`) and their task files (`tasks`)."""
    root = tmp_path_factory.mktemp("three-tasks")
    with cli_home(root / "home"):
        build_three_tasks(root)
    # A fourth task file, never trained: served, listed, and answered 503.
    drafted = (root / "tasks" / f"{DRAFTED}.yaml").read_text()
    (root / "tasks" / f"{UNPROMOTED}.yaml").write_text(drafted.replace(f"name: {DRAFTED}", f"name: {UNPROMOTED}", 1))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def api(three_tasks: Path) -> Iterator[LiveApi]:
    with clinrisk_serve(three_tasks / "home", {"CLINRISK_TASKS_DIR": str(three_tasks / "tasks")}) as live:
        yield live


def _client(api: LiveApi, *scopes: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api.token(*scopes)}"}
    return httpx.Client(base_url=api.url, headers=headers, timeout=60)


def test_three_tasks_are_live_at_once(api: LiveApi) -> None:
    with _client(api, "predict") as client:
        listed = client.get("/v1/tasks")
        readmission = client.post("/v1/tasks/readmission/predict", json={"encounters": records(2)})
        heart = client.post("/v1/tasks/heart-disease/predict", json={"records": [HEART]})
        stroke = client.post(f"/v1/tasks/{DRAFTED}/predict", json={"records": [STROKE, {**STROKE, "visit_id": "v-2"}]})
        compatible = client.post("/v1/predict", json={"encounters": records(2)})
    assert listed.status_code == 200, listed.text
    tasks = {t["name"]: (t["champion"], t["version"], t["model_name"]) for t in listed.json()["tasks"]}
    assert tasks == {
        "readmission": (True, 1, "clinrisk-readmission-30d"),
        "heart-disease": (True, 1, "clinrisk-heart-disease"),
        DRAFTED: (True, 1, f"clinrisk-{DRAFTED}"),
        UNPROMOTED: (False, None, None),
    }
    for response in (readmission, heart, stroke, compatible):
        assert response.status_code == 200, response.text
    assert readmission.json()["model_name"] == compatible.json()["model_name"] == "clinrisk-readmission-30d"
    assert [p["encounter_id"] for p in readmission.json()["predictions"]] == [r["encounter_id"] for r in records(2)]
    assert (heart.json()["task"], heart.json()["model_name"]) == ("heart-disease", "clinrisk-heart-disease")
    assert [p["record_id"] for p in stroke.json()["predictions"]] == ["v-1", "v-2"]
    factors = {f["factor"]: f["value"] for f in heart.json()["predictions"][0]["factors"]}
    assert set(factors) <= {c for c in HEART if c != "row_id"} and len(factors) == 5
    assert factors.get("cp", "4 (asymptomatic)") == "4 (asymptomatic)"  # a code is shown with its label


def test_each_task_model_route_names_its_own_model(api: LiveApi) -> None:
    with _client(api, "predict") as client:
        heart = client.get("/v1/tasks/heart-disease/model").json()
        readmission = client.get("/v1/tasks/readmission/model").json()
    assert heart["model_name"] == "clinrisk-heart-disease" and "cp=4" in heart["features"]
    assert readmission == {**readmission, "model_name": "clinrisk-readmission-30d", "version": 1}


def test_an_unknown_task_is_404_and_a_task_without_a_champion_is_503(api: LiveApi) -> None:
    with _client(api, "predict", "explain") as client:
        unknown = [
            client.post("/v1/tasks/sepsis/predict", json={"records": [STROKE]}),
            client.get("/v1/tasks/sepsis/model"),
            client.post("/v1/tasks/sepsis/explain", json={"record": STROKE}),
        ]
        unpromoted = [
            client.post(f"/v1/tasks/{UNPROMOTED}/predict", json={"records": [STROKE]}),
            client.get(f"/v1/tasks/{UNPROMOTED}/model"),
        ]
    assert [r.status_code for r in unknown] == [404, 404, 404]
    assert unknown[0].json() == {"message": f"no task 'sepsis' is served here (tasks: readmission, heart-disease, "
                                            f"{DRAFTED}, {UNPROMOTED})"}  # fmt: skip
    assert [r.status_code for r in unpromoted] == [503, 503]
    assert "no champion" in unpromoted[0].json()["message"]


def test_each_task_has_its_own_strict_contract(api: LiveApi) -> None:
    with _client(api, "predict") as client:
        wrong_task = client.post("/v1/tasks/heart-disease/predict", json={"records": [STROKE]})
        strings = client.post("/v1/tasks/heart-disease/predict", json={"records": [{**HEART, "age": "63", "cp": 5}]})
        readmission_body = client.post("/v1/tasks/heart-disease/predict", json={"encounters": records(1)})
    assert wrong_task.status_code == strings.status_code == readmission_body.status_code == 422
    assert {e["path"] for e in strings.json()["errors"]} == {"$.records[0].age", "$.records[0].cp"}
    assert "63" not in strings.text  # problems name paths, never values
    assert {e["type"] for e in wrong_task.json()["errors"]} >= {"extra_forbidden", "missing"}


def test_scopes_hold_on_the_task_routes(api: LiveApi) -> None:
    with _client(api, "explain") as explain_only, _client(api, "predict") as predict_only:
        refused = explain_only.post("/v1/tasks/heart-disease/predict", json={"records": [HEART]})
        listing = explain_only.get("/v1/tasks")
        explain_refused = predict_only.post("/v1/tasks/heart-disease/explain", json={"record": HEART})
    assert (refused.status_code, listing.status_code, explain_refused.status_code) == (403, 403, 403)


def test_heart_disease_is_explained_from_its_corpus_and_its_similar_patients(api: LiveApi) -> None:
    with _client(api, "explain") as client:
        heart = client.post("/v1/tasks/heart-disease/explain", json={"record": HEART})
        readmission = client.post("/v1/tasks/readmission/explain", json={"encounter": records(1)[0]})
    assert heart.status_code == 200, heart.text
    body = heart.json()
    assert body["degraded"] is False, body["degraded_reasons"]
    heart_docs = {path.stem for path in (KNOWLEDGE / "heart-disease").glob("*.md")}
    cited = {citation["id"].split("#")[0] for citation in body["citations"]}
    assert cited and cited <= heart_docs
    similar = body["similar_patients"]
    assert similar["k"] >= 20 and similar["model_version"] == body["prediction"]["model_version"] == 1
    assert set(similar["distributions"]) == {"sex", "age_band", "site"}  # the task's coded subgroups only
    assert body["narrative"].startswith(f"The model estimates a {body['prediction']['probability']:.1%} probability")
    assert "heart disease (num > 0)" in body["narrative"] and "readmi" not in body["narrative"].lower()
    assert body["prediction"]["record_id"] == "h-1" and body["models"]["risk_model"] == "clinrisk-heart-disease"
    assert readmission.status_code == 200, readmission.text
    assert readmission.json()["prediction"]["encounter_id"] == records(1)[0]["encounter_id"]
    assert readmission.json()["degraded"] is False, readmission.json()["degraded_reasons"]


def test_promotion_built_each_task_its_own_similar_patient_index(api: LiveApi, monkeypatch: pytest.MonkeyPatch) -> None:
    similar = api.home / "explain" / "similar"
    assert (similar / "v1").is_dir()  # readmission's, where it always was
    assert (similar / "tasks" / "heart-disease" / "v1").is_dir() and (similar / "tasks" / DRAFTED / "v1").is_dir()
    monkeypatch.setenv("CLINRISK_HOME", str(api.home))
    monkeypatch.setenv("CLINRISK_TASKS_DIR", str(api.home.parent / "tasks"))
    again = CliRunner().invoke(cli, ["rag", "index-champion", "--task", "heart-disease"])
    assert again.exit_code == 0 and '"indexed_version": 1' in again.output, again.output
    unpromoted_file = str(api.home.parent / "tasks" / f"{UNPROMOTED}.yaml")
    unpromoted = CliRunner().invoke(cli, ["rag", "index-champion", "--task", unpromoted_file])
    assert unpromoted.exit_code != 0 and f"no champion of task {UNPROMOTED!r}" in unpromoted.output


def test_a_task_without_a_corpus_explains_degraded_with_the_reason(api: LiveApi) -> None:
    with _client(api, "explain") as client:
        stroke = client.post(f"/v1/tasks/{DRAFTED}/explain", json={"record": STROKE})
    assert stroke.status_code == 200, stroke.text
    body = stroke.json()
    assert body["degraded"] is True and body["degraded_reasons"] == [
        f"task {DRAFTED!r} has no knowledge corpus: no passage was retrieved for its factors"
    ]
    assert body["citations"] == [] and body["similar_patients"]["k"] >= 20  # its own index answers
    assert f"{body['prediction']['probability']:.1%}" in body["narrative"]


def test_predictions_are_captured_per_task(api: LiveApi) -> None:
    captures = api.home / "captures"
    before = len(_scored_rows(captures, DRAFTED))
    with _client(api, "predict") as client:
        for _ in range(3):
            assert client.post(f"/v1/tasks/{DRAFTED}/predict", json={"records": [STROKE]}).status_code == 200
        # The other two tasks, sent here too: under xdist this module's other tests may run in another worker.
        assert client.post("/v1/tasks/readmission/predict", json={"encounters": records(1)}).status_code == 200
        assert client.post("/v1/tasks/heart-disease/predict", json={"records": [HEART]}).status_code == 200
    # Each handler environment's capture thread flushes every 2 s; this bound only ends a hang.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _all_captured(captures, before + 3):
        time.sleep(0.5)
    stroke = _scored_rows(captures, DRAFTED)
    assert len(stroke) >= before + 3 and {r["model_version"] for r in stroke} == {1}
    assert {r["task"] for r in stroke} == {DRAFTED}
    assert all(r["record_key"] and r["record_key"] != "v-1" for r in stroke)  # keyed, never the id itself
    # The inputs drift is computed from, as text; the record id is not among them, a missing value is absent.
    assert dict(stroke[-1]["inputs"]) == {
        "age": "71", "sex": "M", "hypertension": "1", "avg_glucose_level": "190.5", "smoking_status": "current"
    }  # fmt: skip
    assert _scored_rows(captures, "readmission") and _scored_rows(captures, "heart-disease")


def _all_captured(captures: Path, drafted_rows: int) -> bool:
    """This test's drafted-task rows, and its readmission and heart-disease rows, are written."""
    written = [len(_scored_rows(captures, task)) for task in (DRAFTED, "readmission", "heart-disease")]
    return written[0] >= drafted_rows and all(written)


def _scored_rows(captures: Path, task: str) -> list[dict[str, Any]]:
    """The task's scored rows, read as monitoring reads captures (hive partitions: task, date, version)."""
    import pyarrow.parquet as pq

    if not any(captures.rglob("*.parquet")):
        return []
    rows = pq.read_table(captures).to_pylist()
    return [row for row in rows if row["kind"] == "scored" and row["task"] == task]


def test_the_served_document_has_one_request_schema_per_task(api: LiveApi) -> None:
    document = httpx.get(f"{api.url}/v1/openapi.json", timeout=30).json()
    schemas = document["components"]["schemas"]
    assert {"HeartDiseasePredictRequest", "StrokePredictRequest", "UnpromotedPredictRequest"} <= set(schemas)
    stroke = schemas["StrokeRecord"]["properties"]
    assert stroke["smoking_status"]["anyOf"][0] == {"type": "string", "enum": ["current", "former", "never"]}
    body = document["paths"]["/v1/tasks/heart-disease/predict"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/HeartDiseasePredictRequest")


def test_schemathesis_fuzzes_the_task_routes(api: LiveApi, tmp_path: Path) -> None:
    # The task without a champion answers only its documented 503, which schemathesis counts as a
    # server error (ST101); it is left out here and tested above.
    options = ["--exclude-tag", UNPROMOTED]
    result: dict[str, Any] = schemathesis(api, api.token("predict"), tmp_path / "report.json", 10, options)
    assert_clean(api, result, operations=15)  # 5 shared, and predict, model and explain of 3 tasks
    statuses = result["statuses"]
    # The fuzzer got through the task routes (the access log names the template, not the task):
    # scored bodies and refused ones.
    route = "POST /v1/tasks/{task}/predict"
    assert statuses[f"{route} 200"] > 0 and statuses[f"{route} 422"] > 0
    assert statuses["GET /v1/tasks 200"] > 0 and statuses["GET /v1/tasks/{task}/model 200"] > 0


def test_batch_scoring_takes_a_task_and_refuses_rows_as_the_api_does(
    api: LiveApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLINRISK_HOME", str(api.home))
    monkeypatch.setenv("CLINRISK_TASKS_DIR", str(api.home.parent / "tasks"))
    frame = stroke_frame(50, seed=3).astype(str)
    frame.loc[3, "age"] = "seventy"  # not a number
    frame.loc[7, "smoking_status"] = "vaping"  # outside the declared codes
    frame.loc[9, "bmi"] = ""  # missing: scored
    source = tmp_path / f"{DRAFTED}.csv"
    frame.to_csv(source, index=False)
    output = tmp_path / "scores.csv"
    result = CliRunner().invoke(cli, ["score", str(source), "-o", str(output), "--task", DRAFTED, "--factors", "2"])
    assert result.exit_code == 0, result.output
    assert "50 rows read, 48 scored by model version 1, 2 invalid" in result.output
    assert "seventy" not in result.output and "vaping" not in result.output
    scores = pd.read_csv(output)
    assert list(scores.columns) == ["visit_id", "probability", "band", "model_version", "factor_1", "factor_2"]
    assert scores["visit_id"].astype(str).tolist() == [v for i, v in enumerate(frame["visit_id"]) if i not in (3, 7)]
    strict = CliRunner().invoke(
        cli, ["score", str(source), "-o", str(tmp_path / "x.csv"), "--task", DRAFTED, "--strict"]
    )
    assert strict.exit_code == 2 and not (tmp_path / "x.csv").exists()
    unknown = CliRunner().invoke(cli, ["score", str(source), "-o", str(tmp_path / "x.csv"), "--task", "sepsis"])
    assert unknown.exit_code == 2 and "no task named 'sepsis'" in unknown.output


# --------------------------------------------------------------------------- one broken task file

BAD_THRESHOLD = "above zero"  # heart disease's target rule, broken: the one value the file gets wrong
BROKEN = {
    "heart-disease": "target.positive_if",  # fails the task model
    "sepsis": "line 3",  # not YAML: the task is named by its file
    "wide": "request contract",  # loads, but a column pydantic cannot take as a field
}


def broken_tasks_dir(three_tasks: Path) -> Path:
    """The three tasks' files, with heart disease's broken, a file that is not YAML and a task whose
    contract cannot be built beside them."""
    tasks = three_tasks / "tasks-broken"
    if tasks.is_dir():
        return tasks
    shutil.copytree(three_tasks / "tasks", tasks)
    heart = (tasks / "heart-disease.yaml").read_text()
    (tasks / "heart-disease.yaml").write_text(heart.replace('positive_if: "> 0"', f'positive_if: "{BAD_THRESHOLD}"'))
    (tasks / "sepsis.yaml").write_text("name: sepsis\ncolumns: [{name: lactate\n")
    wide = (tasks / f"{DRAFTED}.yaml").read_text().replace(f"name: {DRAFTED}", "name: wide", 1)
    (tasks / "wide.yaml").write_text(wide.replace("name: bmi", "name: model_dump"))
    return tasks


@pytest.fixture(scope="module")
def broken_api(three_tasks: Path) -> Iterator[LiveApi]:
    tasks = broken_tasks_dir(three_tasks)
    with clinrisk_serve(three_tasks / "home", {"CLINRISK_TASKS_DIR": str(tasks)}, handler_output=True) as live:
        yield live


def _assert_the_broken_tasks_are_503_and_the_others_serve(answers: dict[str, tuple[int, Any]]) -> None:
    """`answers`: each request's (status, body) by its route; the same for the server and the handler."""
    assert answers["GET /v1/tasks"][0] == 200
    listed = {t["name"]: t for t in answers["GET /v1/tasks"][1]["tasks"]}
    assert {n: (t["available"], t["champion"]) for n, t in listed.items()} == {
        "readmission": (True, True), DRAFTED: (True, True), UNPROMOTED: (True, False),
        "heart-disease": (False, False), "sepsis": (False, False), "wide": (False, False),
    }  # fmt: skip
    for name, where in BROKEN.items():
        reason = listed[name]["unavailable_reason"]
        assert reason.startswith(f"task {name!r} is unavailable: ") and where in reason, reason
    for route in ("POST /v1/predict", "POST /v1/tasks/readmission/predict", f"POST /v1/tasks/{DRAFTED}/predict",
                  "GET /v1/tasks/readmission/model"):  # fmt: skip
        assert answers[route][0] == 200, (route, answers[route])
    for name in BROKEN:
        for route in (
            f"POST /v1/tasks/{name}/predict",
            f"GET /v1/tasks/{name}/model",
            f"POST /v1/tasks/{name}/explain",
        ):
            status, body = answers[route]
            assert status == 503, (route, status, body)
            assert body == {"message": listed[name]["unavailable_reason"]}, route
    assert BAD_THRESHOLD not in json.dumps(answers)  # reasons name keys, never what the file holds there


def _requests() -> list[tuple[str, str, Any]]:
    stroke, heart = {"records": [STROKE]}, {"records": [HEART]}
    routes: list[tuple[str, str, Any]] = [
        ("GET", "/v1/tasks", None),
        ("POST", "/v1/predict", {"encounters": records(2)}),
        ("POST", "/v1/tasks/readmission/predict", {"encounters": records(2)}),
        ("GET", "/v1/tasks/readmission/model", None),
        ("POST", f"/v1/tasks/{DRAFTED}/predict", stroke),
    ]
    for name, body in (("heart-disease", heart), ("sepsis", stroke), ("wide", stroke)):
        routes += [("POST", f"/v1/tasks/{name}/predict", body), ("GET", f"/v1/tasks/{name}/model", None),
                   ("POST", f"/v1/tasks/{name}/explain", {"record": body["records"][0]})]  # fmt: skip
    return routes


def _logged(lines: list[str], message: str) -> dict[str, dict[str, Any]]:
    """The handlers' JSON log records with `message`, by task."""
    records = [json.loads(line) for line in lines if line.startswith("{") and f'"{message}"' in line]
    return {record["task"]: record for record in records if record.get("message") == message}


def _assert_the_cold_start_logged_each_file_and_key(lines: list[str], tasks: Path) -> None:
    not_served = _logged(lines, "task file not served")
    assert not_served["heart-disease"]["file"] == str(tasks / "heart-disease.yaml")
    assert [p.split(": ")[0] for p in not_served["heart-disease"]["problems"]] == ["target.positive_if"]
    assert not_served["sepsis"]["file"] == str(tasks / "sepsis.yaml")
    assert not_served["sepsis"]["problems"] == ["line 3: not valid YAML"]
    assert "model_dump" in _logged(lines, "task contract not built")["wide"]["detail"]


def test_one_broken_task_file_leaves_every_other_task_serving_through_clinrisk_serve(
    broken_api: LiveApi, three_tasks: Path
) -> None:
    with _client(broken_api, "predict", "explain") as client:
        answers = {f"{method} {path}": client.request(method, path, json=body) for method, path, body in _requests()}
    _assert_the_broken_tasks_are_503_and_the_others_serve(
        {route: (r.status_code, r.json()) for route, r in answers.items()}
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_logged(broken_api.output, "task file not served")) < 2:
        time.sleep(0.3)
    _assert_the_cold_start_logged_each_file_and_key(broken_api.output, three_tasks / "tasks-broken")


_HANDLER_SCRIPT = """
import json, sys, time
import lambdas.explain.handler as explain
from clinrisk.local.api_server import HttpRequest, LocalLambdaContext, proxy_event
from tests.integration.predict_events import call

answers = {}
for method, path, body in json.loads(sys.argv[1]):
    if path.endswith("/explain"):
        request = HttpRequest(method, path, b"", [("content-type", "application/json")], json.dumps(body).encode(),
                              "127.0.0.1", "HTTP/1.1")
        event = proxy_event(request, claims={"sub": "t", "scope": "clinrisk/explain"}, request_id="r",
                            received_at=time.time())
        response = explain.handler(event, LocalLambdaContext(aws_request_id="r", deadline_epoch=time.time() + 30))
        answers[f"{method} {path}"] = (response["statusCode"], json.loads(response["body"]))
    else:
        response = call(path, method=method, body=body)
        answers[f"{method} {path}"] = (response["statusCode"], response["json"])
with open(sys.argv[2], "w") as out:
    json.dump(answers, out)
"""


def test_one_broken_task_file_leaves_every_other_task_serving_in_the_lambda_handlers(
    three_tasks: Path, tmp_path: Path
) -> None:
    """A fresh process imports the predict and explain handlers (their cold start) with the broken
    files in the task directory, and answers real proxy events."""
    tasks = broken_tasks_dir(three_tasks)
    env = {**os.environ, "CLINRISK_HOME": str(three_tasks / "home"), "CLINRISK_TASKS_DIR": str(tasks),
           "POWERTOOLS_METRICS_NAMESPACE": "clinrisk-test"}  # fmt: skip
    out = tmp_path / "answers.json"
    ran = subprocess.run(
        [sys.executable, "-c", _HANDLER_SCRIPT, json.dumps(_requests()), str(out)],
        env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    answers = {route: (status, body) for route, (status, body) in json.loads(out.read_text()).items()}
    _assert_the_broken_tasks_are_503_and_the_others_serve(answers)
    _assert_the_cold_start_logged_each_file_and_key(ran.stdout.splitlines(), tasks)
