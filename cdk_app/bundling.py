"""Build a Lambda deployment directory without Docker, check it, and measure it.

pip downloads wheels built for the Lambda platform (CPython 3.12, manylinux x86_64) into a
plain directory, and our own packages are copied beside them. Nothing is compiled here, so
the same bundle comes out of any Linux or macOS machine, whatever Python runs the build.

The requirements file is a complete lock installed with `--no-deps`: pip must not resolve
dependencies itself, or aws-xray-sdk would pull in botocore, which the Lambda runtime already
provides. `unmet_requirements` then checks the lock is complete, so a missing pin fails the
build here rather than as an ImportError at cold start.

What is pruned after the install (see `PRUNED_DIRS`), and why it is safe:
- `__pycache__` / `*.pyc`: bytecode from the build interpreter is tagged with its version
  (cpython-311 here) and the 3.12 runtime would ignore it. pip is also told `--no-compile`.
- `numpy/**/tests`: numpy's own test suite (~16 MiB); only `numpy.test()` imports it.
- `bin/`: console-script wrappers (f2py, dotenv, ...) whose shebang names the build
  machine's Python; Lambda never runs them.
Kept on purpose: `*.dist-info` (pydantic and Powertools read package metadata), `*.pyi`
stubs and numpy's C headers (small, and removing them buys little).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel, ConfigDict

from clinrisk.errors import ClinriskError

MIB = 1024 * 1024
# AWS's "250 MB" is 262,144,000 bytes, i.e. 250 MiB, for the function and all its layers.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * MIB

# Lambda's Python 3.12 runtime runs on Amazon Linux 2023 (glibc 2.34), so any manylinux tag up
# to 2_34 runs there. pip takes --platform tags literally (it only widens the legacy
# manylinux2014/2010 aliases), so every manylinux_2_X tag is listed, newest first, as pip on an
# AL2023 host would rank them. numpy 2.x, for one, ships only manylinux_2_27/2_28 wheels.
LAMBDA_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(34, 16, -1)),
    "manylinux2014_x86_64",
)

# In the Lambda runtime, after the function's own code on sys.path: requirements on these are
# met without packaging them.
RUNTIME_PROVIDED: frozenset[str] = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
# Import names of the runtime-provided packages, for `lambda_runtime_stand_in`.
_RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six", "jmespath")

# Distribution name -> the import names it installs. The training stack has no place in a
# serving bundle, and boto3/botocore would only shadow the runtime's copies.
HEAVY_PACKAGES: Mapping[str, tuple[str, ...]] = {
    "xgboost": ("xgboost",),
    "xgboost-cpu": ("xgboost",),
    "scipy": ("scipy",),
    "pandas": ("pandas",),
    "pyarrow": ("pyarrow",),
    "mlflow": ("mlflow",),
    "mlflow-skinny": ("mlflow",),
    "shap": ("shap",),
    "scikit-learn": ("sklearn",),
}
RUNTIME_PACKAGES: Mapping[str, tuple[str, ...]] = {
    "boto3": ("boto3",),
    "botocore": ("botocore",),
    "s3transfer": ("s3transfer",),
}

PRUNED_DIRS = ("**/__pycache__", "numpy/**/tests", "bin")
PRUNED_FILES = ("**/*.pyc",)
# Never copied from our own source trees.
_SOURCE_IGNORES = ("__pycache__", "*.pyc", "*.pyo", "tests", "requirements*.txt", ".mypy_cache", ".pytest_cache")
# What only a developer's machine runs (the CLI and the API Gateway stand-in): never in a Lambda.
# The build tooling (this module) lives in cdk_app, which no bundle copies.
DEVELOPER_ONLY: tuple[str, ...] = ("clinrisk/local",)

_PIP_TIMEOUT_SECONDS = 900
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same bundle zips to the same bytes


class BundleBuildError(ClinriskError):
    """pip failed, the lock is incomplete, or a source package collides with a dependency."""


class DistributionSize(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    bytes: int

    @property
    def mib(self) -> float:
        return self.bytes / MIB


class BundleReport(BaseModel):
    """Sizes are bytes of file content (not disk blocks); `distributions` is largest first."""

    model_config = ConfigDict(frozen=True)

    root: Path
    python_version: str
    unzipped_bytes: int
    zipped_bytes: int
    pruned_bytes: int
    build_seconds: float
    distributions: list[DistributionSize]
    top_level: list[str]

    @property
    def unzipped_mib(self) -> float:
        return self.unzipped_bytes / MIB

    @property
    def zipped_mib(self) -> float:
        return self.zipped_bytes / MIB


@dataclass(frozen=True)
class FunctionSpec:
    """What one Lambda function's bundle is made of, and what must stay out of it."""

    name: str
    requirements: Path
    source_dirs: tuple[Path, ...]
    forbidden: Mapping[str, tuple[str, ...]]
    smoke_modules: tuple[str, ...]


