"""The training source tarball run the way the SageMaker XGBoost 3.0-5 image runs it, by the
image's own toolkit code, under the image's CPython 3.10 and package versions.

The image (aws/sagemaker-xgboost-container, docker/3.0-5/{base,final}/Dockerfile.cpu and
requirements.txt at 43785110b2cfbeb304ae34e535ed7d6edd270a0d; docker/3.0-5 is unchanged at
cb8df91cd44c7b01c53ccf321fd3fdf3eb78adae) starts training with the toolkit's `train` command
(sagemaker-containers 2.8.6.post2, `_trainer.train`), which calls SAGEMAKER_TRAINING_MODULE,
`sagemaker_xgboost_container.training:main`; in script mode that is `modules.run_module`:
extract the `code` channel's tarball into /opt/ml/code, `prepare()` (write setup.py with
`packages=['']` and a MANIFEST.in of `recursive-include . *`), `install()` (`pip install .`),
then `python -m train` with the hyperparameters as arguments. Serving (`serve`,
`sagemaker_xgboost_container.serving:serving_entrypoint`) calls the toolkit's `server.start`:
`_modules.import_module` (the same extract, prepare and install), then gunicorn on
`serving:main`, which imports SAGEMAKER_PROGRAM and serves its model_fn/transform_fn through
the toolkit's Transformer and Worker. All of that toolkit code runs here as it is, except:

- the image's own package (`sagemaker_xgboost_container`, not on PyPI) is the stand-in in
  tests/image/image_package: its training.py and serving.py script-mode branches, reproduced
  from src/sagemaker_xgboost_container/training.py and serving.py at the commit above;
- /opt/ml is `<tmp>/opt/ml` (SAGEMAKER_BASE_DIR, which the toolkit honours); the one hard-coded
  /opt/ml path, the ASL's `sagemaker_submit_directory`, is mapped onto it;
- the `code` channel is copied where SageMaker would download it, and the endpoint's
  SAGEMAKER_SUBMIT_DIRECTORY is the tarball's local path instead of its s3:// URI (the toolkit
  downloads an s3:// URI with boto3 to a temporary file and then treats it as this path);
- nginx is not started (SAGEMAKER_USE_NGINX=false; it proxies to gunicorn, its config is written
  to /etc, and it is not installed here): requests go to gunicorn directly;
- network isolation is PIP_NO_INDEX=1 (the toolkit's `pip install .` must need no index).
"""

from __future__ import annotations

import json
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cdk_app.constructs.training_source import VENDORED_DIR
from cdk_app.state_machine import definition_text
from clinrisk.adapters.local import DirectoryObjectStore
from clinrisk.checksums import directory_checksum
from clinrisk.data.splits import split_by_patient
from clinrisk.data.task_binding import resolve_task
from clinrisk.data.task_port import DEFAULT_TASK
from clinrisk.explain.similar_documents import SimilarDocuments
from clinrisk.model.risk_model import BOOSTER_FILE, CALIBRATOR_FILE, FEATURE_SCHEMA_FILE, SUMMARY_FILE, RiskModel
from clinrisk.model.training import Hyperparameters, train_model
from clinrisk.pipeline.contracts import RunInput
from clinrisk.pipeline.stages import validate_data
from clinrisk.serving.endpoint_archive import CONTENT_TYPE, EndpointMetadata, archive_bytes, unpack_archive
from clinrisk.serving.endpoint_contract import request_body
from clinrisk.serving.scoring import Bands, ServingModel
from clinrisk.serving.task_scoring import TaskServingModel
from clinrisk.settings import Settings
from clinrisk.taskspec.features import feature_names
from tests.conftest import cohort
from tests.image.conftest import Container
from tests.image.environment import site_packages
from tests.integration.test_predict_api import _records

pytestmark = pytest.mark.image

SAGEMAKER_ML = "/opt/ml"
NUM_ROUND = "60"  # few rounds keep the job short; passed as the toolkit passes hyperparameters
BANDS = Bands(medium_from=0.1, high_from=0.2)


