"""Building the similar-patient index of a champion at promotion.

The champion's training encounters (the `train` channel beside its model directory in the
artifact store) are scored with the same serving code as predict; each encounter's vector is its
per-factor SHAP contributions (see `clinrisk.explain.similar` for why), kept with its outcome and
a few coded fields (age band, discharge group, primary diagnosis group). Nothing else of the
record is kept: identifiers and values as entered are left behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from clinrisk.errors import ClinriskError
from clinrisk.explain.ports import SimilarPatientIndex
from clinrisk.ports import ObjectStore
from clinrisk.registry.serving_pointer import ServingPointer
from clinrisk.serving.scoring import ServingModel
from clinrisk.tasks.readmission.factors import factor_membership
from clinrisk.tasks.readmission.features import DISCHARGE_GROUPS, icd9_group

if TYPE_CHECKING:
    import pandas as pd

MODEL_DIR_NAME = "model"


class SimilarIndexError(ClinriskError):
    """The champion's training encounters could not be found or read."""


@dataclass(frozen=True)
class SimilarRows:
    """What the index keeps per past encounter: vector, outcome and a few coded fields."""

    vectors: npt.NDArray[np.float32]  # (n, factors)
    outcomes: npt.NDArray[np.int8]  # 1 = readmitted within 30 days
    fields: dict[str, npt.NDArray[np.str_]]


class SimilarIndexWriter(SimilarPatientIndex, Protocol):
    """A similar-patient index that can also be (re)built for a champion version."""

    def write(self, version: int, rows: SimilarRows) -> None: ...


def train_channel_prefix(pointer: ServingPointer) -> str:
    """The training data of a pipeline run sits beside its model: runs/<id>/model → runs/<id>/channels/train."""
    parent, _, name = pointer.artifact_prefix.rpartition("/")
    if name != MODEL_DIR_NAME or not parent:
        raise SimilarIndexError(f"version {pointer.version} was not trained by the pipeline; no training channel")
    return f"{parent}/channels/train"


def factor_vectors(model: ServingModel, features: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Per-factor SHAP contributions, the same numbers `ServingModel.score` reports as factors."""
    contributions = model.ensemble.contributions(features)
    return np.asarray(contributions[:, :-1] @ factor_membership(), dtype=np.float32)


def rows_from_frame(model: ServingModel, frame: pd.DataFrame) -> SimilarRows:
    from clinrisk.tasks.readmission.features import build_features, readmitted_within_30_days, trainable_mask

    frame = frame[trainable_mask(frame)].reset_index(drop=True)
    features = build_features(frame).to_numpy(dtype=float)
    discharge = {code: name for name, codes in DISCHARGE_GROUPS.items() for code in codes}
    return SimilarRows(
        vectors=factor_vectors(model, features),
        outcomes=readmitted_within_30_days(frame),
        fields={
            "age": frame["age"].astype(str).to_numpy(dtype=str),
            "discharge_group": np.array([discharge.get(int(c), "other") for c in frame["discharge_disposition_id"]]),
            "primary_diagnosis_group": np.array([g or "missing" for g in icd9_group(frame["diag_1"].tolist())]),
        },
    )


def training_rows(store: ObjectStore, pointer: ServingPointer, model: ServingModel) -> SimilarRows:
    import pandas as pd

    from clinrisk.data.tables import CHANNEL_SUFFIX, read_table
    from clinrisk.data.validation import ensure_valid

    with tempfile.TemporaryDirectory(prefix="clinrisk-similar-") as scratch:
        directory = Path(scratch)
        store.download_dir(train_channel_prefix(pointer), directory)
        files = sorted(p for p in directory.rglob(f"*{CHANNEL_SUFFIX}") if p.is_file())
        if not files:
            raise SimilarIndexError(f"no training channel for version {pointer.version}")
        return rows_from_frame(model, ensure_valid(pd.concat([read_table(f) for f in files], ignore_index=True)))


@dataclass(frozen=True)
class SimilarIndexPublisher:
    """What the registry calls with each new champion: index its training encounters. `write`
    stores the rows in the similar-patient index under the version (the adapter's job)."""

    store: ObjectStore
    load_model: Callable[[ServingPointer], ServingModel]
    write: Callable[[int, SimilarRows], None]

    def __call__(self, pointer: ServingPointer) -> None:
        model = self.load_model(pointer)
        self.write(pointer.version, training_rows(self.store, pointer, model))
