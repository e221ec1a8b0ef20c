"""A SageMaker XGBoost 3.0-5 container emulated in a temporary directory: the image's Python
environment (tests/image/environment.py), the `/opt/ml` tree under `<root>/opt/ml`
(SAGEMAKER_BASE_DIR, which the toolkit reads in place of /opt/ml), and the image's environment
variables (docker/3.0-5/base and final Dockerfile.cpu `ENV` lines).

Each container gets its own interpreter: a CPython 3.10 venv whose site-packages sees the shared
image environment through a `.pth` file, so that what the toolkit installs (`pip install .` of
the training source) lands in this container only, and the cached environment stays as built.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdk_app.constructs.training_source import build_tarball, vendored_packages
from tests.image.environment import IMAGE_PYTHON, image_environment, image_python, site_packages

STAND_IN = Path(__file__).with_name("image_package")  # the image's own package, script mode only
TRAINING_MODULE = "sagemaker_xgboost_container.training:main"
SERVING_MODULE = "sagemaker_xgboost_container.serving:main"
_TIMEOUT_SECONDS = 900
# The image's console scripts: `train` (sagemaker-containers) and `serve` (the image's package).
TRAIN_COMMAND = "from sagemaker_containers.cli.train import main; main()"
SERVE_COMMAND = "from sagemaker_xgboost_container.serving import serving_entrypoint; serving_entrypoint()"


@dataclass(frozen=True)
class Container:
    root: Path  # the container's `/`
    python: Path  # its interpreter (the image's /miniconda3/bin/python3)
    image_env: Path  # the image's packages, seen through a .pth file

    @property
    def base(self) -> Path:
        return self.root / "opt" / "ml"

    @property
    def site_packages(self) -> Path:
        return site_packages(self.python.parent.parent)

    def environment(self, **extra: str) -> dict[str, str]:
        """The image's ENV (paths under the emulated /opt/ml), and nothing from this machine's."""
        config = self.base / "input" / "config"
        return {
            "PATH": f"{self.python.parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.root / "root"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
            "SAGEMAKER_BASE_DIR": str(self.base),
            "SM_INPUT": str(self.base / "input"),
            "SM_INPUT_TRAINING_CONFIG_FILE": str(config / "hyperparameters.json"),
            "SM_INPUT_DATA_CONFIG_FILE": str(config / "inputdataconfig.json"),
            "SM_CHECKPOINT_CONFIG_FILE": str(config / "checkpointconfig.json"),
            "SM_MODEL_DIR": str(self.base / "model"),
            "SAGEMAKER_TRAINING_MODULE": TRAINING_MODULE,
            "SAGEMAKER_SERVING_MODULE": SERVING_MODULE,
            "TEMP": str(self.root / "home" / "model-server" / "tmp"),
            # Network isolation: pip must find everything it installs on disk.
            "PIP_NO_INDEX": "1",
            "PIP_CONFIG_FILE": os.devnull,
            **extra,
        }

    def command(self, code: str) -> list[str]:
        """Run `code` as the image's console scripts do, with the stand-in package importable."""
        return [str(self.python), "-c", f"import sys; sys.path.append({str(STAND_IN)!r}); {code}"]

    def run(self, code: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(code),
            env=self.environment(**extra),
            cwd=self.root,  # the image sets no WORKDIR
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )

    def train(
        self, hyperparameters: Mapping[str, str], channels: Mapping[str, Path]
    ) -> subprocess.CompletedProcess[str]:
        """`docker run <image> train`: the toolkit's `train` command (sagemaker_containers.cli.train)
        with the job's configuration files and channels as SageMaker lays them out."""
        config = self.base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(dict(hyperparameters)))
        channel = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
        (config / "inputdataconfig.json").write_text(json.dumps({name: channel for name in channels}))
        hosts = {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}
        (config / "resourceconfig.json").write_text(json.dumps(hosts))
        for name, directory in channels.items():
            shutil.copytree(directory, self.base / "input" / "data" / name)
        (self.base / "model").mkdir(parents=True, exist_ok=True)
        (self.base / "output" / "data").mkdir(parents=True, exist_ok=True)
        return self.run(TRAIN_COMMAND, TRAINING_JOB_NAME="clinrisk-image-test")

    @contextlib.contextmanager
    def serve(self, program: str, submit_directory: Path) -> Iterator[str]:
        """`docker run <image> serve` (the stand-in's serving_entrypoint), yielding its URL once
        /ping answers. nginx is left out (SAGEMAKER_USE_NGINX=false): it is a proxy in front of
        gunicorn that the image writes a config for under /etc and that is not installed here."""
        port = _free_port()
        env = self.environment(
            SAGEMAKER_PROGRAM=program,
            SAGEMAKER_SUBMIT_DIRECTORY=str(submit_directory),
            SAGEMAKER_USE_NGINX="false",
            SAGEMAKER_BIND_TO_PORT=str(port),
            SAGEMAKER_MODEL_SERVER_WORKERS="1",
            SAGEMAKER_CONTAINER_LOG_LEVEL="20",
        )
        log = self.root / "serve.log"
        with log.open("w") as sink:
            server = subprocess.Popen(
                self.command(SERVE_COMMAND),
                env=env,
                cwd=self.root,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for_ping(url, server, log)
            yield url
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, 15)  # the server and its gunicorn workers
            server.wait(timeout=60)

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text() if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_ping(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """SageMaker's health check: GET /ping until 200 (the toolkit installs the module first)."""
    deadline = time.monotonic() + _TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the serving stack exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=5) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as error:  # it answers, but not healthy: the model did not load
            raise AssertionError(f"/ping answered {error.code}:\n{log.read_text()}") from None
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    raise AssertionError(f"the serving stack did not answer /ping:\n{log.read_text()}")


def make_container(root: Path, image_env: Path) -> Container:
    """A fresh container: its own venv (no pip of its own), seeing the image environment's packages."""
    root.mkdir(parents=True, exist_ok=True)
    venv = root / "miniconda3"
    subprocess.run(
        [str(image_python()), "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True, timeout=300
    )
    container = Container(root=root, python=venv / "bin" / "python", image_env=image_env)
    (container.site_packages / "image-environment.pth").write_text(f"{site_packages(image_env)}\n")
    # The toolkit starts `gunicorn` from PATH: a console script of this interpreter, as pip writes it.
    gunicorn = venv / "bin" / "gunicorn"
    gunicorn.write_text(f"#!{container.python}\nimport sys\nfrom gunicorn.app.wsgiapp import run\nsys.exit(run())\n")
    gunicorn.chmod(0o755)
    for directory in ("root", "home/model-server/tmp"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    return container


@pytest.fixture(scope="session")
def image_env() -> Path:
    """Built once per lock; fails (does not skip) without CPython 3.10: see environment.py."""
    return image_environment()


@pytest.fixture(scope="session")
def training_source() -> Path:
    """The repository's training source tarball, as the Pipeline stack publishes it."""
    return build_tarball(vendored_packages())


@pytest.fixture
def container(tmp_path: Path, image_env: Path) -> Container:
    return make_container(tmp_path / "container", image_env)


__all__ = ["IMAGE_PYTHON", "Container", "make_container"]