def _sources(repo_root: Path) -> tuple[Path, ...]:
    """Our code every function carries. `tasks/` (the task files) sits beside `clinrisk/` as it does
    in the repository, so `clinrisk.taskspec.catalogue.TASKS_DIR` finds it at /var/task/tasks."""
    return (repo_root / "clinrisk", repo_root / "lambdas", repo_root / "tasks")


def _lambda_spec(
    repo_root: Path,
    name: str,
    *,
    forbidden: Mapping[str, tuple[str, ...]],
    smoke_modules: tuple[str, ...],
    extra_sources: tuple[Path, ...] = (),
) -> FunctionSpec:
    """The bundle `name`: lock file lambdas/<name>/requirements.txt, code our sources (and `extra_sources`)."""
    return FunctionSpec(
        name=name,
        requirements=repo_root / "lambdas" / name / "requirements.txt",
        source_dirs=(*_sources(repo_root), *extra_sources),
        forbidden=forbidden,
        smoke_modules=smoke_modules,
    )


# What every handler loads: pydantic and Powertools (Tracer imports aws_xray_sdk.core lazily, and
# it needs the runtime's botocore).
_HANDLER_SMOKE_MODULES = (
    "pydantic",
    "pydantic_core",
    "pydantic_settings",
    "aws_lambda_powertools",
    "aws_lambda_powertools.tracing",
    "aws_xray_sdk.core",
    "yaml",  # task files
    "clinrisk.taskspec.catalogue",
)


def predict_function(repo_root: Path) -> FunctionSpec:
    """The numpy-only predict Lambda. `aws_xray_sdk.core` is imported in the smoke test
    because Tracer imports it lazily, and it needs the runtime's botocore."""
    return _lambda_spec(
        repo_root,
        "predict",
        forbidden={**HEAVY_PACKAGES, **RUNTIME_PACKAGES},
        smoke_modules=(
            "numpy",
            *_HANDLER_SMOKE_MODULES,
            "clinrisk.settings",
            # The handler itself: proves the serving path needs nothing outside the bundle.
            "lambdas.predict.handler",
            "lambdas.batch_scoring.handler",
        ),
    )


# What the retraining stages' Lambdas must not carry: the training stack (fitting happens in
# the SageMaker job), the plotting stack, and the full MLflow server distribution. Full `mlflow`
# is named by distribution only: mlflow-skinny, which the stages need, installs the same `mlflow`
# import name.
STAGE_FORBIDDEN: Mapping[str, tuple[str, ...]] = {
    "pyarrow": ("pyarrow",),
    "scipy": ("scipy",),
    "scikit-learn": ("sklearn",),
    "xgboost": ("xgboost",),
    "xgboost-cpu": ("xgboost",),
    "mlflow": (),
    "shap": ("shap",),
    "matplotlib": ("matplotlib",),
    **RUNTIME_PACKAGES,
}
# Import names both stage bundles must load: Powertools (Tracer needs the runtime's botocore) and
# MLflow with the SageMaker plugin, whose stores and SigV4 auth the ARN tracking URI selects.
_STAGE_SMOKE_MODULES = (
    *_HANDLER_SMOKE_MODULES,
    "mlflow",
    "mlflow.tracking",
    "sagemaker_mlflow.auth",
    "sagemaker_mlflow.mlflow_sagemaker_store",
    "sagemaker_mlflow.mlflow_sagemaker_registry_store",
    "clinrisk.settings",
)