def _train_state(node: Any) -> dict[str, Any]:
    """The retraining definition's `Train` task, wherever it is nested."""
    if isinstance(node, dict):
        if "Train" in node and isinstance(node["Train"], dict) and "Parameters" in node["Train"]:
            state: dict[str, Any] = node["Train"]
            return state
        for value in node.values():
            found = _train_state(value)
            if found:
                return found
    return {}


def job_hyperparameters(container: Container, tarball: Path) -> dict[str, str]:
    """The HyperParameters the state machine gives CreateTrainingJob, with /opt/ml mapped."""
    given = _train_state(json.loads(definition_text()))["Parameters"]["HyperParameters"]
    values = {k: v.replace("${TrainingSourceFileName}", tarball.name) for k, v in given.items()}
    values["sagemaker_submit_directory"] = values["sagemaker_submit_directory"].replace(
        SAGEMAKER_ML, str(container.base), 1
    )
    return {**values, "num_round": NUM_ROUND}


def job_channels() -> set[str]:
    """The channels the state machine's Train state gives CreateTrainingJob."""
    return {c["ChannelName"] for c in _train_state(json.loads(definition_text()))["Parameters"]["InputDataConfig"]}


def channels(directory: Path, tarball: Path, task: str = DEFAULT_TASK, data: Path | None = None) -> dict[str, Path]:
    """The job's channels as the cloud's validate stage writes them (`validate_data`: gzip CSV train
    and validation, the task file as `task`), and the code channel: every channel the Train state names."""
    if data is None:
        directory.mkdir(parents=True, exist_ok=True)
        data = directory / "cohort.csv"
        cohort(3000, 21).to_csv(data, index=False, na_rep="?")
    store = DirectoryObjectStore(directory / "store")
    run = RunInput(run_id="image-test", task=task)
    validated = validate_data(run, data, store=store, settings=Settings(), task=resolve_task(task))
    found = {name: store.path(validated.channels[name]) for name in job_channels() - {"code"}}
    (directory / "code").mkdir(parents=True)
    (directory / "code" / tarball.name).write_bytes(tarball.read_bytes())
    return {**found, "code": directory / "code"}


def run_training(container: Container, tarball: Path, data: Path, task: str = DEFAULT_TASK) -> str:
    """Train `task` in the container on its synthetic cohort (readmission's: `cohort`); its output,
    after checking the job succeeded."""
    records = None if task == DEFAULT_TASK else resolve_task(task).synthesize(data / "records", rows=600, seed=3)[0]
    result = container.train(job_hyperparameters(container, tarball), channels(data, tarball, task, records))
    output = f"{result.stdout}\n{result.stderr}"
    failure = container.base / "output" / "failure"
    assert result.returncode == 0, output + (failure.read_text() if failure.exists() else "")
    return output


def test_training_installs_the_tarball_and_train_py_writes_the_model(
    container: Container, training_source: Path, tmp_path: Path
) -> None:
    output = run_training(container, training_source, tmp_path / "data")
    # No `success` file: the image's training.main ends with sys.exit(0), past the toolkit's write of it.
    assert not (container.base / "output" / "failure").exists()
    # The toolkit installed the source as module `train`, from /opt/ml/code, with pip.
    assert (container.base / "code" / "setup.py").is_file()
    assert (container.site_packages / "train.py").is_file()
    assert "-m pip install ." in output
    # The task files beside clinrisk/, where clinrisk.taskspec.catalogue.TASKS_DIR looks, in both places.
    for root in (container.site_packages, container.base / "code"):
        assert (root / "tasks" / "heart-disease.yaml").is_file(), root
    _imports_from(container, container.site_packages)  # as `python -m train` ran it
    _imports_from(container, container.base / "code")  # the extracted source, e.g. `python train.py`
    model_dir = container.base / "model"
    for name in (BOOSTER_FILE, CALIBRATOR_FILE, FEATURE_SCHEMA_FILE, SUMMARY_FILE):
        assert (model_dir / name).is_file(), name
    summary = json.loads((model_dir / SUMMARY_FILE).read_text())
    assert summary["hyperparameters"]["num_round"] == int(NUM_ROUND)  # arrived as the toolkit passes it
    assert json.loads((container.base / "output" / "data" / "metrics.json").read_text())["validation"]["roc_auc"] > 0.6
    assert RiskModel.load(model_dir).predict(cohort(200, 5)).shape == (200,)
    # The similar-patient documents, computed in the image beside the model, as promotion loads them.
    documents = SimilarDocuments(model_dir)
    assert documents.header.rows == len(list(documents)) > 0


