"""A stand-in for the SageMaker training service, for tests that run under moto.

moto's SageMaker records a training job and reports it Completed at once, with
`ModelArtifacts.S3ModelArtifacts` = `<S3OutputPath>/<job name>/output/model.tar.gz`, but runs
nothing and writes no model. This module does what the service would do between CreateTrainingJob
and the job's end: it downloads the job's data channels (`train`, `validation`, `task`) from S3, runs
`sagemaker_jobs/train.py` under the SageMaker container contract (`clinrisk.adapters.local.
SubprocessTrainer`, a real XGBoost training), packs the model directory as SageMaker does
(`model.tar.gz`, paths relative to /opt/ml/model) and uploads it where S3ModelArtifacts says.

`TrainingService.install` hooks it into moto's SageMaker backend (the AWS boundary) so that the
jobs the state machine starts really train; `fail_next` makes the next job end Failed without a
model, as a job whose script exits non-zero does. Our own code is never replaced.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from clinrisk.adapters.local import DirectoryObjectStore, SubprocessTrainer
from clinrisk.ports import TrainingJob

# The source tarball's channel: the stand-in runs the repository's train.py, not the tarball's (tests/image does).
CODE_CHANNEL = "code"
# Few boosting rounds keep a test job to seconds; the model is still a real, sound XGBoost model.
FAST_HYPERPARAMETERS = {"num_round": "150"}


def pack_model_dir(model_dir: Path) -> bytes:
    """model.tar.gz as SageMaker uploads /opt/ml/model: every file, named relative to the directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            archive.add(path, arcname=path.relative_to(model_dir).as_posix())
    return buffer.getvalue()


def train_from_directories(channels: dict[str, Path], hyperparameters: dict[str, str]) -> bytes:
    """Run the training script on local channel directories; the packed model directory."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, directory in channels.items():
            shutil.copytree(directory, root / "channels" / name)
        job = TrainingJob(
            name="test-job",
            channels={name: f"channels/{name}" for name in channels},
            model_prefix="model",
            output_prefix="output",
            hyperparameters=dict(hyperparameters),
        )
        SubprocessTrainer(DirectoryObjectStore(root)).train(job)
        return pack_model_dir(root / "model")


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


def _download_prefix(s3: Any, uri: str, into: Path) -> None:
    bucket, prefix = _split(uri)
    into.mkdir(parents=True, exist_ok=True)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    if not listed:
        raise AssertionError(f"the training job's channel {uri} is empty")
    for item in listed:
        relative = item["Key"][len(prefix) :].lstrip("/")
        target = into / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


@dataclass
class TrainingService:
    """What SageMaker does for the jobs created under moto. `s3` is a boto3 S3 client (moto)."""

    s3: Any
    hyperparameters: dict[str, str] = field(default_factory=lambda: dict(FAST_HYPERPARAMETERS))
    fail_next: str | None = None
    # Job name → how many DescribeTrainingJob calls saw it InProgress: each job is reported
    # InProgress once, so the state machine goes round its polling loop before the job ends.
    polls: dict[str, int] = field(default_factory=dict)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, request: dict[str, Any]) -> str:
        """Train as SageMaker would for this CreateTrainingJob request; the model archive's S3 URI."""
        with tempfile.TemporaryDirectory() as tmp:
            channels: dict[str, Path] = {}
            for channel in request["InputDataConfig"]:
                if channel["ChannelName"] != CODE_CHANNEL:
                    directory = Path(tmp) / channel["ChannelName"]
                    _download_prefix(self.s3, channel["DataSource"]["S3DataSource"]["S3Uri"], directory)
                    channels[channel["ChannelName"]] = directory
            archive = train_from_directories(channels, self.hyperparameters)
        output = f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{request['TrainingJobName']}/output"
        bucket, key = _split(f"{output}/model.tar.gz")
        self.s3.put_object(Bucket=bucket, Key=key, Body=archive, ServerSideEncryption="aws:kms")
        return f"s3://{bucket}/{key}"

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Hook into moto's SageMaker backend: a created job is InProgress; the first describe
        reports it so, the next runs the job to its end (Completed with a model, or Failed)."""
        from moto.sagemaker.models import SageMakerModelBackend

        create, describe = SageMakerModelBackend.create_training_job, SageMakerModelBackend.describe_training_job
        service = self

        def create_training_job(backend: Any, training_job_name: str, **kwargs: Any) -> Any:
            job = create(backend, training_job_name=training_job_name, **kwargs)
            job.training_job_status, job.secondary_status = "InProgress", "Starting"
            with service._lock:
                service.requests[training_job_name] = {
                    "TrainingJobName": training_job_name,
                    "InputDataConfig": kwargs["input_data_config"],
                    "OutputDataConfig": kwargs["output_data_config"],
                    "Tags": kwargs.get("tags") or [],
                }
            return job

        def describe_training_job(backend: Any, training_job_name: str) -> Any:
            job = backend.training_jobs.get(training_job_name)
            if job is not None and job.training_job_status == "InProgress":
                with service._lock:
                    seen = service.polls.get(training_job_name, 0)
                    service.polls[training_job_name] = seen + 1
                if seen >= 1:
                    service._finish(job)
            return describe(backend, training_job_name)

        monkeypatch.setattr(SageMakerModelBackend, "create_training_job", create_training_job)
        monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", describe_training_job)

    def _finish(self, job: Any) -> None:
        if self.fail_next is not None:
            reason, self.fail_next = self.fail_next, None
            job.training_job_status, job.secondary_status, job.failure_reason = "Failed", "Failed", reason
            return
        self.run(self.requests[job.training_job_name])
        job.training_job_status, job.secondary_status = "Completed", "Completed"
