"""Batch scoring (`clinrisk score`): the same answers as the prediction API and the training-time
scorer, whatever the chunk size; bad rows reported by number and reason, never by value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clinrisk.batch.local import BatchRejectedError, BatchReport, load_champion, score_file
from clinrisk.data.tables import read_table, write_table
from clinrisk.data.validation import ProblemCode, ensure_valid
from clinrisk.local.cli import app
from clinrisk.model.risk_model import RiskModel
from clinrisk.registry.serving_pointer import read_pointer
from clinrisk.runtime import build_store
from clinrisk.serving.scoring import Bands, ServingModel
from clinrisk.tasks.readmission.features import prior_encounter_counts
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, PATIENT_ID, TARGET
from tests.conftest import cohort, local_settings

pytestmark = pytest.mark.integration

ROWS = 400
UNKNOWN_CATEGORY = "Martian"  # planted values that must never appear in any output
NOT_A_NUMBER = "ZZPLENTY42"
OUT_OF_RANGE = "8765"  # time_in_hospital is 1 to 14
BAD_ROWS = {"race": 101, "num_medications": 150, "time_in_hospital": 333}  # 1-based data rows


@pytest.fixture(scope="module")
def champion(promoted_home: Path) -> ServingModel:
    return load_champion(build_store(local_settings(promoted_home)))


@pytest.fixture
def bands(promoted_home: Path) -> Bands:
    return Bands.from_settings(local_settings(promoted_home))


@pytest.fixture
def cli(promoted_home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The CLI, pointed at the home with a promoted champion."""
    monkeypatch.setenv("CLINRISK_HOME", str(promoted_home))
    return CliRunner()


def _encounters() -> pd.DataFrame:
    """A cohort in which one patient's encounters are spread over the whole file (so over many
    chunks), in descending id order, so that counting earlier encounters needs the whole file."""
    frame = cohort(ROWS, 23).copy()
    spread = [10, 120, 260, 390]
    frame.loc[frame.index[spread], PATIENT_ID] = 987_654_321
    frame.loc[frame.index[spread], ENCOUNTER_ID] = [900_000_004, 900_000_003, 900_000_002, 900_000_001]
    return frame


def _with_bad_rows() -> pd.DataFrame:
    frame = _encounters().astype({"num_medications": str, "time_in_hospital": str})  # text, as in a CSV
    for column, value in zip(BAD_ROWS, (UNKNOWN_CATEGORY, NOT_A_NUMBER, OUT_OF_RANGE), strict=True):
        frame.loc[frame.index[BAD_ROWS[column] - 1], column] = value
    return frame


def _written(frame: pd.DataFrame, path: Path) -> Path:
    write_table(frame, path)
    return path