def test_a_task_trains_from_its_task_channel(container: Container, training_source: Path, tmp_path: Path) -> None:
    """heart-disease: the job's `task` channel holds the run's task file (SM_CHANNEL_TASK, set by the
    toolkit from inputdataconfig.json), and train.py reads the train and validation channels as
    that task's records: the model is the task's."""
    assert {"train", "validation", "task", "code"} == job_channels()
    run_training(container, training_source, tmp_path / "data", task="heart-disease")
    model_dir = container.base / "model"
    saved = [f["name"] for f in json.loads((model_dir / FEATURE_SCHEMA_FILE).read_text())["features"]]
    assert saved == feature_names(resolve_task("heart-disease").source.spec)
    # The task file's training overrides (shallow, regularised trees), which no job argument names.
    summary = json.loads((model_dir / SUMMARY_FILE).read_text())["hyperparameters"]
    assert (summary["max_depth"], summary["min_child_weight"]) == (2, 3.0)
    assert json.loads((container.base / "output" / "data" / "metrics.json").read_text())["validation"]["roc_auc"] > 0.6


def test_vendored_packages_at_the_root_fail_the_toolkits_install(
    container: Container, training_source: Path, tmp_path: Path
) -> None:
    """The layout before issue 9: the vendored packages' .dist-info directories at the tarball's
    root make pip refuse the wheel the toolkit builds, and the job fails before train.py runs."""
    flat = tmp_path / "flat" / "training-source-flat.tar.gz"
    flat.parent.mkdir()
    with tarfile.open(training_source) as source, tarfile.open(flat, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member)
            member.name = member.name.removeprefix(f"{VENDORED_DIR}/")
            target.addfile(member, data)
    result = container.train(job_hyperparameters(container, flat), channels(tmp_path / "data", flat))
    assert result.returncode != 0
    assert "multiple .dist-info directories found" in result.stdout + result.stderr
    assert "InstallModuleError" in (container.base / "output" / "failure").read_text()
    assert not (container.base / "model" / SUMMARY_FILE).exists()


def _imports_from(container: Container, directory: Path) -> None:
    """The entry points, clinrisk and the vendored packages all import from `directory` (and its
    `lib/`), with the image's numpy: nothing is taken from elsewhere, nothing is missing."""
    modules = (
        "train",
        "inference",
        "clinrisk.model.training",
        "pydantic",
        "pydantic_core",
        "pydantic_settings",
        "numpy",
    )
    code = (
        f"sys.path.insert(0, {str(directory)!r}); import importlib, json; "
        f"print(json.dumps([importlib.import_module(m).__file__ for m in {modules!r}]))"
    )
    result = container.run(code)
    assert result.returncode == 0, result.stderr
    files = dict(zip(modules, map(Path, json.loads(result.stdout.splitlines()[-1])), strict=True))
    for name in ("train", "inference", "clinrisk.model.training"):
        assert files[name].parent.is_relative_to(directory), (name, files[name])
    for name in ("pydantic", "pydantic_core", "pydantic_settings"):
        assert files[name].is_relative_to(directory / VENDORED_DIR), (name, files[name])
    assert files["numpy"].is_relative_to(site_packages(container.image_env)), files["numpy"]


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registered version's model directory (trained in process, as the local pipeline does)."""
    splits = split_by_patient(cohort(3000, 21), seed=1, test=0.2, validation=0.25)
    directory = tmp_path_factory.mktemp("version") / "model"
    train_model(splits["train"], splits["validation"], Hyperparameters(num_round=int(NUM_ROUND))).save(directory)
    return directory


