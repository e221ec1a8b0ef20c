"""Computing the similar-patient documents of a trained model, where numpy and the model already are:
the training job (`sagemaker_jobs/train.py`) calls `write_similar_documents` with its training
channel and its task, whatever the task.

The training records are read through the task port (the rows the model learns from, with their
features and labels); each one's vector is its per-factor SHAP contributions (see
`clinrisk.explain.similar` for why), kept with its outcome and the task's coded summary fields
(readmission: age band, discharge group, primary diagnosis group; a task file: its subgroups).
Nothing else of the record is kept: identifiers and values as entered are left behind. Promotion
only loads what is written here (`clinrisk.explain.similar_documents`, `clinrisk.explain.publishing`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from clinrisk.explain.similar_documents import SimilarDocument, SimilarHeader, write_documents
from clinrisk.model.risk_model import BOOSTER_FILE
from clinrisk.model.tree_ensemble import TreeEnsemble
from clinrisk.serving.scoring import ServingModel
from clinrisk.tasks.readmission.factors import factor_membership

if TYPE_CHECKING:
    import pandas as pd

    from clinrisk.data.task_port import Task


@dataclass(frozen=True)
class SimilarRows:
    """What the index keeps per past encounter: vector, outcome and a few coded fields."""

    vectors: npt.NDArray[np.float32]  # (n, factors)
    outcomes: npt.NDArray[np.int8]  # 1 = the task's outcome happened
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
    """Readmission's per-factor SHAP contributions, the same numbers `ServingModel.score` reports as factors."""
    contributions = model.ensemble.contributions(features)
    return np.asarray(contributions[:, :-1] @ factor_membership(), dtype=np.float32)


def factor_order(task: Task) -> list[str]:
    """The task's factors in vector order: the order serving reports them in (readmission's
    `FACTORS`; a task file's feature columns)."""
    return list(dict.fromkeys(task.factors().values()))


def similar_rows(ensemble: TreeEnsemble, task: Task, frame: pd.DataFrame) -> SimilarRows:
    """The examples of `frame` the model learns from, as similar-patient rows: each one's per-factor
    SHAP contributions (features summed into the factor that reports them), its label, and the
    task's coded summary fields."""
    examples = task.examples(frame)
    factors, factor_of = factor_order(task), task.factors()
    membership = np.zeros((examples.features.shape[1], len(factors)), dtype=np.float64)
    for row, feature in enumerate(examples.features.columns):
        membership[row, factors.index(factor_of[feature])] = 1.0
    contributions = ensemble.contributions(examples.features.to_numpy(dtype=float))
    return SimilarRows(
        vectors=np.asarray(contributions[:, :-1] @ membership, dtype=np.float32),
        outcomes=np.asarray(examples.labels, dtype=np.int8),
        fields=task.similar_fields(examples),
    )


def write_similar_documents(model_dir: Path, frame: pd.DataFrame, task: Task) -> SimilarHeader:
    """Score `frame` (the training channel's records) with the model saved in `model_dir` and write
    their similar-patient documents beside it."""
    ensemble = TreeEnsemble.from_xgboost_json(json.loads((model_dir / BOOSTER_FILE).read_text()))
    rows = similar_rows(ensemble, task, frame)
    return write_documents(model_dir, factors=factor_order(task), documents=rows.documents())
