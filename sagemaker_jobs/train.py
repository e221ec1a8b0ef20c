"""SageMaker script-mode entry point: the file a SageMaker training job runs, and the file the
local trainer runs as a subprocess under the same contract.

Contract (https://github.com/aws/sagemaker-training-toolkit/blob/master/ENVIRONMENT_VARIABLES.md):
- input channels are directories named by SM_CHANNEL_TRAIN and SM_CHANNEL_VALIDATION,
  each holding files of encounters in the UCI schema (a channel carries every encounter of
  its patients, so prior-encounter counts are complete): gzip CSV as the validate stage
  writes them, or plain CSV or Parquet (Parquet needs pyarrow in the container);
- an optional `task` channel (SM_CHANNEL_TASK) holds the run's task file; the train and
  validation channels then hold that task's records as the validate stage wrote them. Without
  it, the task is readmission, as before tasks existed;
- the model goes to SM_MODEL_DIR, with what is computed from it here because numpy and the model
  are at hand: the monitoring reference (validation channel) and the similar-patient documents
  (training channel), which promotion loads into the similar-patient index; other outputs
  (metrics) go to SM_OUTPUT_DATA_DIR;
- hyperparameters arrive as `--name value` arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

# In the training source tarball the packages the image lacks (pydantic, ...) are vendored in
# `lib/` beside this file, which the image's toolkit installs into site-packages with it; in the
# repository the project is one level up (cdk_app/constructs/training_source.py).
sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import pandas as pd
from pydantic import Field
from pydantic_settings import BaseSettings

from clinrisk.data.tables import TABLE_SUFFIXES, file_format
from clinrisk.data.task_binding import resolve_task, task_for
from clinrisk.data.task_port import DEFAULT_TASK, Task
from clinrisk.errors import ClinriskError, DataFileError
from clinrisk.explain.similar_index import write_similar_documents
from clinrisk.model.training import Hyperparameters, train_model
from clinrisk.monitoring.task_reference import reference_for_task

METRICS_FILE = "metrics.json"


class SageMakerEnvironment(BaseSettings):
    model_dir: Path = Field(validation_alias="SM_MODEL_DIR")
    train_channel: Path = Field(validation_alias="SM_CHANNEL_TRAIN")
    validation_channel: Path = Field(validation_alias="SM_CHANNEL_VALIDATION")
    output_data_dir: Path = Field(validation_alias="SM_OUTPUT_DATA_DIR")
    task_channel: Path | None = Field(None, validation_alias="SM_CHANNEL_TASK")


def parse_hyperparameters(argv: list[str], defaults: Mapping[str, Any] | None = None) -> Hyperparameters:
    """The job's arguments over `defaults` (the task file's training overrides, which the local pipeline
    also passes as arguments and the cloud's Train state does not know), over the model's defaults."""
    parser = argparse.ArgumentParser(description=__doc__)
    for name, field in Hyperparameters.model_fields.items():
        convert = cast(Callable[[str], Any], field.annotation)
        # `--num-round` locally; the image's toolkit passes hyperparameters by their own name, `--num_round`.
        spellings = dict.fromkeys((f"--{name.replace('_', '-')}", f"--{name}"))
        parser.add_argument(*spellings, dest=name, type=convert, default=None)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    return Hyperparameters(**{**(defaults or {}), **given})


def read_channel(directory: Path, task: Task | None = None) -> pd.DataFrame:
    files = sorted(p for p in directory.iterdir() if p.is_file() and _is_table(p))
    if not files:
        raise ClinriskError(f"channel {directory} holds no {', '.join(TABLE_SUFFIXES)} file")
    return (task or resolve_task()).read_channel(files)


def channel_task(directory: Path | None) -> Task:
    """The task whose file is in the `task` channel; readmission when there is no such channel."""
    from clinrisk.taskspec.spec import load_task

    if directory is None:
        return resolve_task(DEFAULT_TASK)
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    if len(files) != 1:
        raise ClinriskError(f"the task channel {directory} must hold one task file, not {len(files)}")
    return task_for(load_task(files[0]))


def _is_table(path: Path) -> bool:
    try:
        file_format(path)
    except DataFileError:
        return False  # SageMaker may leave other files (a manifest, say) beside the data
    return True


def main(argv: list[str] | None = None) -> int:
    env = SageMakerEnvironment()
    try:
        task = channel_task(env.task_channel)
        hyperparameters = parse_hyperparameters(sys.argv[1:] if argv is None else argv, task.hyperparameters())
        validation = read_channel(env.validation_channel, task)
        training = read_channel(env.train_channel, task)
        trained = train_model(training, validation, hyperparameters, task)
    except ClinriskError as error:
        # SageMaker reports the contents of /opt/ml/output/failure as the job's failure reason.
        print(f"training failed: {error}", file=sys.stderr)
        return 1
    trained.save(env.model_dir)
    # What the drift monitor compares serving traffic with: the held-out rows, scored as serving scores.
    reference_for_task(task, env.model_dir, validation).save(env.model_dir)
    # The training records' SHAP vectors, outcomes and coded fields: the task's similar-patient documents.
    write_similar_documents(env.model_dir, training, task)
    env.output_data_dir.mkdir(parents=True, exist_ok=True)
    (env.output_data_dir / METRICS_FILE).write_text(trained.summary.model_dump_json(indent=2))
    print(json.dumps({"validation_auc": trained.summary.validation.roc_auc}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
