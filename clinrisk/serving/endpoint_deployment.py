"""Deploying a new champion to the endpoint of the `sagemaker` serving mode.

The registry calls an `EndpointPublisher` whenever the champion changes (gated promotion, manual
promotion, rollback), after the aliases move and before the serving pointer is written: when the
deployment is refused, the registry restores the aliases and the champion stays what it was.
The publisher fetches the version's model directory, checks it against the checksum the
registry recorded, writes the archive under the version's own key (once: a retried promotion
reuses it), and asks the endpoint to serve it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from clinrisk.checksums import directory_checksum
from clinrisk.errors import ClinriskError
from clinrisk.ports import EndpointDeployer, ObjectStore
from clinrisk.registry.serving_pointer import ServingPointer
from clinrisk.serving.endpoint_archive import EndpointMetadata, archive_bytes
from clinrisk.settings import DEFAULT_TASK


class EndpointArchiveError(ClinriskError):
    """A version's model files in the store do not match the checksum the registry recorded."""


@dataclass(frozen=True)
class EndpointPublisher:
    store: ObjectStore
    deployer: EndpointDeployer
    endpoint_name: str
    task: str = DEFAULT_TASK  # whose champions these are: the archive names it, so the endpoint loads that task's model

    def __call__(self, pointer: ServingPointer) -> None:
        metadata = EndpointMetadata(
            model_name=pointer.model_name, version=pointer.version, checksum=pointer.checksum, task=self.task
        )
        if not self.store.exists(metadata.archive_key):
            self.store.write_bytes(metadata.archive_key, self._archive(pointer, metadata))
        self.deployer.deploy(
            model_data_url=self.store.uri(metadata.archive_key),
            deployment_name=metadata.deployment_name(self.endpoint_name),
        )

    def _archive(self, pointer: ServingPointer, metadata: EndpointMetadata) -> bytes:
        with tempfile.TemporaryDirectory(prefix="clinrisk-endpoint-") as scratch:
            model_dir = Path(scratch)
            self.store.download_dir(pointer.artifact_prefix, model_dir)
            if directory_checksum(model_dir) != pointer.checksum:
                raise EndpointArchiveError(
                    f"model version {pointer.version} at {pointer.artifact_prefix} does not match its checksum;"
                    " not deployed"
                )
            return archive_bytes(model_dir, metadata)
