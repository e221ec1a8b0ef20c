"""The one settings model of clinrisk: environment variables `CLINRISK_*` (nested with `__`)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, ClassVar, Literal, overload

from pydantic import AliasChoices, BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TASK = "readmission"  # the task of a deployment, a run or a command that names none


def task_model_name(task: str, default: str) -> str:
    """The registered model of `task`: the deployment's (`default`) for readmission, `clinrisk-<task>` else.
    One rule for the pipeline, the CLI and the promote function (which cannot read task files)."""
    return default if task == DEFAULT_TASK else f"clinrisk-{task}"


class GateRules(BaseModel):
    """When a newly trained model may replace the champion. Every rule is checked; all must pass."""

    auc_floor: float = Field(0.65, ge=0.5, le=1.0, description="Minimum test ROC-AUC.")
    max_auc_regression: float = Field(
        0.01, ge=0.0, le=1.0, description="Largest allowed drop in test AUC against the champion."
    )
    max_subgroup_auc_gap: float = Field(
        0.10, ge=0.0, le=1.0, description="Largest allowed AUC gap between subgroups of one attribute."
    )
    subgroup_gap_limits: dict[str, float] = Field(
        default_factory=lambda: {"age_band": 0.20},
        description=(
            "Per-attribute overrides of max_subgroup_auc_gap. Age bands get 0.20: inside one 10-year"
            " band age no longer discriminates and the case mix differs a lot between bands, so"
            " within-band AUCs spread widely even for a sound model (on the UCI data 0.74 at [30-40)"
            " against 0.57 at [90-100)). Race and gender keep the strict 0.10."
        ),
    )

    def gap_limit(self, attribute: str) -> float:
        return self.subgroup_gap_limits.get(attribute, self.max_subgroup_auc_gap)

    subgroup_min_size: int = Field(
        200, ge=1, description="Subgroups smaller than this are reported but not gated (too noisy)."
    )
    subgroup_min_positives: int = Field(
        50,
        ge=1,
        description=(
            "Subgroups with fewer positives (or negatives) are reported but not gated: with fewer than"
            " ~50 positives the standard error of a subgroup AUC (~0.04) makes a 0.10 gap mostly noise."
        ),
    )


class ServingRules(BaseModel):
    """How predictions are served: risk bands, explanation size, and how often the model is re-checked."""

    medium_risk_from: float = Field(
        0.10,
        gt=0.0,
        lt=1.0,
        description="Probability at or above which the band is `medium`; `high` starts at the operating threshold.",
    )
    top_factors: int = Field(
        5, ge=0, le=28, description="Risk factors returned per encounter, largest first (0: probability and band only)."
    )
    pointer_check_seconds: float = Field(
        30.0, ge=0.0, description="Serving re-reads the serving pointer at most this often (0: every request)."
    )


ENDPOINT_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,40}$"


class SageMakerServing(BaseModel):
    """The `sagemaker` serving mode: a SageMaker serverless endpoint scores, and every change of
    champion (promotion, manual promotion, rollback) deploys that version's archive to it first.

    The predict function needs only `endpoint_name`; the function that deploys (promote) also
    needs the rest on the aws backend, which the CDK app sets from the same construct."""

    # SageMaker allows 63 characters; a version's model and configuration names add up to 22.
    endpoint_name: str = Field(pattern=ENDPOINT_NAME_PATTERN, description="Endpoint to call.")
    endpoint_names: dict[str, Annotated[str, Field(pattern=ENDPOINT_NAME_PATTERN)]] = Field(
        default_factory=dict,
        description="One serverless endpoint per task: task -> its endpoint; a task not listed uses endpoint_name.",
    )
    execution_role_arn: str | None = Field(None, description="aws: the role the endpoint's model runs as.")
    image_uri: str | None = Field(None, description="aws: the SageMaker XGBoost framework inference image.")
    source_uri: str | None = Field(None, description="aws: s3:// URI of the source tarball holding inference.py.")
    kms_key_arn: str | None = Field(None, description="aws: key for the endpoint configuration's storage.")
    memory_mb: int = Field(2048, ge=1024, le=6144, multiple_of=1024, description="Serverless memory size.")
    max_concurrency: int = Field(10, ge=1, le=200, description="Serverless concurrent invocations.")
    # The predict function's runtime client: every attempt, retry pause included, must end inside the
    # function's timeout, itself under API Gateway's 29 s (clinrisk.adapters.sagemaker_endpoint
    # .worst_case_invoke_seconds; a test checks the deployed settings against the deployed timeout).
    invoke_connect_timeout_seconds: float = Field(2.0, gt=0, le=10, description="Runtime client connect timeout.")
    invoke_read_timeout_seconds: float = Field(
        8.0, gt=0, le=60, description="Runtime client read timeout; a slower cold start is answered 503, then retried."
    )
    invoke_max_attempts: int = Field(2, ge=1, le=5, description="Runtime client attempts, the first included.")

    def endpoint_for(self, task: str) -> str:
        """The endpoint that serves `task`: its own, so each task deploys and rolls back alone."""
        return self.endpoint_names.get(task, self.endpoint_name)

    def missing_for_deployment(self) -> list[str]:
        needed = ("execution_role_arn", "image_uri", "source_uri")
        return [name for name in needed if getattr(self, name) is None]


class MonitoringRules(BaseModel):
    """Prediction capture and the drift monitor (`clinrisk.monitoring`)."""

    task: str = Field("readmission", pattern=r"^[a-z0-9][a-z0-9_-]{0,40}$", description="Task name in captures.")
    capture: bool = Field(True, description="Capture every scored encounter (ids as keyed HMACs).")
    capture_batch_records: int = Field(500, ge=1, le=500, description="Records per sink write (Firehose: 500).")
    capture_flush_seconds: float = Field(2.0, gt=0.0, description="Buffered records are written at least this often.")
    capture_buffer_limit: int = Field(
        50_000, ge=1, description="Records held while the sink is slow or down; beyond it they are dropped and counted."
    )
    window_hours: float = Field(24.0, gt=0.0, description="Default monitoring window.")
    min_window: int = Field(
        500,
        ge=50,
        description=(
            "Windows with fewer scored encounters publish nothing. With a 4,000-row reference (the validation"
            " channel of a 20,000-row cohort) the chi-square critical PSI at drift_alpha, Bonferroni-split over"
            " the 48 fields, is 0.08 for an 11-bin field and 0.15 for the widest (32 bins) at 500 records, so"
            " the fixed psi_threshold (0.25) of the CloudWatch alarm is above noise for every field; at 300 the"
            " widest field's is 0.24, too close. benchmarks/monitoring.py measures the false-alarm rate at 500."
        ),
    )
    psi_threshold: float = Field(
        0.25, gt=0.0, description="Field PSI counted as drift (the FeatureDrift alarm's threshold), if above noise."
    )
    drift_alpha: float = Field(
        0.01, gt=0.0, lt=0.5, description="Chance of a false drift flag per window, split over the fields."
    )
    high_risk_rate_alarm: float = Field(0.20, gt=0.0, lt=1.0, description="High-risk share that alarms.")
    attribution_ndcg_alarm: float = Field(0.90, gt=0.0, le=1.0, description="Clarify's NDCG alert level.")
    refused_share_alarm: float = Field(0.05, gt=0.0, le=1.0, description="Share of requests refused (422) that alarms.")
    calibration_band: tuple[float, float] = Field((0.8, 1.25), description="Observed/expected ratio band.")
    outcome_window_days: float = Field(90.0, gt=0.0, description="Rolling window of realized metrics.")
    environment: str = Field("dev", description="The `Environment` dimension the FeatureDrift alarm watches.")
    id_key_secret_arn: str | None = Field(None, description="aws: Secrets Manager secret holding the HMAC id key.")
    firehose_stream: str | None = Field(None, description="aws: the capture delivery stream.")
    capture_bucket: str | None = Field(None, description="aws: the bucket Firehose writes captures to.")
    capture_prefix: str = Field("captures/", description="aws: key prefix of the captures (Hive partitions below).")
    keyed_outcomes_prefix: str = Field("outcomes-keyed/", description="aws: key prefix of keyed outcomes.")


class ExplainSettings(BaseModel):
    """Explanations (`POST /v1/explain`): retrieval, similar patients, the writer and the budget.

    Locally the knowledge index, the similar-patient index and the deterministic writer are
    embedded; on the aws backend they are OpenSearch Serverless and Bedrock (ids from cdk.json)."""

    budget_seconds: float = Field(
        10.0, gt=0.0, le=25.0, description="Whole-request budget; API Gateway stops waiting at 29 s."
    )
    factors_explained: int = Field(4, ge=1, le=28, description="Top factors that get a retrieval query.")
    passages_per_factor: int = Field(2, ge=1, le=10)
    neighbours: int = Field(50, ge=20, le=1000, description="Similar past encounters per aggregate (k).")
    writer: Literal["deterministic", "bedrock"] | None = Field(
        None, description="Who writes the narrative; default: bedrock on aws, deterministic locally."
    )
    knowledge_dir: Path = Field(Path("knowledge"), description="`clinrisk rag ingest` default; per-task folders.")
    # aws backend
    text_model_id: str = Field("amazon.nova-lite-v1:0", description="Converse model or inference profile id.")
    embedding_model_id: str = "amazon.titan-embed-text-v2:0"
    embedding_dimensions: Literal[256, 512, 1024] = 512
    guardrail_id: str | None = None
    guardrail_version: str | None = None
    opensearch_endpoint: str | None = Field(
        None, description="The collection endpoint (https://...aoss.amazonaws.com)."
    )
    opensearch_endpoint_parameter: str | None = Field(
        None,
        description="aws: the SSM parameter holding the collection endpoint, read when `opensearch_endpoint` is"
        " unset (the promote function: its stack cannot refer to the collection's, which depends on it).",
    )
    knowledge_bucket: str | None = Field(None, description="aws: the only bucket rag_ingest reads documents from.")
    knowledge_index: str = "clinrisk-knowledge"
    similar_index: str = "clinrisk-similar-patients"

    def chosen_writer(self, backend: str) -> str:
        return self.writer or ("bedrock" if backend == "aws" else "deterministic")


class _UnderHome:
    """A path below the settings' `home_dir`, read like a property: `store_root = _UnderHome("store")`."""

    def __init__(self, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, settings: None, owner: type[Settings]) -> _UnderHome: ...

    @overload
    def __get__(self, settings: Settings, owner: type[Settings]) -> Path: ...

    def __get__(self, settings: Settings | None, owner: type[Settings]) -> Path | _UnderHome:
        return self if settings is None else settings.home_dir / self._name


