"""Cloud batch scoring: the stages of the batch-scoring state machine, as functions with ports.

`state_machines/batch_scoring.asl.json` runs them (state_machines/README.md, "Batch scoring"):

    Plan → ScoreChunks (Distributed Map, one child per chunk: ScoreChunk) → Finish → Notify

- **Plan** (`plan_batch`, "pipeline" bundle: pandas) checks the execution input against the
  allowed locations, pins the champion named by the serving pointer (every chunk is scored by
  that one version, even if a promotion lands mid-run), then checks the whole file the way
  `clinrisk score` does (`clinrisk.batch.split`) and writes the valid rows in chunks of
  consecutive rows, each row with its count of the patient's earlier encounters over the whole
  file, plus a manifest the Map reads and a plan document the other stages trust.
- **ScoreChunk** (`score_chunk`, "predict" bundle: numpy only) scores one chunk with the pinned
  version through `ServingModel.score`, the prediction API's path, and writes its output rows.
- **Finish** (`finish_batch`, "predict" bundle) joins the chunks' rows in file order into the
  output object (one PutObject: the output appears whole or not at all) and writes a summary
  beside it; its rows equal `clinrisk score`'s on the same file, byte for byte.

Work files live in the work bucket under `<work prefix>/<run id>/`; their keys are derived here
from the run id and the chunk index, never taken from an event. Errors are `ClinriskError`s
whose class name is the Step Functions error name; messages name fields, keys and counts,
never a cell value.
"""

from __future__ import annotations

import csv
import gzip
import io
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinrisk.capture.capturer import Capturer
from clinrisk.errors import ClinriskError
from clinrisk.ports import ObjectNotFoundError, ObjectStore
from clinrisk.registry.serving_pointer import ModelFiles, read_pointer
from clinrisk.serving.capture import capture_scored
from clinrisk.serving.model_holder import ModelChecksumError, NoChampionError, fetch_model_files
from clinrisk.serving.scoring import Bands, RiskFactor, Scored, ServingModel
from clinrisk.tasks.readmission.factors import FACTORS
from clinrisk.tasks.readmission.schema import ENCOUNTER_ID, PATIENT_ID
from clinrisk.uris import S3_URI_PATTERN, s3_bucket, s3_key

if TYPE_CHECKING:
    from clinrisk.batch.split import CheckedChunk, CheckedFile

DEFINITION_FILE = Path(__file__).resolve().parents[2] / "state_machines" / "batch_scoring.asl.json"
# Step Functions execution names are at most 80 characters; the run id is also an S3 key segment.
RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$"
CSV_SUFFIXES = (".csv", ".csv.gz")
DEFAULT_CHUNK_ROWS = 5000  # as `clinrisk score`
SUMMARY_SUFFIX = ".summary.json"
_REJECTED_PROBLEMS_SHOWN = 10  # Step Functions keeps 32 KB of an error's cause


# --------------------------------------------------------------------------- errors


class LocationNotAllowedError(ClinriskError):
    """The execution input names an S3 location outside the deployment's allowed ones; nothing was read."""


class BatchInputNotFoundError(ObjectNotFoundError):
    """The input object does not exist; nothing was scored."""


class BatchRowsRejectedError(ClinriskError):
    """Strict mode: the file has invalid rows, so nothing was scored or written."""


class BatchWorkError(ClinriskError):
    """A work file of the run is missing or disagrees with the plan (a chunk not scored, say)."""


class PinnedModelError(ClinriskError):
    """The pinned model's files are missing or do not match their checksum."""


# --------------------------------------------------------------------------- settings and ports


class BatchSettings(BaseSettings):
    """`CLINRISK_BATCH_*`: where batch files may come from and go to, and the work area."""

    model_config = SettingsConfigDict(env_prefix="CLINRISK_BATCH_", extra="ignore")

    work_bucket: str = Field("", description="Bucket of the run's work files (chunks, manifest, plan).")
    work_prefix: str = Field("batch-scoring/work", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_./-]*[A-Za-z0-9_]$")
    input_locations: list[str] = Field(default_factory=list, description="s3://bucket/prefix/ inputs may come from.")
    output_locations: list[str] = Field(default_factory=list, description="s3://bucket/prefix/ outputs may go to.")

    @field_validator("input_locations", "output_locations")
    @classmethod
    def _whole_segments(cls, locations: list[str]) -> list[str]:
        # A trailing '/' so that s3://b/out does not admit s3://b/outside.
        return [location if location.endswith("/") else f"{location}/" for location in locations]