def pipeline_function(repo_root: Path) -> FunctionSpec:
    """The validate and evaluate Lambdas, which share one bundle: pandas, numpy and
    mlflow-skinny, without pyarrow, scikit-learn, scipy or xgboost (see clinrisk.data.tables,
    clinrisk.evaluation.metrics and clinrisk.model.risk_model for what replaces them)."""
    return _lambda_spec(
        repo_root,
        "pipeline",
        forbidden=STAGE_FORBIDDEN,
        smoke_modules=(
            "numpy",
            "pandas",
            *_STAGE_SMOKE_MODULES,
            # What evaluate imports only when it runs: logging the pyfunc model, and its code.
            "mlflow.pyfunc",
            "mlflow.models",
            "clinrisk.registry.tracking",
            "clinrisk.evaluation.evaluate",
            "clinrisk.model.held_out",
            "clinrisk.model.training",
            "lambdas.validate.handler",
            "lambdas.evaluate.handler",
            "lambdas.batch_scoring.handler",
        ),
    )


def promote_function(repo_root: Path) -> FunctionSpec:
    """The promote Lambda: the MLflow registry client, the serving pointer and the loading of the
    champion's similar-patient documents into OpenSearch Serverless; no data stack, not even numpy."""
    return _lambda_spec(
        repo_root,
        "promote",
        forbidden={**STAGE_FORBIDDEN, "pandas": ("pandas",), "numpy": ("numpy",)},
        smoke_modules=(
            *_STAGE_SMOKE_MODULES,
            "opensearchpy",
            "clinrisk.explain.publishing",
            "clinrisk.adapters.opensearch",
            "lambdas.promote.handler",
        ),
    )


# The local explanation engines: the cloud functions use OpenSearch Serverless and Bedrock instead.
LOCAL_EXPLAIN_PACKAGES: Mapping[str, tuple[str, ...]] = {
    "usearch": ("usearch",),
    "wordllama": ("wordllama",),
    "bm25s": ("bm25s",),
    "tokenizers": ("tokenizers",),
}


def explain_function(repo_root: Path) -> FunctionSpec:
    """The explain and rag_ingest Lambdas, one bundle: predict's numpy scoring plus opensearch-py."""
    return _lambda_spec(
        repo_root,
        "explain",
        extra_sources=(repo_root / "rag_ingest",),
        forbidden={**HEAVY_PACKAGES, **RUNTIME_PACKAGES, **LOCAL_EXPLAIN_PACKAGES},
        smoke_modules=(
            "numpy",
            "pydantic",
            "aws_lambda_powertools",
            "aws_lambda_powertools.utilities.batch",
            "yaml",
            "clinrisk.taskspec.catalogue",
            "aws_lambda_powertools.utilities.parser",
            "aws_xray_sdk.core",
            "opensearchpy",
            "clinrisk.adapters.opensearch",
            "clinrisk.adapters.bedrock",
            "lambdas.explain.handler",
            "rag_ingest.handler",
        ),
    )


# Every Lambda bundle, by name: what `cdk_app.bundling` builds and the packaging test measures.
FUNCTION_SPECS: dict[str, Callable[[Path], FunctionSpec]] = {
    "predict": predict_function,
    "pipeline": pipeline_function,
    "promote": promote_function,
    "explain": explain_function,
}


