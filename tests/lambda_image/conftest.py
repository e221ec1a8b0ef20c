"""The monitoring image emulated without Docker: its Python environment (environment.py), its code as
the image holds it (the staged build context as LAMBDA_TASK_ROOT), and AWS as a moto server that the
handlers reach through AWS_ENDPOINT_URL, so nothing but the image's own packages is importable in them."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from cdk_app.monitoring_image import stage_context
from tests.lambda_image.environment import image_environment

RUNNER = Path(__file__).with_name("run_handler.py")
REGION = "us-east-1"


@dataclass(frozen=True)
class Invocation:
    answer: Any
    stdout: list[str]  # the function's log lines, as CloudWatch Logs would receive them
    stderr: str


@dataclass(frozen=True)
class ImageFunction:
    python: Path
    task_root: Path
    endpoint: str

    def invoke(self, handler: str, event: dict[str, Any], environment: dict[str, str]) -> Invocation:
        env = {
            "PATH": "/usr/bin:/bin",
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "PYTHONPATH": str(self.task_root),  # the image's sys.path puts LAMBDA_TASK_ROOT first
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_LAMBDA_FUNCTION_NAME": "clinrisk-image-test",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "HOME": str(self.task_root.parent / "home"),
            **environment,
        }
        result = subprocess.run(
            [str(self.python), str(RUNNER), handler], input=json.dumps(event), env=env, capture_output=True,
            text=True, timeout=900, check=False, cwd=self.task_root,
        )  # fmt: skip
        lines = result.stdout.splitlines()
        if result.returncode != 0 or not lines or not lines[-1].startswith("HANDLER-ANSWER "):
            raise AssertionError(f"{handler} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr}")
        return Invocation(json.loads(lines[-1].removeprefix("HANDLER-ANSWER ")), lines[:-1], result.stderr)


@pytest.fixture(scope="session")
def image_env() -> Path:
    """Built once per lock; fails (does not skip) without CPython 3.12: see environment.py."""
    return image_environment()


@pytest.fixture(scope="session")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's /var/task: the staged build context, copied so later stagings do not move it."""
    import shutil

    target = tmp_path_factory.mktemp("image") / "task"
    shutil.copytree(stage_context(), target)
    return target


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # moto's backends live in this process and outlast a server: each test starts from an empty account.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def image_function(image_env: Path, task_root: Path, moto_endpoint: str) -> ImageFunction:
    return ImageFunction(python=image_env / "bin" / "python", task_root=task_root, endpoint=moto_endpoint)
