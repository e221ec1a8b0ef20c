"""Every Lambda bundle, built for real with pip (issue 3, Lambda packaging budget): predict,
pipeline (validate + evaluate) and promote each fit Lambda's 250 MB, hold no forbidden package
and a complete lock, import under CPython 3.12, and the stage bundles run their stages.

Needs a reachable package index: if pip cannot get the wheels, the build fails with pip's own
message, on purpose: a skipped packaging test would hide a bundle that cannot be built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from cdk_app.bundling import (
    FUNCTION_SPECS,
    HEAVY_PACKAGES,
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    MIB,
    RUNTIME_PACKAGES,
    BundleBuildError,
    BundleReport,
    FunctionSpec,
    build_lambda_bundle,
    find_interpreter,
    forbidden_present,
    lambda_runtime_stand_in,
    requested_extras,
    smoke_import,
    unmet_requirements,
)
from clinrisk.adapters.opensearch import similar_index_body
from clinrisk.data.tables import write_table
from clinrisk.pipeline import contracts, stages
from clinrisk.registry.model_registry import Registry
from clinrisk.registry.serving_pointer import read_pointer
from clinrisk.runtime import build_ports
from clinrisk.settings import GateRules, Settings
from clinrisk.tasks.readmission.synth import generate_cohort
from clinrisk.taskspec.catalogue import discover_tasks

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS: dict[str, FunctionSpec] = {name: make(REPO_ROOT) for name, make in FUNCTION_SPECS.items()}
PREDICT = SPECS["predict"]
LAMBDA_PYTHON = "3.12"
HERE_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _build_once(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, name: str, build: Callable[[Path], BundleReport]
) -> BundleReport:
    """Build once per test session, even when xdist spreads this module over several workers:
    they share the session's base directory and take turns under a lock."""
    if worker_id == "master":
        return build(tmp_path_factory.mktemp(name) / "bundle")
    shared = tmp_path_factory.getbasetemp().parent / name
    with FileLock(f"{shared}.lock"):
        done = shared / "report.json"
        if done.is_file():
            return BundleReport.model_validate_json(done.read_text(encoding="utf-8"))
        shutil.rmtree(shared, ignore_errors=True)  # a build that failed on another worker
        report = build(shared / "bundle")
        done.write_text(report.model_dump_json(), encoding="utf-8")
        return report


def _builder(spec: FunctionSpec, python_version: str) -> Callable[[Path], BundleReport]:
    def build(destination: Path) -> BundleReport:
        return build_lambda_bundle(
            spec.requirements, destination, source_dirs=spec.source_dirs, python_version=python_version
        )

    return build


Bundles = Callable[[str, str], BundleReport]