def build_lambda_bundle(
    requirements: Path,
    destination: Path,
    *,
    source_dirs: Sequence[Path],
    python_version: str = "3.12",
    platforms: Sequence[str] = LAMBDA_PLATFORMS,
    provided: frozenset[str] = RUNTIME_PROVIDED,
) -> BundleReport:
    """Install `requirements` for Lambda into `destination` (absent or empty), copy
    `source_dirs` beside them, prune, check the lock is complete, and measure the result."""
    _ensure_empty(destination)
    started = time.perf_counter()
    _pip_install(requirements, destination, python_version=python_version, platforms=platforms)
    copy_sources(source_dirs, destination)
    pruned = prune_bundle(destination)
    unmet = unmet_requirements(
        destination, python_version=python_version, extras=requested_extras(requirements), provided=provided
    )
    if unmet:
        raise BundleBuildError(f"{requirements} is not a complete lock: " + "; ".join(unmet))
    return measure_bundle(
        destination, python_version=python_version, pruned_bytes=pruned, build_seconds=time.perf_counter() - started
    )


def _ensure_empty(destination: Path) -> None:
    # pip --target would merge into an old bundle and keep whatever a new lock dropped.
    if destination.exists() and any(destination.iterdir()):
        raise BundleBuildError(f"{destination} is not empty; a bundle is built into an empty directory")
    destination.mkdir(parents=True, exist_ok=True)


def _pip_install(requirements: Path, destination: Path, *, python_version: str, platforms: Sequence[str]) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(destination),
        *(f"--platform={tag}" for tag in platforms),
        "--implementation=cp",
        f"--python-version={python_version}",
        "--only-binary=:all:",
        "--no-deps",
        "--no-compile",
        "--upgrade",
        "--disable-pip-version-check",
        "--requirement",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise BundleBuildError(
            f"pip could not install {requirements} for CPython {python_version} on {platforms[0]} and older "
            f"(exit {result.returncode}). Is a package index reachable, and does it have wheels for that "
            f"platform?\n{tail}"
        )


def copy_sources(source_dirs: Iterable[Path], destination: Path) -> None:
    for source in source_dirs:
        target = destination / source.name
        if target.exists():
            raise BundleBuildError(f"source package {source.name!r} collides with an installed dependency")
        shutil.copytree(source, target, ignore=_source_ignores(source))
    present = developer_only_present(destination)
    if present:
        raise BundleBuildError(f"developer-only code reached the bundle: {', '.join(present)}")


