"""The local stand-in for the SageMaker endpoint of the `sagemaker` serving mode.

Deploying records which model archive the endpoint serves (`<home>/endpoints/<name>.json`, as
SageMaker keeps the endpoint's configuration); invoking unpacks that archive once, as SageMaker
unpacks ModelDataUrl into /opt/ml/model, and calls `sagemaker_jobs/inference.py`'s `model_fn`
and `transform_fn`, as the image's model server does. So the local path runs the archive and the
script the cloud endpoint would.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import threading
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

from clinrisk.errors import ClinriskError
from clinrisk.ports import EndpointFailedError, EndpointUnavailableError, ObjectNotFoundError, ObjectStore
from clinrisk.serving.endpoint_archive import CONTENT_TYPE, unpack_archive

INFERENCE_SCRIPT = Path(__file__).resolve().parents[2] / "sagemaker_jobs" / "inference.py"


def _inference_module(script: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("clinrisk_local_inference", script)
    if spec is None or spec.loader is None:
        raise ClinriskError(f"cannot load the inference script {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LocalEndpoint:
    def __init__(self, store: ObjectStore, *, name: str, state_dir: Path, script: Path = INFERENCE_SCRIPT) -> None:
        self._store = store
        self._state = state_dir / f"{name}.json"
        self._script = script
        self._loaded: tuple[str, Any] | None = None  # (deployment name, model) of the last invoke
        self._loading = threading.Lock()

    def deploy(self, *, model_data_url: str, deployment_name: str) -> None:
        if not self._store.exists(self._key(model_data_url)):
            raise EndpointFailedError(f"no model archive at {model_data_url}; {deployment_name} not deployed")
        self._state.parent.mkdir(parents=True, exist_ok=True)
        staging = self._state.with_suffix(".tmp")
        staging.write_text(json.dumps({"deployment_name": deployment_name, "model_data_url": model_data_url}))
        staging.replace(self._state)

    def _key(self, model_data_url: str) -> str:
        """The store key of a URI the store gave out; an archive anywhere else is refused."""
        root = self._store.uri("").rstrip("/") + "/"
        if not model_data_url.startswith(root):
            raise EndpointFailedError(f"model archive {model_data_url} is not in the artifacts store ({root})")
        return model_data_url.removeprefix(root)

    def invoke(self, body: bytes) -> bytes:
        module, model = self._model()
        answer, _ = module.transform_fn(model, body, CONTENT_TYPE, CONTENT_TYPE)
        return bytes(answer)

    def _model(self) -> tuple[ModuleType, Any]:
        try:
            state = json.loads(self._state.read_text())
        except FileNotFoundError:
            raise EndpointUnavailableError("the endpoint has no model deployed yet") from None
        with self._loading:
            if self._loaded is None or self._loaded[0] != state["deployment_name"]:
                self._loaded = (state["deployment_name"], self._load(state))
            return self._module, self._loaded[1]

    @cached_property
    def _models_dir(self) -> Path:
        """Where invoked archives are unpacked; made on first invoke, not by a deploy-only process."""
        return Path(tempfile.mkdtemp(prefix="clinrisk-endpoint-"))

    @cached_property
    def _module(self) -> ModuleType:
        return _inference_module(self._script)

    def _load(self, state: dict[str, str]) -> Any:
        try:
            data = self._store.read_bytes(self._key(state["model_data_url"]))
        except ObjectNotFoundError:
            raise EndpointFailedError(f"the endpoint's model archive {state['model_data_url']} is gone") from None
        model_dir = unpack_archive(data, Path(tempfile.mkdtemp(dir=self._models_dir)))
        return self._module.model_fn(str(model_dir))
