"""The model archive of the `sagemaker` serving mode, and where it is kept.

`model.tar.gz` holds one registered version's model directory under `model/` and `endpoint.json`
naming the version and its checksum; SageMaker unpacks it into /opt/ml/model, where
`sagemaker_jobs/inference.py` loads it (`clinrisk.serving.endpoint_contract`). Each version's archive has its
own key, because a SageMaker model refers to its archive for life: a serverless endpoint
downloads it again on every cold start, so an archive overwritten in place would change what an
old endpoint configuration serves. No numpy here: the promote Lambda builds archives.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from pydantic import BaseModel, Field

from clinrisk.model.archive import unpack
from clinrisk.settings import DEFAULT_TASK

ARCHIVE_PREFIX = "serving/sagemaker/"
CONTENT_TYPE = "application/json"  # of the endpoint's requests and answers
METADATA_FILE = "endpoint.json"
MODEL_SUBDIR = "model"


class EndpointMetadata(BaseModel):
    model_name: str
    version: int = Field(ge=1)
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")
    # The version's task: the endpoint loads another task's model by its task file, which the source
    # tarball bundles (tasks/, `clinrisk.taskspec.catalogue`). Left out of readmission's endpoint.json.
    task: str = Field(DEFAULT_TASK, min_length=1, max_length=63)

    @property
    def archive_key(self) -> str:
        return f"{ARCHIVE_PREFIX}v{self.version}-{self.checksum[:16]}/model.tar.gz"

    def deployment_name(self, endpoint_name: str) -> str:
        """The SageMaker model and endpoint configuration of this version (at most 63 characters)."""
        return f"{endpoint_name}-v{self.version}-{self.checksum[:8]}"


def archive_bytes(model_dir: Path, metadata: EndpointMetadata) -> bytes:
    """`model.tar.gz` for `model_dir`, reproducible (sorted entries, no timestamps or owners)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        _add(archive, METADATA_FILE, metadata.model_dump_json(exclude_defaults=True).encode())
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            _add(archive, f"{MODEL_SUBDIR}/{path.relative_to(model_dir).as_posix()}", path.read_bytes())
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    archive.addfile(info, io.BytesIO(data))


def unpack_archive(data: bytes, destination: Path) -> Path:
    """What SageMaker does with ModelDataUrl: unpack into the model directory (safely: no links or `..`)."""
    unpack(data, destination)
    return destination