def _source_ignores(source: Path) -> Callable[[str, list[str]], set[str]]:
    by_name = shutil.ignore_patterns(*_SOURCE_IGNORES)

    def ignore(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(source.parent).as_posix()
        return set(by_name(directory, names)) | {name for name in names if f"{relative}/{name}" in DEVELOPER_ONLY}

    return ignore


def developer_only_present(bundle: Path) -> list[str]:
    """The DEVELOPER_ONLY paths found in `bundle` (none, in a bundle this module built)."""
    return [path for path in DEVELOPER_ONLY if (bundle / path).exists()]


def prune_bundle(bundle: Path) -> int:
    """Delete what no import needs (the module docstring says why each is safe); returns bytes freed."""
    freed = 0
    for pattern in PRUNED_DIRS:
        for directory in list(bundle.glob(pattern)):
            if directory.is_dir() and not directory.is_symlink():
                freed += tree_bytes(directory)
                shutil.rmtree(directory)
    for pattern in PRUNED_FILES:
        for file in bundle.glob(pattern):
            freed += file.stat().st_size
            file.unlink()
    return freed


def tree_bytes(root: Path) -> int:
    return sum(path.stat().st_size for path in _files(root))


def _files(root: Path) -> Iterable[Path]:
    return (path for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def _bundle_distributions(bundle: Path) -> list[Distribution]:
    return list(distributions(path=[str(bundle)]))


def requested_extras(requirements: Path) -> dict[str, frozenset[str]]:
    """Canonical name -> extras asked for in a requirements file (options and -r lines skipped)."""
    requested: dict[str, frozenset[str]] = {}
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        requested[canonicalize_name(requirement.name)] = frozenset(requirement.extras)
    return requested


def _target_environment(python_version: str, extra: str) -> dict[str, str]:
    # Markers are evaluated for the Lambda platform, not for the machine running the build.
    return {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": extra,
    }


def _applies(requirement: Requirement, python_version: str, extras: frozenset[str]) -> bool:
    marker: Marker | None = requirement.marker
    if marker is None:
        return True
    return any(marker.evaluate(_target_environment(python_version, extra)) for extra in ("", *extras))


def unmet_requirements(
    bundle: Path,
    *,
    python_version: str = "3.12",
    extras: Mapping[str, frozenset[str]] | None = None,
    provided: frozenset[str] = RUNTIME_PROVIDED,
) -> list[str]:
    """Each requirement of a distribution in `bundle` that neither the bundle nor the Lambda
    runtime (`provided`) meets, as 'needer needs requirement (why)'."""
    extras = extras or {}
    found = _bundle_distributions(bundle)
    versions = {canonicalize_name(dist.metadata["Name"]): dist.version for dist in found}
    unmet: list[str] = []
    for dist in found:
        needer = canonicalize_name(dist.metadata["Name"])
        for text in dist.requires or []:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                unmet.append(f"{needer} has an unreadable requirement {text!r}")
                continue
            name = canonicalize_name(requirement.name)
            if name in provided or not _applies(requirement, python_version, extras.get(needer, frozenset())):
                continue
            if name not in versions:
                unmet.append(f"{needer} needs {requirement} (missing)")
            elif not requirement.specifier.contains(versions[name], prereleases=True):
                unmet.append(f"{needer} needs {requirement} (bundle has {versions[name]})")
    return sorted(unmet)


def top_level_names(bundle: Path) -> list[str]:
    """Importable names at the bundle's root: packages, modules and extension modules."""
    names: set[str] = set()
    for entry in bundle.iterdir():
        if entry.is_dir():
            if entry.name.isidentifier():
                names.add(entry.name)
        elif entry.suffix in {".py", ".so"} and entry.name.split(".")[0].isidentifier():
            names.add(entry.name.split(".")[0])
    return sorted(names - {"__pycache__"})


def forbidden_present(bundle: Path, forbidden: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Distribution names from `forbidden` found in `bundle`, by their metadata or by their
    import names (so a vendored copy without metadata is caught too)."""
    installed = {canonicalize_name(dist.metadata["Name"]) for dist in _bundle_distributions(bundle)}
    importable = set(top_level_names(bundle))
    return sorted(
        name
        for name, modules in forbidden.items()
        if canonicalize_name(name) in installed or importable.intersection(modules)
    )


def _owners(bundle: Path) -> dict[Path, str]:
    """File -> the distribution whose RECORD lists it."""
    owners: dict[Path, str] = {}
    for dist in _bundle_distributions(bundle):
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or []:
            owners[Path(os.path.normpath(str(dist.locate_file(file))))] = name
    return owners


def distribution_sizes(bundle: Path) -> list[DistributionSize]:
    """Bytes per distribution, largest first. Files no RECORD lists (our own packages) count
    under their top-level directory's name."""
    owners = _owners(bundle)
    sizes: dict[str, int] = {}
    for path in _files(bundle):
        name = owners.get(path) or path.relative_to(bundle).parts[0]
        sizes[name] = sizes.get(name, 0) + path.stat().st_size
    return [
        DistributionSize(name=name, bytes=size) for name, size in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    ]


def zip_bundle(bundle: Path, archive: Path) -> int:
    """Deflate `bundle` into `archive` the way Lambda expects it (paths relative to the root,
    modes kept so .so files stay readable), deterministically; returns the archive's size."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for path in sorted(_files(bundle)):
            info = zipfile.ZipInfo(path.relative_to(bundle).as_posix(), date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (path.stat().st_mode & 0o7777 | 0o444) << 16
            info.create_system = 3  # unix, so Lambda reads the mode bits above
            out.writestr(info, path.read_bytes())
    return archive.stat().st_size


def measure_bundle(
    bundle: Path, *, python_version: str, pruned_bytes: int = 0, build_seconds: float = 0.0
) -> BundleReport:
    with tempfile.TemporaryDirectory() as scratch:
        zipped = zip_bundle(bundle, Path(scratch) / "bundle.zip")
    sizes = distribution_sizes(bundle)
    return BundleReport(
        root=bundle,
        python_version=python_version,
        unzipped_bytes=sum(size.bytes for size in sizes),
        zipped_bytes=zipped,
        pruned_bytes=pruned_bytes,
        build_seconds=round(build_seconds, 2),
        distributions=sizes,
        top_level=top_level_names(bundle),
    )


def find_interpreter(version: str) -> Path | None:
    """A CPython `version` ('3.12') on this machine: on PATH, or installed by pyenv (whose
    shims refuse versions that are not selected, so its versions/ folder is searched too)."""
    candidates: list[Path] = []
    if on_path := shutil.which(f"python{version}"):
        candidates.append(Path(on_path))
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates.extend(sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True))
    return next((path for path in candidates if _python_version(path) == version), None)


def _python_version(interpreter: Path) -> str | None:
    try:
        result = subprocess.run(
            [str(interpreter), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def lambda_runtime_stand_in(destination: Path) -> Path:
    """A directory of links to this environment's boto3, botocore and their dependencies: what
    the Lambda runtime puts on sys.path after the function's code. All pure Python, so they
    serve any Python 3 version in a smoke import."""
    destination.mkdir(parents=True, exist_ok=True)
    for module in _RUNTIME_MODULES:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise BundleBuildError(f"{module} is not installed here; install clinrisk's [lambda] extra")
        source = Path(spec.origin)
        source = source.parent if source.name == "__init__.py" else source
        (destination / source.name).symlink_to(source, target_is_directory=source.is_dir())
    return destination


# Runs in the target interpreter with -I -S: no site-packages, no PYTHON* variables, so only
# the bundle, the runtime stand-in and the standard library can be imported. -B: no bytecode is
# written into the bundle (Lambda's /var/task is read-only too), so it stays as built.
_SMOKE_SCRIPT = """
import importlib, json, platform, sys
split = sys.argv.index("--")
paths, modules = sys.argv[1:split], sys.argv[split + 1:]
sys.path[:0] = paths
stray = []
for name in modules:
    module = importlib.import_module(name)
    if not (module.__file__ or "").startswith(paths[0].rstrip("/") + "/"):
        stray.append(f"{name} from {module.__file__}")
print(json.dumps({"python": platform.python_version(), "stray": stray}))
"""


class SmokeResult(BaseModel):
    python: str
    stray: list[str]


def smoke_import(
    bundle: Path, interpreter: Path, modules: Sequence[str], *, runtime_paths: Sequence[Path] = ()
) -> SmokeResult:
    """Import `modules` from `bundle` under `interpreter`, as Lambda would. Raises with the
    child's traceback if an import fails; `stray` names modules found outside the bundle."""
    command = [str(interpreter), "-I", "-S", "-B", "-c", _SMOKE_SCRIPT, str(bundle), *map(str, runtime_paths), "--"]
    result = subprocess.run([*command, *modules], capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise BundleBuildError(f"importing from {bundle} under {interpreter} failed:\n{result.stderr.strip()}")
    return SmokeResult.model_validate_json(result.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- cached builds for the CDK app
# The CDK app deploys each bundle from `build/lambda/<name>` (`make build`, which cdk.json runs
# before every synth). pip runs only when the lock changes: the installed dependencies are kept in
# `build/deps/<name>-<lock hash>`, and our sources are copied fresh on top each time.

BUILD_ROOT_NAME = "build"
_STAMP = ".clinrisk-bundle.json"


class BundleNotBuiltError(ClinriskError):
    """The CDK app needs a bundle that `make build` has not built yet."""


def bundle_directory(name: str, repo_root: Path) -> Path:
    """Where the CDK app takes bundle `name` from; raises if `make build` has not made it."""
    directory = repo_root / BUILD_ROOT_NAME / "lambda" / name
    if not (directory / _STAMP).is_file():
        raise BundleNotBuiltError(f"Lambda bundle {name!r} is not built: run `make build` (cdk.json runs it)")
    return directory


def _lock_hash(spec: FunctionSpec, python_version: str) -> str:
    import hashlib

    digest = hashlib.sha256(spec.requirements.read_bytes())
    digest.update(f"{python_version}|{'|'.join(LAMBDA_PLATFORMS)}".encode())
    return digest.hexdigest()[:16]


def build_cached_bundle(spec: FunctionSpec, repo_root: Path, *, python_version: str = "3.12") -> Path:
    """Build `spec` into build/lambda/<name>, installing dependencies only when its lock changed.

    Safe to run from several processes at once (`make build` beside a test run's synthesis): one
    lock per bundle, and the finished bundle replaces the old one by a rename, so a reader never
    sees a half-copied directory.
    """
    from filelock import FileLock

    build_root = repo_root / BUILD_ROOT_NAME
    (build_root / "lambda").mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_root / f".{spec.name}.lock")):
        deps = _cached_dependencies(spec, build_root, python_version)
        target = build_root / "lambda" / spec.name
        staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=build_root / "lambda"))
        staging.rmdir()
        # Hard links: a second copy of a 200 MB bundle costs neither time nor disk.
        shutil.copytree(deps, staging, copy_function=_link_or_copy)
        (staging / _STAMP).unlink()
        copy_sources(spec.source_dirs, staging)
        (staging / _STAMP).write_text(f'{{"deps": "{deps.name}"}}\n')
        replace_directory(target, staging)
    return target


def replace_directory(target: Path, staging: Path) -> None:
    """Put `staging` where `target` is: the old copy moves aside first, so a reader never sees half of either."""
    retired = target.with_name(f".{target.name}-retired")
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def _cached_dependencies(spec: FunctionSpec, build_root: Path, python_version: str) -> Path:
    deps = build_root / "deps" / f"{spec.name}-{_lock_hash(spec, python_version)}"
    if not (deps / _STAMP).is_file():
        shutil.rmtree(deps, ignore_errors=True)
        build_lambda_bundle(spec.requirements, deps, source_dirs=(), python_version=python_version)
        (deps / _STAMP).write_text('{"complete": true}\n')
        for stale in (build_root / "deps").glob(f"{spec.name}-*"):
            if stale != deps:
                shutil.rmtree(stale, ignore_errors=True)
    return deps


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cdk_app.bundling [NAME ...]`: build the named bundles (all by default)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cdk_app.bundling", description=main.__doc__)
    parser.add_argument("names", nargs="*", help="bundles to build (default: all)")
    args = parser.parse_args(argv)
    repo_root = Path(__file__).resolve().parent.parent
    specs = function_specs(repo_root)
    unknown = sorted(set(args.names) - set(specs))
    if unknown:
        parser.error(f"unknown bundle(s) {', '.join(unknown)}; known: {', '.join(sorted(specs))}")
    for name in args.names or sorted(specs):
        started = time.perf_counter()
        target = build_cached_bundle(specs[name], repo_root)
        print(f"built {name} into {target} in {time.perf_counter() - started:.1f} s")  # noqa: T201
    return 0


def function_specs(repo_root: Path) -> dict[str, FunctionSpec]:
    """Every bundle the CDK app deploys, by name."""
    return {name: make(repo_root) for name, make in FUNCTION_SPECS.items()}


if __name__ == "__main__":
    sys.exit(main())