class Settings(BaseSettings):
    """Where things live and which adapters run. `backend` picks local engines or AWS services."""

    model_config = SettingsConfigDict(env_prefix="CLINRISK_", env_nested_delimiter="__", extra="ignore")

    backend: Literal["local", "aws"] = "local"
    home: Path = Field(Path(".clinrisk"), description="Project-local folder for the local adapters.")
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CLINRISK_MLFLOW_TRACKING_URI"),
        description="MLflow tracking URI; defaults to SQLite under `home`.",
    )
    model_name: str = "clinrisk-readmission-30d"
    experiment_name: str = "clinrisk-readmission-30d"
    seed: int = 42
    operating_threshold: float = Field(
        0.20,
        gt=0.0,
        lt=1.0,
        description="Probability at or above which an encounter is flagged for follow-up.",
    )
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    validation_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    bootstrap_rounds: int = Field(200, ge=10)
    gate: GateRules = GateRules()
    serving: ServingRules = ServingRules()
    monitoring: MonitoringRules = MonitoringRules()
    sagemaker: SageMakerServing | None = Field(
        None, description="Set (CLINRISK_SAGEMAKER__ENDPOINT_NAME, ...) for the `sagemaker` serving mode."
    )
    explain: ExplainSettings = ExplainSettings()
    tasks_dir: Path | None = Field(
        None, description="The task files serving and batch scoring know (besides readmission's); unset: `tasks/`."
    )
    # AWS backend: where the S3 adapter keeps pointers and artifacts.
    artifacts_bucket: str | None = None
    aws_region: str | None = None
    alerts_topic_arn: str | None = Field(None, description="AWS backend: SNS topic for notifications.")
    state_machine_arn: str | None = Field(
        None, description="AWS backend: the retraining state machine that `clinrisk pipeline start` starts."
    )
    kms_key_id: str | None = Field(
        None, description="AWS backend: KMS key for SSE-KMS on S3 writes; unset uses the bucket's default key."
    )

    @model_validator(mode="after")
    def _bands_are_ordered(self) -> Settings:
        if self.serving.medium_risk_from >= self.operating_threshold:
            raise ValueError("serving.medium_risk_from must be below operating_threshold (where `high` starts)")
        return self

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @property
    def experiment_artifact_location(self) -> str | None:
        """Where a new MLflow experiment keeps its artifacts: the local folder, or, on AWS, the
        tracking server's own artifact store (None), never the Lambda's temporary disk."""
        return None if self.backend == "aws" else self.artifact_root.as_uri()

    artifact_root: ClassVar[_UnderHome] = _UnderHome("mlartifacts")
    # The local object store: a directory that stands in for the S3 buckets.
    store_root: ClassVar[_UnderHome] = _UnderHome("store")
    # The local knowledge and similar-patient indexes.
    explain_root: ClassVar[_UnderHome] = _UnderHome("explain")
    outbox_path: ClassVar[_UnderHome] = _UnderHome("outbox.jsonl")
    # Local prediction captures, in the capture bucket's partition layout.
    captures_root: ClassVar[_UnderHome] = _UnderHome("captures")
    # Local HMAC key for record and patient ids (mode 0600).
    id_key_path: ClassVar[_UnderHome] = _UnderHome("id.key")
    # Local monitor state: EMF metric log, alarm states, outcomes.
    monitor_dir: ClassVar[_UnderHome] = _UnderHome("monitor")
    # Local observed outcomes, keyed like the captures.
    outcomes_root: ClassVar[_UnderHome] = _UnderHome("outcomes")
