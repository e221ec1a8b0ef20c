"""The training job's source tarball, `sagemaker_jobs/train.py` with the `clinrisk` package and the
dependencies the SageMaker XGBoost image lacks, published as a CDK file asset.

With network isolation the container can neither download `sagemaker_submit_directory` from S3 nor
`pip install` a requirements file, so (see state_machines/README.md, "The training source"):
- the tarball reaches the container as the `code` input channel and is extracted by the training
  toolkit (it recognises a tar by its content, not its name);
- `train.py`, `inference.py` and `clinrisk/` sit at the tarball's root; the image's toolkit
  (sagemaker-containers 2.8.6.post2, `_modules.prepare`/`install`) writes a `setup.py` of
  `packages=['']` with a MANIFEST.in of `recursive-include . *` beside them and runs
  `pip install .`, which copies the whole tree into site-packages, and runs the script from there
  (`python -m train`; the endpoint imports `inference`);
- what `train.py` imports that the image does not have (pydantic, its compiled core,
  pydantic-settings and their small dependencies) is vendored under `lib/` as the contents of
  manylinux wheels for the image's CPython, installed with `cdk_app.bundling.build_lambda_bundle`
  (pip `--only-binary`, so nothing is compiled here), and `train.py` and `inference.py` put the
  `lib/` beside them first on sys.path. numpy, pandas, pyarrow, scikit-learn and xgboost come from
  the image and are not packed: shadowing them would replace the versions the image's xgboost was
  built against.
- no `requirements.txt` at the root: the toolkit would try to pip install it and fail offline.

Why `lib/` and not the vendored packages at the root: pip refuses a wheel with more than one
`*.dist-info` directory at its root ("multiple .dist-info directories found"), and the toolkit's
`pip install .` builds one wheel of the whole tree, so vendored packages at the root made every
training job and every `sagemaker`-mode endpoint fail before our code ran (issue 9;
tests/image runs the toolkit on this tarball). Under `lib/` the wheel's only root dist-info is the
toolkit's own. The vendored `*.dist-info` directories stay (under `lib/`) rather than being left
out: with `lib/` on sys.path, `importlib.metadata` sees the vendored distributions as installed,
which pydantic relies on (`pydantic.version`, its plugin loader's entry points, and
`importlib.metadata.version` in `pydantic.networks`), and keeping them costs nothing once they
are off the root.

The tarball is built at synth time, deterministically (sorted entries, fixed timestamps and owners),
so an unchanged source gives the same asset hash and no redeployment. The vendored packages are
installed once per lock into build/training/ (pip needs a package index the first time, as
`make build` does for the Lambda bundles) and reused afterwards.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct
from filelock import FileLock

from cdk_app.bundling import build_lambda_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "build" / "training"
TRAIN_SCRIPT = REPO_ROOT / "sagemaker_jobs" / "train.py"
# The endpoint of the `sagemaker` serving mode runs from the same tarball (SAGEMAKER_SUBMIT_DIRECTORY).
INFERENCE_SCRIPT = REPO_ROOT / "sagemaker_jobs" / "inference.py"
PACKAGE_DIR = REPO_ROOT / "clinrisk"
# The vendored packages' directory in the tarball; train.py and inference.py put it on sys.path.
VENDORED_DIR = "lib"

# The SageMaker XGBoost 3.0-5 framework image (cdk_app.images.XGBOOST_FRAMEWORK_VERSION) runs
# CPython 3.10 from miniconda on Ubuntu 20.04, whose glibc 2.31 runs manylinux wheels up to 2_31
# (aws/sagemaker-xgboost-container, docker/3.0-5/base/Dockerfile.cpu).
IMAGE_PYTHON = "3.10"
IMAGE_PLATFORMS: tuple[str, ...] = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(31, 16, -1)),
    "manylinux2014_x86_64",
)
# A complete lock of what is vendored (installed with --no-deps; the build checks it is complete).
# pydantic-settings 2.16 needs Python 3.11, so the image gets 2.15, which has what clinrisk uses.
VENDORED_REQUIREMENTS: tuple[str, ...] = (
    "pydantic==2.14.3",
    "pydantic-core==2.50.4",
    "pydantic-settings==2.15.0",
    "annotated-types==0.8.0",
    "typing-extensions==4.16.0",
    "typing-inspection==0.4.5",
    "python-dotenv==1.2.4",
    # train.py reads the run's task file (clinrisk.taskspec); readmission's ships in the package.
    "PyYAML==6.0.3",
)
_IGNORED = ("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache", "requirements*.txt")
_STAMP = ".clinrisk-vendored"
STALE_AFTER_SECONDS = 24 * 3600


class TrainingSource(Construct):
    """`asset` is the tarball in the CDK assets bucket; its object key is a literal (`<hash>.gz`)."""

    asset: s3_assets.Asset
    tarball: Path

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.tarball = build_tarball(vendored_packages())
        self.asset = s3_assets.Asset(self, "Tarball", path=str(self.tarball))


def _lock_text() -> str:
    return "\n".join(VENDORED_REQUIREMENTS) + "\n"


def vendored_packages(build_dir: Path = BUILD_DIR) -> Path:
    """The vendored packages for the image, installed by pip once per lock (under a file lock, so
    parallel synths in test workers share one install)."""
    digest = hashlib.sha256(f"{_lock_text()}|{IMAGE_PYTHON}|{'|'.join(IMAGE_PLATFORMS)}".encode()).hexdigest()[:16]
    target = build_dir / f"vendored-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(build_dir / ".lock")):
        if not (target / _STAMP).is_file():
            shutil.rmtree(target, ignore_errors=True)
            with tempfile.TemporaryDirectory() as scratch:
                requirements = Path(scratch) / "vendored.txt"
                requirements.write_text(_lock_text())
                build_lambda_bundle(
                    requirements,
                    target,
                    source_dirs=(),
                    python_version=IMAGE_PYTHON,
                    platforms=IMAGE_PLATFORMS,
                    provided=frozenset(),
                )
            (target / _STAMP).write_text(_lock_text())
    return target


def _members(vendored: Path) -> Iterator[tuple[str, Path]]:
    """(name in the tarball, file on disk), sorted, so the same sources give the same bytes."""
    yield "inference.py", INFERENCE_SCRIPT
    yield "train.py", TRAIN_SCRIPT
    for root, prefix in ((PACKAGE_DIR, "clinrisk/"), (vendored, f"{VENDORED_DIR}/")):
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if path.is_dir() or path.is_symlink() or path.name == _STAMP or _ignored(relative):
                continue
            yield f"{prefix}{relative.as_posix()}", path


def _ignored(relative: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in _IGNORED)


def tarball_bytes(vendored: Path) -> bytes:
    """A gzip tar of the training source, byte-for-byte reproducible."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, path in _members(vendored):
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o755 if os.access(path, os.X_OK) and path.suffix == ".so" else 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_tarball(vendored: Path, build_dir: Path = BUILD_DIR) -> Path:
    """Write the tarball under a name of its content hash (atomic, so parallel synths agree)."""
    data = tarball_bytes(vendored)
    target = build_dir / f"training-source-{hashlib.sha256(data).hexdigest()[:16]}.tar.gz"
    if not target.is_file():
        partial = target.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(data)
        partial.replace(target)
    _remove_stale(build_dir, keep=target)
    return target


def _remove_stale(build_dir: Path, *, keep: Path) -> None:
    """Drop tarballs of earlier sources, once no synth can still be reading them (a day old)."""
    cutoff = time.time() - STALE_AFTER_SECONDS
    for old in build_dir.glob("training-source-*.tar.gz"):
        with contextlib.suppress(FileNotFoundError):  # another synth removed it first
            if old != keep and old.stat().st_mtime < cutoff:
                old.unlink()