@dataclass(frozen=True)
class BatchPorts:
    """What the stages use: the artifacts store (serving pointer and models), the work store, a
    store for any bucket (input and output), the loaded models and the risk bands."""

    settings: BatchSettings
    models: ObjectStore
    work: ObjectStore
    bucket: Callable[[str], ObjectStore]
    bands: Bands
    capture: Capturer | None = None

    @cached_property
    def cache(self) -> PinnedModels:
        """Models loaded by this process, kept while the Lambda is warm."""
        return PinnedModels(self.models)


# --------------------------------------------------------------------------- models


class BatchRequest(BaseModel):
    """The execution input: `{"input_uri": "s3://...csv", "output_uri": "s3://...csv"}` and options."""

    model_config = ConfigDict(extra="forbid")  # a misspelt option must fail, not be ignored

    input_uri: str = Field(pattern=S3_URI_PATTERN, description="Encounters, CSV or gzip CSV (UCI schema).")
    output_uri: str = Field(pattern=S3_URI_PATTERN, description="Where to write the scores, .csv or .csv.gz.")
    strict: bool = Field(False, description="Any invalid row is fatal: nothing is scored or written.")
    factors: int = Field(0, ge=0, le=len(FACTORS), description="Top risk factors per row (slower); 0: none.")
    chunk_rows: int = Field(DEFAULT_CHUNK_ROWS, ge=100, le=20_000, description="Input rows per Map item.")

    @field_validator("input_uri", "output_uri")
    @classmethod
    def _csv(cls, uri: str) -> str:
        # Parquet would need pyarrow, which neither Lambda bundle carries (see cdk_app.bundling).
        if not uri.lower().endswith(CSV_SUFFIXES):
            raise ValueError(f"must name a CSV object ({' or '.join(CSV_SUFFIXES)}); convert Parquet to CSV")
        return uri


class PlanInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(pattern=RUN_ID_PATTERN, description="The execution name.")
    request: BatchRequest


class PinnedModel(BaseModel):
    """The champion version Plan read from the serving pointer; every chunk is scored by it."""

    name: str
    version: int = Field(ge=1)
    artifact_prefix: str
    checksum: str = Field(pattern=r"^[0-9a-f]{64}$")


class ChunkItem(BaseModel):
    """One Map item: chunk `index` holds `rows` valid rows, the first being file row `first_row`."""

    index: int = Field(ge=0)
    rows: int = Field(ge=1)
    first_row: int = Field(ge=1)


class PlanOutput(BaseModel):
    run_id: str
    input_uri: str
    output_uri: str
    manifest_key: str = Field(description="Work-bucket key of the JSON list of ChunkItems the Map reads.")
    chunks: int = Field(ge=0)
    rows_read: int
    rows_to_score: int
    rows_invalid: int
    factors: int
    model: PinnedModel


class ReportedProblem(BaseModel):
    """`clinrisk.data.validation.Problem` as JSON (that module needs pandas; Finish runs without it)."""

    column: str | None
    code: str
    count: int
    example_rows: list[int]
    message: str


class PlanDocument(BaseModel):
    """Written by Plan, read by Finish: what the run scores and what it found wrong."""

    plan: PlanOutput
    chunks: list[ChunkItem]
    problems: list[ReportedProblem]


class ChunkPayload(BaseModel):
    """One chunk's rows, as Plan wrote them: valid records with file row numbers and prior counts."""

    rows: list[int]
    priors: list[int]
    records: list[dict[str, Any]]

    @model_validator(mode="after")
    def _aligned(self) -> ChunkPayload:
        if not len(self.rows) == len(self.priors) == len(self.records):
            raise ValueError("rows, priors and records differ in length")
        return self


class ScoreChunkInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(pattern=RUN_ID_PATTERN)
    chunk: ChunkItem
    model: PinnedModel
    factors: int = Field(ge=0, le=len(FACTORS))


class ChunkScored(BaseModel):
    index: int
    rows_scored: int


class FinishInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(pattern=RUN_ID_PATTERN)


class BatchSummary(BaseModel):
    """The outcome of a run; written beside the output as `<output>.summary.json`."""

    run_id: str
    input_uri: str
    output_uri: str
    summary_uri: str
    model_name: str
    model_version: int
    rows_read: int
    rows_scored: int
    rows_invalid: int
    problems: list[ReportedProblem] = Field(description="Why rows are invalid: row numbers, never values.")


# --------------------------------------------------------------------------- keys


def run_prefix(settings: BatchSettings, run_id: str) -> str:
    return f"{settings.work_prefix}/{run_id}"


def chunk_key(settings: BatchSettings, run_id: str, index: int) -> str:
    return f"{run_prefix(settings, run_id)}/chunks/{index:06d}.json.gz"


def scored_key(settings: BatchSettings, run_id: str, index: int) -> str:
    return f"{run_prefix(settings, run_id)}/scored/{index:06d}.csv"


def plan_key(settings: BatchSettings, run_id: str) -> str:
    return f"{run_prefix(settings, run_id)}/plan.json"


def manifest_key(settings: BatchSettings, run_id: str) -> str:
    return f"{run_prefix(settings, run_id)}/manifest.json"


def check_location(field_name: str, uri: str, allowed: Sequence[str]) -> None:
    """Refuse a URI outside `allowed`; the message names the field and the allowed locations."""
    if not any(uri.startswith(location) for location in allowed):
        where = ", ".join(allowed) or "(none configured)"
        raise LocationNotAllowedError(f"{field_name} must be under one of {where}; nothing was read or written")


# --------------------------------------------------------------------------- Plan


def plan_batch(request: PlanInput, *, ports: BatchPorts) -> PlanOutput:
    """Check the input, pin the champion, check and split the file; see the module docstring."""
    batch, settings = request.request, ports.settings
    check_location("request.input_uri", batch.input_uri, settings.input_locations)
    check_location("request.output_uri", batch.output_uri, settings.output_locations)
    model = pin_champion(ports.models)
    checked = _checked_file(ports, batch.input_uri)
    items = _write_chunks(checked, request, ports)
    problems = [ReportedProblem.model_validate(p.model_dump(mode="json")) for p in checked.problems()]
    if batch.strict and checked.rows_invalid:
        raise _rejected(checked.rows_invalid, checked.rows, problems)
    output = PlanOutput(
        run_id=request.run_id,
        input_uri=batch.input_uri,
        output_uri=batch.output_uri,
        manifest_key=manifest_key(settings, request.run_id),
        chunks=len(items),
        rows_read=checked.rows,
        rows_to_score=sum(item.rows for item in items),
        rows_invalid=checked.rows_invalid,
        factors=batch.factors,
        model=model,
    )
    document = PlanDocument(plan=output, chunks=items, problems=problems)
    ports.work.write_bytes(plan_key(settings, request.run_id), document.model_dump_json().encode())
    manifest = "[" + ",".join(item.model_dump_json() for item in items) + "]"
    ports.work.write_bytes(output.manifest_key, manifest.encode())
    return output


def pin_champion(models: ObjectStore) -> PinnedModel:
    pointer = read_pointer(models)
    if pointer is None:
        raise NoChampionError("no champion model has been promoted yet; nothing was scored")
    return PinnedModel(
        name=pointer.model_name,
        version=pointer.version,
        artifact_prefix=pointer.artifact_prefix,
        checksum=pointer.checksum,
    )