@pytest.fixture(scope="session")
def bundles(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Bundles:
    """`bundles(name, python_version)`: that function's bundle, built the first time it is asked for."""
    built: dict[tuple[str, str], BundleReport] = {}

    def get(name: str, python_version: str = LAMBDA_PYTHON) -> BundleReport:
        if (name, python_version) not in built:
            builder = _builder(SPECS[name], python_version)
            built[name, python_version] = _build_once(
                tmp_path_factory, worker_id, f"{name}-bundle-{python_version}", builder
            )
        return built[name, python_version]

    return get


@pytest.fixture(scope="session")
def predict_bundle(bundles: Bundles) -> BundleReport:
    return bundles("predict", LAMBDA_PYTHON)


def _smoke_target(bundles: Bundles, name: str) -> tuple[Path, Path]:
    """(bundle, interpreter): the 3.12 bundle under CPython 3.12 when this machine has one;
    otherwise the same requirements built for this interpreter's version, under it."""
    interpreter = find_interpreter(LAMBDA_PYTHON)
    if interpreter is not None:
        return bundles(name, LAMBDA_PYTHON).root, interpreter
    return bundles(name, HERE_PYTHON).root, Path(sys.executable)


@pytest.fixture(scope="session")
def smoke_target(bundles: Bundles) -> tuple[Path, Path]:
    return _smoke_target(bundles, "predict")


# --------------------------------------------------------------------------- every bundle


@pytest.mark.parametrize("name", sorted(SPECS))
def test_bundle_is_within_the_lambda_limit(bundles: Bundles, name: str) -> None:
    """Reports each function's unzipped and zipped size (shown with `pytest -rP` or `-s`)."""
    report = bundles(name, LAMBDA_PYTHON)
    largest = ", ".join(f"{size.name} {size.mib:.1f}" for size in report.distributions[:6])
    line = (
        f"{name}: {report.unzipped_mib:.1f} MiB unzipped, {report.zipped_mib:.1f} MiB zipped "
        f"(limit {LAMBDA_UNZIPPED_LIMIT_BYTES // MIB} MiB unzipped); largest MiB: {largest}"
    )
    print(line)
    assert report.unzipped_bytes < LAMBDA_UNZIPPED_LIMIT_BYTES, line
    assert 0 < report.zipped_bytes < report.unzipped_bytes


@pytest.mark.parametrize("name", sorted(SPECS))
def test_bundle_holds_nothing_forbidden_and_no_boto(bundles: Bundles, name: str) -> None:
    report = bundles(name, LAMBDA_PYTHON)
    assert forbidden_present(report.root, SPECS[name].forbidden) == []
    packaged = {size.name for size in report.distributions} | set(report.top_level)
    assert not packaged & {"boto3", "botocore", "s3transfer"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_bundle_lock_is_complete(bundles: Bundles, name: str) -> None:
    """The build refuses an incomplete lock; this says so for the bundle as built, with the
    extras its lock asks for, and checks every pinned distribution was installed."""
    spec = SPECS[name]
    report = bundles(name, LAMBDA_PYTHON)
    assert unmet_requirements(report.root, extras=requested_extras(spec.requirements)) == []
    installed = {size.name for size in report.distributions}
    assert set(requested_extras(spec.requirements)) <= installed


@pytest.mark.parametrize("name", sorted(SPECS))
def test_bundle_imports_its_handlers_under_the_lambda_python(bundles: Bundles, name: str, tmp_path: Path) -> None:
    bundle, interpreter = _smoke_target(bundles, name)
    runtime = lambda_runtime_stand_in(tmp_path / "runtime")
    result = smoke_import(bundle, interpreter, SPECS[name].smoke_modules, runtime_paths=[runtime])
    assert result.stray == []
    handlers = {module for module in SPECS[name].smoke_modules if module.endswith(".handler")}
    assert handlers == {"predict": {"lambdas.predict.handler", "lambdas.batch_scoring.handler"},
        "pipeline": {"lambdas.validate.handler", "lambdas.evaluate.handler", "lambdas.batch_scoring.handler"},
        "promote": {"lambdas.promote.handler"},
        "explain": {"lambdas.explain.handler", "rag_ingest.handler"}}[name]  # fmt: skip


# Run with -I -S in the bundle's interpreter: the bundle and the runtime stand-in only. Prints the
# host each store of the sagemaker-mlflow plugin would call for a tracking server ARN.
_PLUGIN_HOSTS = """
import sys, warnings
sys.path[:0] = sys.argv[1:]
warnings.simplefilter("ignore")
from mlflow.tracking._model_registry.utils import _get_store as registry_store
from mlflow.tracking._tracking_service.utils import _get_store as tracking_store
arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/clinrisk-dev"
print(tracking_store(arn).get_host_creds().host, registry_store(arn).get_host_creds().host)
"""


@pytest.mark.parametrize("name", ["pipeline", "promote"])
def test_the_mlflow_plugin_loads_and_honours_the_vpc_endpoint_url(bundles: Bundles, name: str, tmp_path: Path) -> None:
    """With the locked mlflow-skinny, the sagemaker-mlflow plugin serves ARN tracking URIs, and
    SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT (set by the CDK app in the VPC variant) replaces the public host."""
    bundle, interpreter = _smoke_target(bundles, name)
    runtime = lambda_runtime_stand_in(tmp_path / "runtime")
    vpce = "https://vpce-0a1b2c3d-e4f5a6b7.experiments.sagemaker.us-east-1.vpce.amazonaws.com"
    base = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}  # fmt: skip
    hosts = {}
    for label, extra in (("public", {}), ("vpc", {"SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT": vpce})):
        result = subprocess.run(
            [str(interpreter), "-I", "-S", "-B", "-c", _PLUGIN_HOSTS, str(bundle), str(runtime)],
            capture_output=True, text=True, timeout=300, check=False, env={**base, **extra},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        hosts[label] = result.stdout.split()
    assert hosts == {"public": ["https://us-east-1.experiments.sagemaker.aws"] * 2, "vpc": [vpce] * 2}


# Run with -I -S in the bundle's interpreter: the bundle and the runtime stand-in only.
_DISCOVER_TASKS = """
import sys
sys.path[:0] = sys.argv[1:]
from clinrisk.taskspec import catalogue
print(catalogue.__file__)
print(" ".join(sorted(catalogue.discover_tasks())))
"""


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_bundle_loads_the_task_files_it_carries(bundles: Bundles, name: str, tmp_path: Path) -> None:
    """The catalogue finds tasks/ beside the clinrisk package, /var/task/tasks, with the bundle's PyYAML."""
    bundle, interpreter = _smoke_target(bundles, name)
    runtime = lambda_runtime_stand_in(tmp_path / "runtime")
    result = subprocess.run(
        [str(interpreter), "-I", "-S", "-B", "-c", _DISCOVER_TASKS, str(bundle), str(runtime)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    module, names = result.stdout.splitlines()
    assert Path(module).is_relative_to(bundle)
    assert names.split() == sorted(discover_tasks()) and "heart-disease" in names.split()
    assert (bundle / "tasks" / "heart-disease.yaml").is_file()


def test_stage_bundles_hold_what_their_stages_need(bundles: Bundles) -> None:
    pipeline = {size.name for size in bundles("pipeline", LAMBDA_PYTHON).distributions}
    promote = {size.name for size in bundles("promote", LAMBDA_PYTHON).distributions}
    assert {"pandas", "numpy", "mlflow-skinny", "sagemaker-mlflow", "aws-lambda-powertools"} <= pipeline
    assert {"mlflow-skinny", "sagemaker-mlflow", "aws-lambda-powertools", "filelock"} <= promote
    assert not promote & {"pandas", "numpy"}  # promotion reads no data


# --------------------------------------------------------------------------- predict


def test_bundle_holds_the_runtime_dependencies_and_our_code(predict_bundle: BundleReport) -> None:
    names = {size.name for size in predict_bundle.distributions}
    expected = {"numpy", "pydantic", "pydantic-core", "pydantic-settings", "aws-lambda-powertools", "aws-xray-sdk"}
    assert expected <= names
    assert {"clinrisk", "lambdas"} <= set(predict_bundle.top_level)
    assert (predict_bundle.root / "clinrisk" / "serving" / "prediction.py").is_file()
    # Only what runs there: the developer's tools and the build tooling stay out.
    assert not (predict_bundle.root / "clinrisk" / "local").exists()
    assert not (predict_bundle.root / "cdk_app").exists()


def test_bundle_is_pruned(predict_bundle: BundleReport) -> None:
    root = predict_bundle.root
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc"))
    assert not list(root.glob("numpy/**/tests"))
    assert not (root / "lambdas" / "predict" / "requirements.txt").exists()
    # What numpy needs at run time is still there.
    assert (root / "numpy" / "testing" / "__init__.py").is_file()
    assert any(root.glob("numpy.libs/*.so*"))
    assert predict_bundle.pruned_bytes > 0


def test_smoke_import_fails_without_the_runtime_botocore(smoke_target: tuple[Path, Path]) -> None:
    """The smoke import cannot see this venv: aws_xray_sdk needs botocore, which only the
    Lambda runtime (here its stand-in) provides."""
    bundle, interpreter = smoke_target
    with pytest.raises(BundleBuildError, match="No module named 'botocore'"):
        smoke_import(bundle, interpreter, ["aws_xray_sdk.core"])


def _fake_distribution(root: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *(f"Requires-Dist: {r}" for r in requires),
    ]
    (info / "METADATA").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_forbidden_checker_finds_planted_packages(tmp_path: Path) -> None:
    (tmp_path / "numpy").mkdir()
    (tmp_path / "xgboost").mkdir()
    (tmp_path / "xgboost" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "botocore.py").write_text("", encoding="utf-8")
    _fake_distribution(tmp_path, "scikit-learn", "1.5.0")  # metadata only: still caught

    found = forbidden_present(tmp_path, {**HEAVY_PACKAGES, **RUNTIME_PACKAGES})

    assert found == ["botocore", "scikit-learn", "xgboost", "xgboost-cpu"]


def test_unmet_requirements_names_a_missing_pin(tmp_path: Path) -> None:
    _fake_distribution(
        tmp_path, "needer", "1.0", ("missing-pkg>=1", "old-pkg>=2", "botocore>=1.11", "win; os_name=='nt'")
    )
    _fake_distribution(tmp_path, "old-pkg", "1.0")

    assert unmet_requirements(tmp_path) == [
        "needer needs missing-pkg>=1 (missing)",
        "needer needs old-pkg>=2 (bundle has 1.0)",
    ]


def test_build_refuses_a_dirty_destination_and_reports_pip_failures(tmp_path: Path) -> None:
    dirty = tmp_path / "dirty"
    dirty.mkdir()
    (dirty / "left-over").write_text("", encoding="utf-8")
    with pytest.raises(BundleBuildError, match="not empty"):
        build_lambda_bundle(PREDICT.requirements, dirty, source_dirs=())

    impossible = tmp_path / "requirements.txt"
    impossible.write_text("numpy==0.0.1\n", encoding="utf-8")
    with pytest.raises(BundleBuildError, match="pip could not install"):
        build_lambda_bundle(impossible, tmp_path / "bundle", source_dirs=())


# --------------------------------------------------------------------------- the stages, run from their bundles

# Runs in the bundle's interpreter with -I -S -B, as `smoke_import` does: only the bundle, the
# runtime stand-in and the standard library can be imported, and no bytecode lands in the
# bundle. It does one stage and prints its result as the last line.
_STAGE_SCRIPT = """
import importlib, json, sys
from dataclasses import dataclass
from pathlib import Path
split = sys.argv.index("--")
sys.path[:0] = sys.argv[1:split]
action, argument = sys.argv[split + 1], json.loads(sys.argv[split + 2])


@dataclass(frozen=True)
class Context:
    function_name: str = "clinrisk-stage"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:clinrisk-stage"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


if action == "validate":
    from clinrisk.pipeline import contracts, stages
    from lambdas.common import runtime
    ports, settings = runtime().ports, runtime().settings
    run = contracts.RunInput(run_id=argument["run_id"], task=argument.get("task", "readmission"))
    result = stages.validate_data(run, Path(argument["data"]), store=ports.store, settings=settings).model_dump()
elif action == "load-similar":
    # What promotion does on the aws backend, against an OpenSearch stand-in over HTTP.
    from opensearchpy import OpenSearch
    from clinrisk.adapters.opensearch import OpenSearchSimilarPatientIndex
    from clinrisk.explain.publishing import SimilarIndexPublisher
    from clinrisk.registry.serving_pointer import read_pointer
    from lambdas.common import runtime
    store = runtime().ports.store
    pointer = read_pointer(store)
    index = OpenSearchSimilarPatientIndex(OpenSearch(hosts=[argument["endpoint"]]), argument["index"])
    SimilarIndexPublisher(store=store, load=index.load)(pointer)
    result = {"version": pointer.version, "numpy_loaded": "numpy" in sys.modules}
else:
    result = importlib.import_module(argument["module"]).handler(argument["event"], Context())
print(json.dumps(result))
"""


@pytest.fixture
def stage_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, dict[str, str]]:
    """Settings for this test and the same settings as the environment of a stage Lambda. MLflow
    keeps its store in files: mlflow-skinny has no SQLite store (SageMaker's managed MLflow, which
    the Lambdas use in the cloud, is a REST server), and MLflow asks for its opt-in to file stores."""
    home = tmp_path / "home"
    uri = (home / "mlruns").as_uri()
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CLINRISK_BACKEND": "local",
        "CLINRISK_HOME": str(home),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_ALLOW_FILE_STORE": "true",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "CLINRISK_BOOTSTRAP_ROUNDS": "20",
        "CLINRISK_GATE__AUC_FLOOR": "0.5",
        "CLINRISK_GATE__MAX_SUBGROUP_AUC_GAP": "1.0",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "clinrisk",
    }
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)
    gate = GateRules(auc_floor=0.5, max_subgroup_auc_gap=1.0)
    settings = Settings(home=home, mlflow_tracking_uri=uri, bootstrap_rounds=20, gate=gate)
    return settings, environment


def _run_stage(
    target: tuple[Path, Path], environment: dict[str, str], runtime: Path, action: str, argument: dict[str, Any]
) -> Any:
    bundle, interpreter = target
    command = [str(interpreter), "-I", "-S", "-B", "-c", _STAGE_SCRIPT, str(bundle), str(runtime), "--", action]
    result = subprocess.run(
        [*command, json.dumps(argument)], env=environment, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_stage_lambdas_run_from_their_bundles(
    bundles: Bundles, stage_environment: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """validate and evaluate from the pipeline bundle and promote from its own, each under the
    Lambda Python with nothing but its bundle and the runtime's boto3; training runs here, as
    the SageMaker job would, on the channels validate wrote. A run without pyarrow, scikit-learn,
    scipy, xgboost, matplotlib or full MLflow, from the encounters file to the serving pointer."""
    settings, environment = stage_environment
    pipeline, promote = _smoke_target(bundles, "pipeline"), _smoke_target(bundles, "promote")
    runtime = lambda_runtime_stand_in(tmp_path / "runtime")
    data = tmp_path / "encounters.csv"
    write_table(generate_cohort(3000, seed=7), data)
    run = contracts.RunInput(run_id="bundled-run")

    validated = contracts.ValidateOutput.model_validate(
        _run_stage(pipeline, environment, runtime, "validate", {"run_id": run.run_id, "data": str(data)})
    )
    ports = build_ports(settings)
    channel_files = {p.name for p in (settings.store_root / contracts.run_prefix(run.run_id) / "channels").rglob("*")}
    assert {"train.csv.gz", "validation.csv.gz", "test.csv.gz"} <= channel_files

    trained = stages.train(run, validated, ports=ports, hyperparameters={"num_round": 100})
    evaluate_event = {
        "run_id": run.run_id,
        "model_prefix": trained.model_prefix,
        "test_prefix": validated.channels["test"],
    }
    evaluated = contracts.EvaluateOutput.model_validate(
        _run_stage(
            pipeline, environment, runtime, "handler", {"module": "lambdas.evaluate.handler", "event": evaluate_event}
        )
    )
    assert (evaluated.model_version, evaluated.champion_before, evaluated.gate_passed) == (1, None, True)
    _check_recorded_run(ports.registry, evaluated.model_version, settings.store_root)

    event = {"model_version": evaluated.model_version, "expected_champion": None}
    promoted = _run_stage(
        promote, environment, runtime, "handler", {"module": "lambdas.promote.handler", "event": event}
    )
    assert contracts.PromoteOutput.model_validate(promoted).outcome == "promoted"
    assert ports.registry.champion_version() == 1
    pointer = read_pointer(ports.store)
    assert pointer is not None and pointer.version == 1
    _check_similar_documents_load(promote, environment, runtime)


def test_a_task_runs_from_the_bundles_and_registers_its_pyfunc(
    bundles: Bundles, stage_environment: tuple[Settings, dict[str, str]], tmp_path: Path
) -> None:
    """heart-disease through the bundled stages: validate, evaluate (mlflow-skinny logs the task's pyfunc,
    its task file and signature) and promote into the task's own registered model; the pyfunc then
    loads where MLflow is complete and scores as the model directory does."""
    import mlflow

    from clinrisk.data.task_binding import resolve_task
    from clinrisk.model.risk_model import RiskModel
    from clinrisk.registry.model_registry import ARTIFACT_PREFIX_TAG
    from clinrisk.registry.tracking import tracking_at

    settings, environment = stage_environment
    pipeline, promote = _smoke_target(bundles, "pipeline"), _smoke_target(bundles, "promote")
    runtime = lambda_runtime_stand_in(tmp_path / "runtime")
    task = resolve_task("heart-disease")
    data = task.synthesize(tmp_path / "records", rows=1500, seed=3)[0]
    run = contracts.RunInput(run_id="bundled-task", task=task.name)
    validate = {"run_id": run.run_id, "data": str(data), "task": task.name}
    validated = contracts.ValidateOutput.model_validate(
        _run_stage(pipeline, environment, runtime, "validate", validate)
    )
    ports = build_ports(settings)
    trained = stages.train(run, validated, ports=ports, hyperparameters={"num_round": 100})
    event = {"run_id": run.run_id, "task": task.name, "model_prefix": trained.model_prefix,
             "test_prefix": validated.channels["test"]}  # fmt: skip
    evaluate = {"module": "lambdas.evaluate.handler", "event": event}
    evaluated = contracts.EvaluateOutput.model_validate(_run_stage(pipeline, environment, runtime, "handler", evaluate))
    assert evaluated.gate_passed, evaluated.gate_reasons
    promote_event: dict[str, Any] = {
        "model_version": evaluated.model_version, "expected_champion": None, "task": task.name,
    }  # fmt: skip
    promote_call = {"module": "lambdas.promote.handler", "event": promote_event}
    promoted = _run_stage(promote, environment, runtime, "handler", promote_call)
    assert contracts.PromoteOutput.model_validate(promoted).outcome == "promoted"
    registry = ports.registry.for_task(task.name, "clinrisk-heart-disease")
    assert registry.champion_version() == evaluated.model_version

    with tracking_at(registry.tracking_uri):
        pyfunc = mlflow.pyfunc.load_model(f"models:/clinrisk-heart-disease/{evaluated.model_version}")
    examples = task.examples(task.load([data]))
    records = examples.rows[pyfunc.metadata.get_input_schema().input_names()].head(30)
    prefix = registry.client.get_model_version(registry.model_name, str(evaluated.model_version)).tags
    model = RiskModel.load(settings.store_root / prefix[ARTIFACT_PREFIX_TAG], task.feature_schema)
    expected = model.predict_features(examples.features.head(30))
    assert pyfunc.predict(records)["probability"].to_numpy() == pytest.approx(expected, abs=1e-12)


class _OpenSearchStandIn(ThreadingHTTPServer):
    """Answers the similar-patient loader as an empty OpenSearch index would, recording every bulk line."""

    def __init__(self) -> None:
        self.bulk_lines: list[dict[str, Any]] = []
        self.paths: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.paths.append(self.path)
                if self.path == "/_bulk":
                    stand_in.bulk_lines += [json.loads(line) for line in body.decode().splitlines() if line]
                    answer: dict[str, Any] = {"errors": False, "items": []}
                else:
                    answer = {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def _check_similar_documents_load(promote: tuple[Path, Path], environment: dict[str, str], runtime: Path) -> None:
    """The promote bundle, without numpy, loads the champion's similar-patient documents (which the
    training job wrote into its model directory) with opensearch-py `_bulk`."""
    server = _OpenSearchStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        argument = {"endpoint": endpoint, "index": "similar"}
        loaded = _run_stage(promote, environment, runtime, "load-similar", argument)
    finally:
        server.shutdown()
    assert loaded == {"version": 1, "numpy_loaded": False}
    assert server.paths[0] == "/similar/_search" and set(server.paths[1:]) == {"/_bulk"}
    actions, documents = server.bulk_lines[::2], server.bulk_lines[1::2]
    assert actions[0] == {"index": {"_index": "similar"}} and len(documents) > 1000
    assert {d["model_version"] for d in documents} == {1}
    assert set(documents[0]) == set(similar_index_body(28)["mappings"]["properties"])


def _check_recorded_run(registry: Registry, version: int, store_root: Path) -> None:
    """What evaluate recorded without the plotting stack: the report and card, the plots
    named as skipped, and a pyfunc model that loads and scores where MLflow is complete."""
    import mlflow
    import pandas as pd

    from clinrisk.data.validation import ensure_valid
    from clinrisk.model.risk_model import RiskModel
    from clinrisk.registry.tracking import tracking_at

    client = registry.client
    details = client.get_model_version(registry.model_name, str(version))
    run = client.get_run(details.run_id)
    assert "matplotlib" in run.data.tags["plots_skipped"]
    artifacts = {item.path for item in client.list_artifacts(details.run_id)}
    assert {"evaluation.json", "model_card.md"} <= artifacts and "plots" not in artifacts

    with tracking_at(registry.tracking_uri):  # else MLflow's fluent API uses its default store
        pyfunc = mlflow.pyfunc.load_model(f"models:/{registry.model_name}/{version}")
    encounters = ensure_valid(generate_cohort(40, seed=11), require_target=False).drop(columns=["readmitted"])
    expected = RiskModel.load(store_root / details.tags["artifact_prefix"]).predict(encounters)
    scored = pd.DataFrame(pyfunc.predict(encounters))
    assert scored["probability"].to_numpy() == pytest.approx(expected, abs=1e-12)
