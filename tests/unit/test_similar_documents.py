"""The similar-patient documents: computed by the training job (a real run of sagemaker_jobs/train.py,
real XGBoost) into the model directory, checked when read, and loaded at promotion into the local
index without being computed again."""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinrisk.adapters.local import DirectoryObjectStore
from clinrisk.adapters.local_similar import DIGEST_FILE, LocalSimilarPatientIndex
from clinrisk.checksums import directory_checksum
from clinrisk.data.splits import split_by_patient
from clinrisk.data.tables import CHANNEL_SUFFIX, write_table
from clinrisk.explain.publishing import SimilarIndexPublisher
from clinrisk.explain.similar_documents import (
    SIMILAR_FILE,
    SimilarDocument,
    SimilarDocuments,
    SimilarDocumentsError,
    write_documents,
)
from clinrisk.model.archive import unpack
from clinrisk.registry.serving_pointer import ServingPointer
from clinrisk.serving.scoring import Bands, ServingModel
from clinrisk.settings import Settings
from clinrisk.tasks.readmission.explanation import SUMMARY_FIELDS
from clinrisk.tasks.readmission.factors import FACTORS
from clinrisk.tasks.readmission.features import prior_encounter_counts, trainable_mask
from clinrisk.tasks.readmission.schema import Encounter
from clinrisk.tasks.readmission.synth import generate_cohort
from tests.sagemaker_training import train_from_directories


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A model directory as the training job leaves it, and the training channel's frame."""
    root = tmp_path_factory.mktemp("similar-job")
    splits = split_by_patient(generate_cohort(3000, seed=7), seed=1, test=0.2, validation=0.2)
    for name in ("train", "validation"):
        write_table(splits[name], root / "channels" / name / f"{name}{CHANNEL_SUFFIX}")
    archive = train_from_directories({n: root / "channels" / n for n in ("train", "validation")}, {"num_round": "60"})
    unpack(archive, root / "model")
    return root / "model", splits["train"]


def test_the_training_job_writes_one_document_per_trainable_training_encounter(
    trained: tuple[Path, pd.DataFrame],
) -> None:
    model_dir, train = trained
    documents = SimilarDocuments(model_dir)
    rows = list(documents)
    assert documents.header.rows == len(rows) == int(trainable_mask(train).sum())
    assert documents.header.factors == [f.name for f in FACTORS] and documents.header.dimensions == 28
    assert {d.outcome for d in rows} == {0, 1}
    with gzip.open(model_dir / SIMILAR_FILE, "rt") as lines:
        lines.readline()
        first = json.loads(lines.readline())
    # Only the vector, the outcome and the coded fields: no identifier, no value as entered.
    assert set(first) == {"vector", "outcome", *SUMMARY_FIELDS}


def test_a_documents_vector_is_the_factor_contributions_serving_reports(trained: tuple[Path, pd.DataFrame]) -> None:
    """The query vector at explain time (`ServingModel.score` factors) and the stored vectors are the
    same numbers for the same encounter: otherwise nearest neighbours would be meaningless."""
    model_dir, train = trained
    frame = train[trainable_mask(train)].reset_index(drop=True)
    priors = prior_encounter_counts(frame).astype(int).tolist()
    encounters = frame.drop(columns=["readmitted"]).head(5).to_dict("records")
    records = [Encounter.model_validate({k: _plain(v) for k, v in r.items()}).to_record() for r in encounters]
    model = ServingModel.load(model_dir, name="m", version=1, checksum="")
    scored = model.score(records, priors[:5], bands=Bands.from_settings(Settings()), top_k=len(FACTORS))
    stored = [d.vector for _, d in zip(range(5), SimilarDocuments(model_dir), strict=False)]
    for score, vector in zip(scored, stored, strict=True):
        by_name = {f.factor: f.contribution for f in score.factors}
        expected = [by_name[f.name] for f in FACTORS]  # as the explain function builds its query
        np.testing.assert_allclose(vector, expected, atol=2e-4)


def _plain(value: object) -> object:
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _documents(n: int = 60) -> list[SimilarDocument]:
    fields = {"age": "[70-80)", "discharge_group": "home", "primary_diagnosis_group": "circulatory"}
    return [SimilarDocument(vector=[i / 10] * 28, outcome=i % 2, fields=fields) for i in range(n)]


def test_a_truncated_or_edited_file_is_refused_while_reading(tmp_path: Path) -> None:
    write_documents(tmp_path, factors=[f.name for f in FACTORS], documents=_documents())
    with gzip.open(tmp_path / SIMILAR_FILE, "rt") as source:
        lines = source.read().splitlines(keepends=True)
    for edited in (lines[:-1], [*lines[:-1], lines[-1].replace('"outcome":1', '"outcome":0')]):
        with gzip.open(tmp_path / SIMILAR_FILE, "wt") as out:
            out.writelines(edited)
        with pytest.raises(SimilarDocumentsError, match="does not match its header"):
            list(SimilarDocuments(tmp_path))


def test_a_model_without_documents_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SimilarDocumentsError, match="retrain"):
        SimilarDocuments(tmp_path)


def _pointer(store_root: Path, prefix: str, checksum: str) -> ServingPointer:
    return ServingPointer.model_validate(
        {
            "model_name": "m",
            "version": 5,
            "model_uri": "models:/m/5",
            "artifact_prefix": prefix,
            "checksum": checksum,
            "run_id": "r",
            "promoted_at": "2026-01-01T00:00:00Z",
        }
    )


def test_promotion_loads_the_champions_documents_into_the_local_index_once(
    trained: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    model_dir, _ = trained
    store = DirectoryObjectStore(tmp_path / "store")
    store.upload_dir(model_dir, "runs/r/model")
    index = LocalSimilarPatientIndex(tmp_path / "similar")
    publish = SimilarIndexPublisher(store=store, load=index.load)
    publish(_pointer(tmp_path, "runs/r/model", directory_checksum(model_dir)))
    summary = index.summarise(next(iter(SimilarDocuments(model_dir))).vector, model_version=5, k=25)
    assert summary.k == 25 and summary.model_version == 5
    built = (tmp_path / "similar" / "v5" / "vectors.usearch").stat().st_mtime_ns
    publish(_pointer(tmp_path, "runs/r/model", directory_checksum(model_dir)))  # a rollback to v5
    assert (tmp_path / "similar" / "v5" / "vectors.usearch").stat().st_mtime_ns == built
    assert (tmp_path / "similar" / "v5" / DIGEST_FILE).read_text() == SimilarDocuments(model_dir).header.digest


def test_documents_that_are_not_what_was_registered_are_not_loaded(
    trained: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    model_dir, _ = trained
    store = DirectoryObjectStore(tmp_path / "store")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        store.upload_dir(model_dir, "runs/r/model")
        store.download_dir("runs/r/model", copy)
        write_documents(copy, factors=[f.name for f in FACTORS], documents=_documents())
        store.upload_dir(copy, "runs/r/model")
    loaded: list[int] = []
    publish = SimilarIndexPublisher(store=store, load=lambda version, _: loaded.append(version))
    with pytest.raises(SimilarDocumentsError, match="registered checksum"):
        publish(_pointer(tmp_path, "runs/r/model", directory_checksum(model_dir)))
    assert loaded == []