def _post(url: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, method="POST", headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.status, answer.headers.get_content_type(), answer.read()


def test_the_endpoint_installs_the_tarball_and_answers_as_the_lambda_mode(
    container: Container, training_source: Path, version_dir: Path
) -> None:
    metadata = EndpointMetadata(model_name="clinrisk", version=3, checksum=directory_checksum(version_dir))
    # SageMaker unpacks the version's model.tar.gz (ModelDataUrl) into /opt/ml/model.
    unpack_archive(archive_bytes(version_dir, metadata), container.base / "model")
    records = _records(25)
    priors = [int(r.pop("prior_encounters", 0)) for r in records]
    body = request_body(records, priors, bands=BANDS, top_k=3)

    with container.serve("inference.py", training_source) as url:
        status, content_type, answer = _post(url, body)

    assert status == 200 and content_type == CONTENT_TYPE, container.log()
    assert (container.site_packages / "inference.py").is_file()  # installed by the toolkit
    served = json.loads(answer)
    assert (served["model_name"], served["model_version"], served["checksum"]) == ("clinrisk", 3, metadata.checksum)
    # The Lambda mode scores in process with ServingModel (clinrisk.serving.prediction, the predict Lambda).
    in_lambda = ServingModel.load(version_dir, name="clinrisk", version=3, checksum=metadata.checksum).score(
        records, priors, bands=BANDS, top_k=3
    )
    assert len(served["scored"]) == len(in_lambda) == 25
    for endpoint, expected in zip(served["scored"], in_lambda, strict=True):
        assert endpoint["probability"] == pytest.approx(expected.probability, abs=1e-6)
        assert endpoint["band"] == expected.band
        assert [f["factor"] for f in endpoint["factors"]] == [f.factor for f in expected.factors]
        assert [f["value"] for f in endpoint["factors"]] == [f.value for f in expected.factors]
        contributions = [f["contribution"] for f in endpoint["factors"]]
        assert contributions == pytest.approx([f.contribution for f in expected.factors], abs=1e-6)


def test_a_tasks_endpoint_loads_its_model_from_the_bundled_task_file(
    container: Container, training_source: Path, tmp_path: Path
) -> None:
    """heart-disease's archive (endpoint.json names the task): the endpoint loads the model with the task
    file the source tarball bundles, under the image's Python and packages, and scores as serving does."""
    task = resolve_task("heart-disease")
    data = task.synthesize(tmp_path / "records", rows=1500, seed=3)[0]
    splits = task.split(task.load([data]), seed=1, test=0.2, validation=0.2)
    version_dir = tmp_path / "version"
    train_model(splits["train"], splits["validation"], Hyperparameters(**task.hyperparameters()), task).save(
        version_dir
    )
    checksum = directory_checksum(version_dir)
    metadata = EndpointMetadata(model_name="clinrisk-heart-disease", version=2, checksum=checksum, task=task.name)
    unpack_archive(archive_bytes(version_dir, metadata), container.base / "model")
    spec = task.source.spec
    typed = task.examples(splits["test"]).rows.head(20)  # validated as the API validates a request
    records = [
        {c.name: None if pd.isna(row[c.name]) else row[c.name] for c in spec.feature_columns}
        for row in typed.to_dict("records")
    ]

    with container.serve("inference.py", training_source) as url:
        status, _, answer = _post(url, request_body(records, [], bands=BANDS, top_k=3))

    assert status == 200, container.log()
    served = json.loads(answer)
    assert (served["model_name"], served["model_version"]) == ("clinrisk-heart-disease", 2)
    expected = TaskServingModel.load(version_dir, spec=spec, name="h", version=2, checksum=checksum)
    in_lambda = expected.score(records, bands=BANDS, top_k=3)
    assert [s["probability"] for s in served["scored"]] == pytest.approx([s.probability for s in in_lambda], abs=1e-6)
    assert [[f["factor"] for f in s["factors"]] for s in served["scored"]] == [
        [f.factor for f in s.factors] for s in in_lambda
    ]
