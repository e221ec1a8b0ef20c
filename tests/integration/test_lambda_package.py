"""The predict Lambda's bundle, built for real with pip (issue 3, Lambda packaging budget).

Needs a reachable package index: if pip cannot get the wheels, the build fails with pip's own
message, on purpose: a skipped packaging test would hide a bundle that cannot be built.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from clinrisk.packaging import (
    HEAVY_PACKAGES,
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    RUNTIME_PACKAGES,
    BundleBuildError,
    BundleReport,
    FunctionSpec,
    build_lambda_bundle,
    find_interpreter,
    forbidden_present,
    lambda_runtime_stand_in,
    predict_function,
    smoke_import,
    unmet_requirements,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PREDICT = predict_function(REPO_ROOT)
LAMBDA_PYTHON = "3.12"


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


@pytest.fixture(scope="session")
def predict_bundle(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> BundleReport:
    return _build_once(tmp_path_factory, worker_id, "predict-bundle-312", _builder(PREDICT, LAMBDA_PYTHON))


@pytest.fixture(scope="session")
def smoke_target(
    tmp_path_factory: pytest.TempPathFactory, worker_id: str, predict_bundle: BundleReport
) -> tuple[Path, Path]:
    """(bundle, interpreter): the 3.12 bundle under CPython 3.12 when this machine has one;
    otherwise the same requirements built for this interpreter's version, under it."""
    interpreter = find_interpreter(LAMBDA_PYTHON)
    if interpreter is not None:
        return predict_bundle.root, interpreter
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    report = _build_once(tmp_path_factory, worker_id, f"predict-bundle-{here}", _builder(PREDICT, here))
    return report.root, Path(sys.executable)


def test_bundle_is_within_the_lambda_limit(predict_bundle: BundleReport) -> None:
    assert predict_bundle.unzipped_bytes < LAMBDA_UNZIPPED_LIMIT_BYTES, predict_bundle.distributions[:8]
    assert 0 < predict_bundle.zipped_bytes < predict_bundle.unzipped_bytes


def test_bundle_holds_no_training_stack_and_no_boto(predict_bundle: BundleReport) -> None:
    assert forbidden_present(predict_bundle.root, PREDICT.forbidden) == []
    packaged = {size.name for size in predict_bundle.distributions} | set(predict_bundle.top_level)
    assert not packaged & {"boto3", "botocore", "s3transfer"}


def test_bundle_holds_the_runtime_dependencies_and_our_code(predict_bundle: BundleReport) -> None:
    names = {size.name for size in predict_bundle.distributions}
    expected = {"numpy", "pydantic", "pydantic-core", "pydantic-settings", "aws-lambda-powertools", "aws-xray-sdk"}
    assert expected <= names
    assert {"clinrisk", "lambdas"} <= set(predict_bundle.top_level)
    assert (predict_bundle.root / "clinrisk" / "packaging.py").is_file()


def test_bundle_is_pruned(predict_bundle: BundleReport) -> None:
    root = predict_bundle.root
    assert not list(root.rglob("__pycache__")) and not list(root.rglob("*.pyc"))
    assert not list(root.glob("numpy/**/tests"))
    assert not (root / "lambdas" / "predict" / "requirements.txt").exists()
    # What numpy needs at run time is still there.
    assert (root / "numpy" / "testing" / "__init__.py").is_file()
    assert any(root.glob("numpy.libs/*.so*"))
    assert predict_bundle.pruned_bytes > 0


def test_bundle_imports_under_the_lambda_python(smoke_target: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, interpreter = smoke_target
    runtime = lambda_runtime_stand_in(tmp_path / "runtime")
    result = smoke_import(bundle, interpreter, PREDICT.smoke_modules, runtime_paths=[runtime])
    assert result.stray == []


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