def _checked_file(ports: BatchPorts, uri: str) -> CheckedFile:
    from clinrisk.batch.split import CheckedFile  # pandas: only the Plan Lambda's bundle has it

    try:
        raw = ports.bucket(s3_bucket(uri)).read_bytes(s3_key(uri))
    except ObjectNotFoundError:
        raise BatchInputNotFoundError(f"no object at {uri}; nothing was scored") from None
    return CheckedFile(raw, name=s3_key(uri))


def _write_chunks(checked: CheckedFile, request: PlanInput, ports: BatchPorts) -> list[ChunkItem]:
    """Write each chunk that has valid rows; in strict mode, stop writing at the first invalid row
    (the file is still read to the end, so that every problem is reported)."""
    items: list[ChunkItem] = []
    for chunk in checked.chunks(request.request.chunk_rows):
        if not chunk.rows or (request.request.strict and checked.rows_invalid):
            continue
        item = ChunkItem(index=len(items), rows=len(chunk.rows), first_row=chunk.rows[0])
        ports.work.write_bytes(chunk_key(ports.settings, request.run_id, item.index), _chunk_bytes(chunk))
        items.append(item)
    return items


def _chunk_bytes(chunk: CheckedChunk) -> bytes:
    payload = ChunkPayload(rows=chunk.rows, priors=chunk.priors, records=chunk.records)
    return gzip.compress(payload.model_dump_json().encode(), mtime=0)


def _rejected(invalid: int, rows: int, problems: list[ReportedProblem]) -> BatchRowsRejectedError:
    shown = [problem.message for problem in problems[:_REJECTED_PROBLEMS_SHOWN]]
    more = f"; and {len(problems) - len(shown)} more problems" if len(problems) > len(shown) else ""
    return BatchRowsRejectedError(
        f"{invalid:,} of {rows:,} rows are invalid; nothing was scored (strict): {'; '.join(shown)}{more}"
    )


# --------------------------------------------------------------------------- ScoreChunk


def score_chunk(request: ScoreChunkInput, *, ports: BatchPorts) -> ChunkScored:
    """Score one chunk with the pinned model; its rows go to the chunk's scored key, no header."""
    key = chunk_key(ports.settings, request.run_id, request.chunk.index)
    try:
        payload = ChunkPayload.model_validate_json(gzip.decompress(ports.work.read_bytes(key)))
    except ObjectNotFoundError:
        raise BatchWorkError(f"chunk {request.chunk.index} of run {request.run_id} is not at {key}") from None
    if len(payload.rows) != request.chunk.rows:
        planned = request.chunk.rows
        raise BatchWorkError(f"chunk {request.chunk.index} holds {len(payload.rows)} rows, the plan says {planned}")
    model = ports.cache.load(request.model)
    scored = model.score(payload.records, payload.priors, bands=ports.bands, top_k=request.factors)
    text = output_rows(payload.records, scored, version=model.version, factors=request.factors)
    ports.work.write_bytes(scored_key(ports.settings, request.run_id, request.chunk.index), text.encode())
    if ports.capture is not None:  # a Lambda may be frozen once it returns: write the chunk's captures now
        records = (payload.records, payload.priors)
        capture_scored(ports.capture, request_id=request.run_id, version=model.version, records=lambda: records,
                       scored=scored, source="batch")  # fmt: skip
        ports.capture.flush()
    return ChunkScored(index=request.chunk.index, rows_scored=len(scored))


def output_columns(factors: int) -> list[str]:
    """`clinrisk score`'s output columns (clinrisk.batch.local)."""
    return [ENCOUNTER_ID, PATIENT_ID, "probability", "band", "model_version"] + [
        f"factor_{i}" for i in range(1, factors + 1)
    ]