def _read_output(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    return pd.read_parquet(path)


def _real_time(model: ServingModel, path: Path, bands: Bands, top_k: int = 0) -> tuple[pd.DataFrame, list[Any]]:
    """The file scored all at once by `ServingModel.score`, as the API scores a request."""
    frame = ensure_valid(read_table(path).drop(columns=[TARGET]), require_target=False)
    priors = prior_encounter_counts(frame).tolist()
    return frame, model.score(frame.to_dict("records"), priors, bands=bands, top_k=top_k)  # type: ignore[arg-type]


def _score(model: ServingModel, source: Path, destination: Path, bands: Bands, **options: Any) -> BatchReport:
    settings: dict[str, Any] = {"chunk_rows": 5000, "top_k": 0, "strict": False, "on_progress": lambda _: None}
    return score_file(source, destination, model=model, bands=bands, **(settings | options))


@pytest.fixture(scope="module")
def training_scorer(promoted_home: Path, tmp_path_factory: pytest.TempPathFactory) -> RiskModel:
    """The champion's files loaded by the xgboost-based scorer used at training time."""
    store = build_store(local_settings(promoted_home))
    pointer = read_pointer(store)
    assert pointer is not None
    directory = tmp_path_factory.mktemp("champion")
    store.download_dir(pointer.artifact_prefix, directory)
    return RiskModel.load(directory)


@pytest.mark.parametrize("files", [("in.csv", "out.parquet"), ("in.parquet", "out.csv")], ids=["csv", "parquet"])
def test_batch_equals_real_time_scoring(
    files: tuple[str, str], cli: CliRunner, champion: ServingModel, bands: Bands, tmp_path: Path
) -> None:
    source, output = (tmp_path / name for name in files)
    written = _written(_encounters(), source)

    result = cli.invoke(app, ["score", str(written), "-o", str(output), "--chunk-rows", "64"])

    assert result.exit_code == 0, result.output
    scored = _read_output(output)
    assert list(scored.columns) == [ENCOUNTER_ID, PATIENT_ID, "probability", "band", "model_version"]
    frame, expected = _real_time(champion, written, bands)
    assert scored[ENCOUNTER_ID].tolist() == frame[ENCOUNTER_ID].tolist()  # every row, in input order
    assert scored[PATIENT_ID].tolist() == frame[PATIENT_ID].tolist()
    assert scored["probability"].tolist() == [e.probability for e in expected]  # exactly: batch == real time
    assert scored["band"].tolist() == [e.band for e in expected]
    assert set(scored["model_version"]) == {champion.version}


def test_batch_agrees_with_the_training_time_scorer(cli: CliRunner, training_scorer: RiskModel, tmp_path: Path) -> None:
    source = _written(_encounters(), tmp_path / "in.csv")

    result = cli.invoke(app, ["score", str(source), "-o", str(tmp_path / "out.csv"), "--chunk-rows", "50"])

    assert result.exit_code == 0, result.output
    frame = ensure_valid(read_table(source).drop(columns=[TARGET]), require_target=False)
    expected = training_scorer.predict(frame)
    np.testing.assert_allclose(_read_output(tmp_path / "out.csv")["probability"], expected, rtol=0, atol=1e-6)


def test_chunking_changes_nothing_even_for_a_patient_across_chunks(
    champion: ServingModel, bands: Bands, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _written(_encounters(), tmp_path / "in.csv")
    priors: dict[int, int] = {}
    real_score = ServingModel.score

    def recording(self: ServingModel, records: Any, prior_encounters: Any, **options: Any) -> Any:
        priors.update(zip((r[ENCOUNTER_ID] for r in records), prior_encounters, strict=True))
        return real_score(self, records, prior_encounters, **options)

    monkeypatch.setattr(ServingModel, "score", recording)
    _score(champion, source, tmp_path / "small.csv", bands, chunk_rows=7, top_k=3)
    small_chunk_priors = dict(priors)
    priors.clear()
    _score(champion, source, tmp_path / "one.csv", bands, chunk_rows=10_000, top_k=3)

    pd.testing.assert_frame_equal(_read_output(tmp_path / "small.csv"), _read_output(tmp_path / "one.csv"))
    spread = [900_000_001, 900_000_002, 900_000_003, 900_000_004]
    assert [small_chunk_priors[e] for e in spread] == [0, 1, 2, 3]
    assert small_chunk_priors == priors


def test_bad_rows_are_reported_by_file_row_and_the_others_scored(
    cli: CliRunner, champion: ServingModel, bands: Bands, tmp_path: Path
) -> None:
    frame = _with_bad_rows()
    source = _written(frame, tmp_path / "in.csv")

    report = _score(champion, source, tmp_path / "direct.parquet", bands, chunk_rows=64)
    result = cli.invoke(app, ["score", str(source), "-o", str(tmp_path / "out.csv"), "--chunk-rows", "50"])

    assert (report.rows_read, report.rows_scored, report.rows_invalid) == (ROWS, ROWS - 3, 3)
    found = {(p.column, p.code, tuple(p.example_rows)) for p in report.problems}
    assert found == {
        ("race", ProblemCode.UNKNOWN_CATEGORY, (BAD_ROWS["race"],)),
        ("num_medications", ProblemCode.NOT_INTEGER, (BAD_ROWS["num_medications"],)),
        ("time_in_hospital", ProblemCode.OUT_OF_RANGE, (BAD_ROWS["time_in_hospital"],)),
    }
    assert result.exit_code == 0, result.output
    for row in BAD_ROWS.values():
        assert f"(row {row})" in result.output
    _assert_no_patient_values(result.output + report.model_dump_json())
    scored = _read_output(tmp_path / "out.csv")
    good = frame.drop(index=frame.index[[row - 1 for row in BAD_ROWS.values()]])
    assert scored[ENCOUNTER_ID].tolist() == good[ENCOUNTER_ID].tolist()


def test_strict_rejects_the_file_and_writes_nothing(
    cli: CliRunner, champion: ServingModel, bands: Bands, tmp_path: Path
) -> None:
    source = _written(_with_bad_rows(), tmp_path / "in.parquet")
    out_dir = tmp_path / "out"

    arguments = ["score", str(source), "-o", str(out_dir / "scores.csv"), "--strict", "--chunk-rows", "64"]
    result = cli.invoke(app, arguments)
    with pytest.raises(BatchRejectedError) as rejected:
        _score(champion, source, out_dir / "scores.parquet", bands, strict=True)

    assert result.exit_code == 2, result.output
    assert "nothing was written" in result.output
    for row in BAD_ROWS.values():
        assert f"(row {row})" in result.output
    _assert_no_patient_values(result.output + str(rejected.value))
    assert rejected.value.report.rows_invalid == 3
    assert list(out_dir.iterdir()) == []  # no output, no partial file


def _assert_no_patient_values(text: str) -> None:
    for value in (UNKNOWN_CATEGORY, NOT_A_NUMBER, OUT_OF_RANGE):
        assert value not in text


def _missing_file(tmp: Path) -> Path:
    return tmp / "does-not-exist.csv"


def _empty_file(tmp: Path) -> Path:
    (tmp / "empty.csv").write_bytes(b"")
    return tmp / "empty.csv"


def _header_only(tmp: Path) -> Path:
    (tmp / "header.csv").write_text(",".join(cohort(50, 3).columns) + "\n")
    return tmp / "header.csv"


def _missing_column(tmp: Path) -> Path:
    return _written(cohort(50, 3).drop(columns=["age"]), tmp / "no-age.parquet")


BAD_FILES = {
    "missing file": (_missing_file, "file not found"),
    "empty file": (_empty_file, "empty"),
    "header only": (_header_only, "no data rows"),
    "required column missing": (_missing_column, "missing_column: 'age'"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_an_unusable_file_is_one_line_and_exit_2(case: str, cli: CliRunner, tmp_path: Path) -> None:
    make, expected = BAD_FILES[case]
    out = tmp_path / "out.csv"

    result = cli.invoke(app, ["score", str(make(tmp_path)), "-o", str(out)])

    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and expected in lines[0]
    assert not out.exists()


def test_no_champion_is_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _written(cohort(50, 3), tmp_path / "in.csv")
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "fresh-home"))

    result = CliRunner().invoke(app, ["score", str(source), "-o", str(tmp_path / "out.csv")])

    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no champion" in lines[0], result.output
    assert not (tmp_path / "out.csv").exists()


def test_factors_are_written_as_text(cli: CliRunner, champion: ServingModel, bands: Bands, tmp_path: Path) -> None:
    source = _written(_encounters(), tmp_path / "in.csv")
    out = tmp_path / "out.parquet"

    result = cli.invoke(app, ["score", str(source), "-o", str(out), "--factors", "3"])

    assert result.exit_code == 0, result.output
    scored = _read_output(out)
    assert [c for c in scored.columns if c.startswith("factor_")] == ["factor_1", "factor_2", "factor_3"]
    _, expected = _real_time(champion, source, bands, top_k=3)
    assert scored["probability"].tolist() == [e.probability for e in expected]
    for k in range(3):
        texts = scored[f"factor_{k + 1}"]
        assert texts.tolist() == [f"{e.factors[k].factor}={e.factors[k].value} ({e.factors[k].contribution:+.3f})"
                                  for e in expected]  # fmt: skip
        assert all(re.fullmatch(r"\w+=.+ \([+-]\d+\.\d{3}\)", text) for text in texts)


def test_an_encounter_id_repeated_in_a_later_chunk_is_invalid(
    champion: ServingModel, bands: Bands, tmp_path: Path
) -> None:
    frame = _encounters()
    frame.loc[frame.index[299], ENCOUNTER_ID] = frame.loc[frame.index[4], ENCOUNTER_ID]  # row 300 repeats row 5
    source = _written(frame, tmp_path / "in.csv")

    report = _score(champion, source, tmp_path / "out.csv", bands, chunk_rows=64)

    assert [(p.column, p.code, p.example_rows) for p in report.problems] == [
        (ENCOUNTER_ID, ProblemCode.DUPLICATE_ENCOUNTER_ID, [300])
    ]
    assert (report.rows_scored, report.rows_invalid) == (ROWS - 1, 1)
    assert len(_read_output(tmp_path / "out.csv")) == ROWS - 1
