"""`sagemaker_xgboost_container.training`, script mode only.

Reproduced from src/sagemaker_xgboost_container/training.py (43785110): the image's
SAGEMAKER_TRAINING_MODULE is `sagemaker_xgboost_container.training:main`, which the toolkit's
`train` command (`sagemaker_containers._trainer.train`) imports and calls. `train()` runs the user
module through `framework.modules.run_module` when the training environment names an entry point
(`sagemaker_program`); the other branch, the image's built-in algorithm, is not reproduced.
"""

from __future__ import annotations

import sys
from typing import Any

from sagemaker_containers.beta import framework


def train(training_environment: Any) -> None:
    if training_environment.user_entry_point is None:
        raise NotImplementedError("the image's algorithm mode is not reproduced: name a sagemaker_program")
    framework.modules.run_module(
        training_environment.module_dir,
        training_environment.to_cmd_args(),
        training_environment.to_env_vars(),
        training_environment.module_name,
        capture_error=False,
    )


def main() -> None:
    train(framework.training_env())
    sys.exit(0)