def output_rows(records: Sequence[dict[str, Any]], scored: Sequence[Scored], *, version: int, factors: int) -> str:
    """CSV rows as `clinrisk score` writes them (pandas' `to_csv`: minimal quoting, '\\n', floats by repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record, result in zip(records, scored, strict=True):
        factor_texts = [factor_text(factor) for factor in result.factors[:factors]]
        writer.writerow(
            [record[ENCOUNTER_ID], record[PATIENT_ID], result.probability, result.band, version, *factor_texts]
        )
    return buffer.getvalue()


def factor_text(factor: RiskFactor) -> str:
    """A factor as one output cell, as `clinrisk score` writes it."""
    return f"{factor.factor}={factor.value} ({factor.contribution:+.3f})"


class PinnedModels:
    """Model versions loaded by their files' checksum, kept for the life of the process, so a
    warm Lambda scores its next chunk without downloading the model again."""

    def __init__(self, store: ObjectStore, cache_dir: Path | None = None) -> None:
        self._store = store
        self._dir = cache_dir or Path(tempfile.mkdtemp(prefix="clinrisk-batch-models-"))
        self._loaded: dict[tuple[int, str], ServingModel] = {}
        self._lock = threading.Lock()

    def load(self, pinned: PinnedModel) -> ServingModel:
        key = (pinned.version, pinned.checksum)
        with self._lock:  # a Lambda process scores one chunk at a time, but other callers may not
            return self._loaded[key] if key in self._loaded else self._load(pinned, key)

    def _load(self, pinned: PinnedModel, key: tuple[int, str]) -> ServingModel:
        files = ModelFiles(version=pinned.version, artifact_prefix=pinned.artifact_prefix, checksum=pinned.checksum)
        try:
            directory = fetch_model_files(self._store, files, self._dir)
        except ObjectNotFoundError:
            raise PinnedModelError(f"model version {pinned.version} has no files at {pinned.artifact_prefix}") from None
        except ModelChecksumError as error:
            raise PinnedModelError(str(error)) from None  # the Step Functions error name the machine expects
        model = ServingModel.load(directory, name=pinned.name, version=pinned.version, checksum=pinned.checksum)
        self._loaded[key] = model
        return model


# --------------------------------------------------------------------------- Finish


def finish_batch(request: FinishInput, *, ports: BatchPorts) -> BatchSummary:
    """Join the scored chunks in file order into the output object, then write the summary."""
    settings = ports.settings
    try:
        document = PlanDocument.model_validate_json(ports.work.read_bytes(plan_key(settings, request.run_id)))
    except ObjectNotFoundError:
        raise BatchWorkError(f"run {request.run_id} has no plan at {plan_key(settings, request.run_id)}") from None
    plan = document.plan
    check_location("output_uri", plan.output_uri, settings.output_locations)
    pieces = [_scored_piece(ports, request.run_id, item) for item in document.chunks]
    header = ",".join(output_columns(plan.factors)) + "\n"
    body = header.encode() + b"".join(pieces)
    output = ports.bucket(s3_bucket(plan.output_uri))
    key = s3_key(plan.output_uri)
    output.write_bytes(key, gzip.compress(body, mtime=0) if key.lower().endswith(".gz") else body)
    summary = BatchSummary(
        run_id=request.run_id,
        input_uri=plan.input_uri,
        output_uri=plan.output_uri,
        summary_uri=f"{plan.output_uri}{SUMMARY_SUFFIX}",
        model_name=plan.model.name,
        model_version=plan.model.version,
        rows_read=plan.rows_read,
        rows_scored=sum(item.rows for item in document.chunks),
        rows_invalid=plan.rows_invalid,
        problems=document.problems,
    )
    output.write_bytes(f"{key}{SUMMARY_SUFFIX}", summary.model_dump_json(indent=2).encode())
    return summary


def _scored_piece(ports: BatchPorts, run_id: str, item: ChunkItem) -> bytes:
    key = scored_key(ports.settings, run_id, item.index)
    try:
        piece = ports.work.read_bytes(key)
    except ObjectNotFoundError:
        raise BatchWorkError(f"chunk {item.index} of run {run_id} was not scored (no {key})") from None
    rows = _count_rows(piece.decode().splitlines(keepends=True))
    if rows != item.rows:
        raise BatchWorkError(f"chunk {item.index} of run {run_id} has {rows} scored rows, the plan says {item.rows}")
    return piece


def _count_rows(lines: Iterable[str]) -> int:
    # csv, not a line count: a quoted cell may hold a line break.
    return sum(1 for _ in csv.reader(lines))
