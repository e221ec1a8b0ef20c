"""Computing the similar-patient documents of a trained model, where numpy and the model already are:
the training job (`sagemaker_jobs/train.py`) calls `write_similar_documents` with its training channel.

The training encounters are scored with the same serving code as predict; each encounter's vector is
its per-factor SHAP contributions (see `clinrisk.explain.similar` for why), kept with its outcome and
a few coded fields (age band, discharge group, primary diagnosis group). Nothing else of the record
is kept: identifiers and values as entered are left behind. Promotion only loads what is written
here (`clinrisk.explain.similar_documents`, `clinrisk.explain.publishing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from clinrisk.explain.similar_documents import SimilarDocument, SimilarHeader, write_documents
from clinrisk.serving.scoring import ServingModel
from clinrisk.tasks.readmission.factors import FACTORS, factor_membership
from clinrisk.tasks.readmission.features import DISCHARGE_GROUPS, icd9_group

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class SimilarRows:
    """What the index keeps per past encounter: vector, outcome and a few coded fields."""

    vectors: npt.NDArray[np.float32]  # (n, factors)
    outcomes: npt.NDArray[np.int8]  # 1 = readmitted within 30 days
    fields: dict[str, npt.NDArray[np.str_]]

    def documents(self) -> list[SimilarDocument]:
        names = list(self.fields)
        columns = [self.fields[name].tolist() for name in names]
        return [
            SimilarDocument(vector=vector, outcome=int(outcome), fields=dict(zip(names, values, strict=True)))
            for vector, outcome, *values in zip(self.vectors.tolist(), self.outcomes.tolist(), *columns, strict=True)
        ]

    @classmethod
    def from_documents(cls, documents: list[SimilarDocument], *, dimensions: int) -> SimilarRows:
        names = list(documents[0].fields) if documents else []
        return cls(
            vectors=np.asarray([d.vector for d in documents], dtype=np.float32).reshape(len(documents), dimensions),
            outcomes=np.asarray([d.outcome for d in documents], dtype=np.int8),
            fields={name: np.asarray([d.fields[name] for d in documents], dtype=str) for name in names},
        )


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


def write_similar_documents(model_dir: Path, frame: pd.DataFrame) -> SimilarHeader:
    """Score `frame` (the training channel's encounters) with the model saved in `model_dir` and
    write their similar-patient documents beside it."""
    model = ServingModel.load(model_dir, name="similar-patients", version=0, checksum="")
    rows = rows_from_frame(model, frame)
    return write_documents(model_dir, factors=[f.name for f in FACTORS], documents=rows.documents())
