"""Hooks the registry calls with each new champion, in order, and the one that loads the champion's
similar-patient documents into the similar-patient index.

Loading needs no numpy (the promote Lambda has none): the documents were computed by the training
job and are read back line by line. Every document carries its model version, and a query filters
on the version of the model that scored the request, so an explanation never mixes two versions;
the index changes champion when the serving pointer does (the registry writes it after these hooks),
and a rollback finds the older version's documents still there.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clinrisk.checksums import directory_checksum
from clinrisk.explain.similar_documents import SimilarDocuments, SimilarDocumentsError
from clinrisk.ports import ObjectStore
from clinrisk.registry.serving_pointer import ServingPointer

logger = logging.getLogger(__name__)
Publisher = Callable[[ServingPointer], None]


def chain_publishers(required: Publisher | None, best_effort: Publisher | None) -> Publisher:
    """`required` (the endpoint deployment) can refuse the promotion by raising; `best_effort` (the
    similar-patient index) cannot: explanations then degrade until the next champion, and the
    failure is logged by type, never with data."""

    def publish(pointer: ServingPointer) -> None:
        if required is not None:
            required(pointer)
        if best_effort is not None:
            try:
                best_effort(pointer)
            except Exception as error:
                logger.error("similar-patient index of version %s not built: %s", pointer.version, type(error).__name__)

    return publish


@dataclass(frozen=True)
class SimilarIndexPublisher:
    """Loads the champion's similar-patient documents (a file of its model directory, checked
    against the registered checksum) into the index: `load(version, documents)`, the adapter's job."""

    store: ObjectStore
    load: Callable[[int, SimilarDocuments], None]

    def __call__(self, pointer: ServingPointer) -> None:
        with tempfile.TemporaryDirectory(prefix="clinrisk-similar-") as scratch:
            directory = Path(scratch)
            self.store.download_dir(pointer.artifact_prefix, directory)
            if directory_checksum(directory) != pointer.checksum:
                raise SimilarDocumentsError(f"model version {pointer.version} does not match its registered checksum")
            self.load(pointer.version, SimilarDocuments(directory))
