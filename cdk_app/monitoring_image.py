"""The monitoring image's build context, staged for `cdk synth` and for the tests that run its handlers.

The monitor and the outcomes intake read Parquet (pyarrow, with pandas and numpy): 307 MB unzipped,
over Lambda's 250 MB zip limit, so they run from a container image (lambdas/monitoring_image/Dockerfile)
whose limit is 10 GB. The build context holds only what runs there: the Dockerfile, its lock, `clinrisk`
without the developer-only code (clinrisk/local), the task files (`tasks/`, beside `clinrisk/` as in the
repository: a task's outcome file is read by its task file), and the handler packages the functions start.

`cdk synth` stages the context into cdk.out and writes the asset manifest; `cdk deploy` (cdk-assets)
builds and pushes the image. So synthesis, and every test of it, needs no Docker daemon.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

from cdk_app.bundling import BUILD_ROOT_NAME, copy_sources, replace_directory

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE_SOURCE = REPO_ROOT / "lambdas" / "monitoring_image"
DOCKERFILE = IMAGE_SOURCE / "Dockerfile"
LOCK_FILE = IMAGE_SOURCE / "requirements.lock"
# The handler packages the image's functions run (one CMD each), besides lambdas/__init__.py.
HANDLER_PACKAGES = ("monitor", "outcomes", "alarm_notice")
MONITOR_HANDLER = "lambdas.monitor.handler.handler"
OUTCOMES_HANDLER = "lambdas.outcomes.handler.handler"
ALARM_NOTICE_HANDLER = "lambdas.alarm_notice.handler.handler"


def stage_context(repo_root: Path = REPO_ROOT) -> Path:
    """build/image-context/monitoring, re-staged from the sources (a rename, so a reader never sees half)."""
    build_root = repo_root / BUILD_ROOT_NAME / "image-context"
    build_root.mkdir(parents=True, exist_ok=True)
    target = build_root / "monitoring"
    with FileLock(str(build_root / ".monitoring.lock")):
        staging = Path(tempfile.mkdtemp(prefix=".monitoring-", dir=build_root))
        for name in (DOCKERFILE.name, LOCK_FILE.name):
            shutil.copy2(IMAGE_SOURCE / name, staging / name)
        copy_sources([repo_root / "clinrisk", repo_root / "tasks"], staging)  # tasks/: read by the outcomes intake
        lambdas = staging / "lambdas"
        lambdas.mkdir()
        shutil.copy2(repo_root / "lambdas" / "__init__.py", lambdas / "__init__.py")
        for package in HANDLER_PACKAGES:
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(repo_root / "lambdas" / package, lambdas / package, ignore=ignore)
        replace_directory(target, staging)
    return target
