"""`sagemaker_xgboost_container.serving`, script mode only.

Reproduced from src/sagemaker_xgboost_container/serving.py (43785110): `serving_entrypoint` (the
image's `serve` command) sets OMP_NUM_THREADS and calls the toolkit's `server.start` with
SAGEMAKER_SERVING_MODULE (`sagemaker_xgboost_container.serving:main`), which imports and installs
the user module (`_modules.import_module`) and starts gunicorn on `main`. On the first request
`main` imports the user module (SAGEMAKER_PROGRAM) and wraps it in the toolkit's Transformer
(`_user_module_transformer`) and Worker. Not reproduced: the multi-model server
(SAGEMAKER_MULTI_MODEL), the built-in algorithm's ScoringService (no SAGEMAKER_PROGRAM), and the
default input/predict/output functions (inference.py defines transform_fn, which excludes them).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from sagemaker_containers.beta.framework import env, server, transformer, worker

ONE_THREAD_PER_PROCESS = "1"  # sagemaker_xgboost_container.constants.sm_env_constants


class UserError(Exception):
    """sagemaker_algorithm_toolkit.exceptions.UserError"""


def set_default_serving_env_if_unspecified() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", ONE_THREAD_PER_PROCESS)


def _user_module_transformer(user_module: Any) -> Any:
    model_fn = getattr(user_module, "model_fn", None)
    transform_fn = getattr(user_module, "transform_fn", None)
    others = [getattr(user_module, name, None) for name in ("input_fn", "predict_fn", "output_fn")]
    if transform_fn and any(others):
        raise UserError("Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn")
    if model_fn is None or transform_fn is None:
        raise NotImplementedError("only a user module with model_fn and transform_fn is reproduced")
    return transformer.Transformer(model_fn=model_fn, transform_fn=transform_fn)


app = None


def main(environ: Any, start_response: Any) -> Any:
    global app  # noqa: PLW0603 - as the image does: one app per gunicorn worker, made on first request
    if app is None:
        serving_env = env.ServingEnv()
        if serving_env.module_name is None:
            raise NotImplementedError("the image's algorithm mode is not reproduced: set SAGEMAKER_PROGRAM")
        user_module = importlib.import_module(serving_env.module_name)
        user_module_transformer = _user_module_transformer(user_module)
        user_module_transformer.initialize()
        app = worker.Worker(transform_fn=user_module_transformer.transform, module_name=serving_env.module_name)
    return app(environ, start_response)


def serving_entrypoint() -> None:
    set_default_serving_env_if_unspecified()
    if os.environ.get("SAGEMAKER_MULTI_MODEL"):
        raise NotImplementedError("the multi-model server is not reproduced")
    server.start(env.ServingEnv().framework_module)
