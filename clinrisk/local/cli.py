"""The `clinrisk` command line. Every error ends as one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, ParamSpec, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from clinrisk.data.validation import DataValidationError, ValidationReport
from clinrisk.errors import ClinriskError
from clinrisk.logs import quiet_libraries
from clinrisk.settings import DEFAULT_TASK, Settings

if TYPE_CHECKING:
    from clinrisk.batch.local import BatchRejectedError, BatchReport
    from clinrisk.capture.capturer import Capturer
    from clinrisk.data.task_port import Task
    from clinrisk.monitoring.outcomes import RealizedPerformance
    from clinrisk.registry.model_registry import AuditEntry, Registry, VersionInfo
    from clinrisk.taskspec.catalogue import BrokenTaskFile

app = typer.Typer(help="Train, govern, serve and explain clinical risk models.", no_args_is_help=True)


@app.callback()
def _quiet_libraries() -> None:
    quiet_libraries()


def _command_group(name: str, help: str) -> typer.Typer:
    """`clinrisk <name> …`: a group of commands, which prints its help when called bare."""
    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


data_app = _command_group("data", "Data: make a synthetic cohort, validate a file.")
pipeline_app = _command_group("pipeline", "The retraining pipeline.")
models_app = _command_group("models", "Registered model versions, promotion and rollback.")

console = Console(stderr=True, soft_wrap=True)
P = ParamSpec("P")
R = TypeVar("R")
_Record = TypeVar("_Record", bound=BaseModel)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
DEFAULT_SYNTH_ROWS = 20_000


def _fail(message: str, code: int) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn clinrisk's own errors into one line and an exit code (2: bad input, 1: failure)."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from clinrisk.pipeline.local import PipelineFailedError

        try:
            return command(*args, **kwargs)
        except PipelineFailedError as error:
            cause = error.__cause__
            _fail(
                str(error),
                EXIT_BAD_INPUT if isinstance(cause, ClinriskError) and _is_input(cause) else EXIT_FAILED,
            )
        except ClinriskError as error:
            _fail(str(error), EXIT_BAD_INPUT if _is_input(error) else EXIT_FAILED)
        raise AssertionError("unreachable")

    return wrapper


def _is_input(error: BaseException) -> bool:
    from clinrisk.errors import DataFileError
    from clinrisk.taskspec.spec import TaskFileError

    return isinstance(error, DataFileError | DataValidationError | TaskFileError)


@contextmanager
def _stage_display(enabled: bool) -> Iterator[Callable[[str, str], None]]:
    """Shows each pipeline stage with a spinner while it runs, and its time when done."""
    status = console.status("starting", spinner="dots")
    started: dict[str, float] = {}

    def on_stage(stage: str, state: str) -> None:
        if not enabled:
            return
        if state == "started":
            started[stage] = time.perf_counter()
            status.update(f"[bold]{stage}[/] …")
            return
        mark = "[green]✓[/]" if state == "done" else "[red]✗[/]"
        console.print(f"{mark} {stage:<9} {time.perf_counter() - started.get(stage, time.perf_counter()):6.1f} s")

    if enabled:
        status.start()
    try:
        yield on_stage
    finally:
        status.stop()


def _emit_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- data


@data_app.command("synth")
@one_line_errors
def data_synth(
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV or Parquet file to write.")] = Path(
        ".clinrisk/data/synthetic.csv"
    ),
    rows: Annotated[int, typer.Option(min=10, help="Encounters to generate.")] = DEFAULT_SYNTH_ROWS,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same file.")] = 42,
) -> None:
    """Write a synthetic cohort in the UCI schema, with a documented readmission signal."""
    from clinrisk.data.tables import write_table
    from clinrisk.tasks.readmission.schema import PATIENT_ID
    from clinrisk.tasks.readmission.synth import generate_cohort

    with console.status(f"generating {rows:,} encounters"):
        frame = generate_cohort(rows, seed=seed)
        output.parent.mkdir(parents=True, exist_ok=True)
        write_table(frame, output)
    console.print(f"wrote {len(frame):,} encounters of {frame[PATIENT_ID].nunique():,} patients to {output}")


# The file a command reads, named by what it holds, as the options are (`TaskOption`, `JsonOption`).
EncountersFile = Annotated[Path, typer.Argument(help="CSV or Parquet file in the UCI schema.")]


@data_app.command("validate")
@one_line_errors
def data_validate(path: EncountersFile, as_json: JsonOption = False) -> None:
    """Check a file against the schema and list every problem at once."""
    from clinrisk.data.tables import read_table
    from clinrisk.data.validation import validate_encounters

    _print_validation(validate_encounters(read_table(path)).report, as_json=as_json)


def _print_validation(report: ValidationReport, *, as_json: bool) -> None:
    """The report as JSON or its summary; bad data exits with EXIT_BAD_INPUT."""
    if as_json:
        _emit_json(report.model_dump(mode="json"))
    else:
        console.print(report.summary(), highlight=False)
    if not report.ok:
        raise typer.Exit(EXIT_BAD_INPUT)


# --------------------------------------------------------------------------- pipeline


def _default_data(settings: Settings, task: Task | None = None) -> list[Path]:
    """Without --data the pipeline trains on the task's synthetic cohort (made once, then reused)."""
    from clinrisk.data.task_binding import resolve_task

    task = task or resolve_task()
    directory = settings.home_dir / "data" if task.name == DEFAULT_TASK else settings.home_dir / "data" / task.name
    with console.status(f"synthetic cohort of {DEFAULT_SYNTH_ROWS:,} {task.name} records"):
        return task.synthesize(directory, rows=DEFAULT_SYNTH_ROWS, seed=settings.seed)


TaskOption = Annotated[
    str,
    typer.Option(
        "--task", help="A task file, or the name of a task (CLINRISK_TASKS_DIR or tasks/, or packaged: readmission)."
    ),
]


def _task(name_or_path: str) -> Task:
    """The task `--task` names, found as serving finds it (`find_task`): by name in CLINRISK_TASKS_DIR
    (or `tasks/`), or by file. Only that task must be sound; each other broken file is warned about."""
    from clinrisk.data.task_binding import resolve_task

    return resolve_task(name_or_path, on_broken=_warn_broken)


def _warn_broken(broken: BrokenTaskFile) -> None:
    """One line on stderr: the task, its file and the keys at fault (a task file's values are never echoed)."""
    console.print(f"warning: {broken.unavailable()}", markup=False, highlight=False, soft_wrap=True, style="yellow")


# `--json` on every command that prints a report: the report as JSON on stdout instead of a table.
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


@pipeline_app.command("run")
@one_line_errors
def pipeline_run(
    data: Annotated[
        list[Path] | None,
        typer.Option(help="The task's data files (repeat to pool them); default: a synthetic cohort of the task."),
    ] = None,
    task: TaskOption = DEFAULT_TASK,
    as_json: JsonOption = False,
    trigger: Annotated[str, typer.Option(help="What started this run (recorded with it).")] = "manual",
) -> None:
    """validate → train → evaluate → gate → promote → notify, on this machine, for one task."""
    from clinrisk.pipeline.local import run_pipeline
    from clinrisk.runtime import build_ports

    settings = Settings()
    chosen = _task(task)
    paths = data or _default_data(settings, chosen)
    with _stage_display(enabled=True) as on_stage:
        result = run_pipeline(paths, settings, build_ports(settings), trigger=trigger, on_stage=on_stage, task=chosen)
    if as_json:
        _emit_json(result.model_dump(mode="json"))
        return
    from clinrisk.pipeline.reporting import pipeline_summary

    console.print(pipeline_summary(result, chosen.settings(settings)), highlight=False)


@pipeline_app.command("start")
@one_line_errors
def pipeline_start(
    trigger: Annotated[str, typer.Option(help="What started this run: manual, schedule or drift-alarm.")] = "manual",
) -> None:
    """Start the deployed retraining state machine (skipped if a run is already going)."""
    from clinrisk.adapters.aws import step_functions_client
    from clinrisk.pipeline.orchestration import TRIGGERS, start_retraining

    settings = Settings()
    if trigger not in TRIGGERS:
        raise typer.BadParameter(f"trigger must be one of {', '.join(TRIGGERS)}")
    if not settings.state_machine_arn:
        _fail("CLINRISK_STATE_MACHINE_ARN is not set: deploy the CDK app and export its RetrainingStateMachineArn", 2)
        return
    result = start_retraining(step_functions_client(settings), settings.state_machine_arn, trigger=trigger)
    console.print(f"{result.detail}: {result.execution_arn}")


# --------------------------------------------------------------------------- models


def _task_registry(settings: Settings, task: str) -> Registry:
    """The registry of one task: its registered model, aliases and serving pointer."""
    from clinrisk.runtime import build_ports

    chosen = _task(task)
    return build_ports(settings).registry.for_task(chosen.name, chosen.model_name(chosen.settings(settings)))


ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (recorded with who did it in the registry's history).")
]


@dataclass(frozen=True)
class _RecordTable(Generic[_Record]):
    """Records as a JSON list (`--json`) or a table, one row each. `columns` maps each header to how its
    cell reads a record, so a header and its cell cannot drift apart."""

    columns: Mapping[str, Callable[[_Record], str]]
    width: int | None = None

    def show(self, records: Sequence[_Record], *, as_json: bool) -> None:
        if as_json:
            _emit_json([record.model_dump(mode="json") for record in records])
            return
        table = Table(*self.columns)
        for record in records:
            table.add_row(*(cell(record) for cell in self.columns.values()))
        Console(width=self.width).print(table)


_VERSIONS: _RecordTable[VersionInfo] = _RecordTable(
    columns={
        "version": lambda v: str(v.version),
        "aliases": lambda v: ", ".join(v.aliases),
        "gate": lambda v: v.gate_decision or "",
        "test AUC": lambda v: f"{v.metrics.get('test_roc_auc', float('nan')):.4f}",
        "test Brier": lambda v: f"{v.metrics.get('test_brier', float('nan')):.4f}",
        "created (UTC)": lambda v: f"{v.created_at:%Y-%m-%d %H:%M:%S}",
    }
)
_HISTORY: _RecordTable[AuditEntry] = _RecordTable(
    columns={
        "when (UTC)": lambda entry: f"{entry.at:%Y-%m-%d %H:%M:%S}",
        "action": lambda entry: entry.action,
        "version": lambda entry: str(entry.version),
        "was": lambda entry: "" if entry.previous is None else str(entry.previous),
        "who": lambda entry: entry.actor,
        "reason": lambda entry: entry.reason,
    },
    width=200,
)


@models_app.command("list")
@one_line_errors
def models_list(task: TaskOption = DEFAULT_TASK, as_json: JsonOption = False) -> None:
    """Registered versions of a task with their aliases, gate decision and test metrics."""
    _VERSIONS.show(_task_registry(Settings(), task).versions(), as_json=as_json)


def _operator_change(task: str, reason: str) -> tuple[Registry, dict[str, str]]:
    """The task's registry, and the `reason` and `actor` an operator's change of champion is recorded with."""
    from clinrisk.adapters.aws import acting_principal

    settings = Settings()
    if not reason.strip():
        raise typer.BadParameter("give a reason: it is recorded with who did it", param_hint="--reason")
    return _task_registry(settings, task), {"reason": reason.strip(), "actor": acting_principal(settings)}


@models_app.command("promote")
@one_line_errors
def models_promote(
    version: Annotated[int, typer.Argument(help="Version to make champion.")],
    reason: ReasonOption,
    task: TaskOption = DEFAULT_TASK,
) -> None:
    """Make VERSION the champion (an operator's decision; the gate is not consulted)."""
    registry, who = _operator_change(task, reason)
    pointer = registry.promote_manually(version, **who)
    console.print(f"champion is now version {pointer.version} (was {pointer.previous_version})")


@models_app.command("rollback")
@one_line_errors
def models_rollback(reason: ReasonOption, task: TaskOption = DEFAULT_TASK) -> None:
    """Reinstate the previous champion and point serving back at it."""
    registry, who = _operator_change(task, reason)
    pointer = registry.rollback(**who)
    console.print(f"rolled back: champion is now version {pointer.version} (was {pointer.previous_version})")


@models_app.command("history")
@one_line_errors
def models_history(task: TaskOption = DEFAULT_TASK, as_json: JsonOption = False) -> None:
    """Every change of a task's champion: when, what, which version, who and why."""
    _HISTORY.show(_task_registry(Settings(), task).audit_trail(), as_json=as_json)


class ChallengerMode(StrEnum):
    canary = "canary"
    shadow = "shadow"
    off = "off"


@models_app.command("challenger")
@one_line_errors
def models_challenger(
    mode: Annotated[
        ChallengerMode,
        typer.Argument(help="canary: answers a share of requests; shadow: scored, never returned; off: end the trial."),
    ],
    version: Annotated[int | None, typer.Argument(help="Version to serve beside the champion (not for `off`).")] = None,
    fraction: Annotated[float, typer.Option(help="Canary share of requests, strictly between 0 and 1.")] = 0.1,
) -> None:
    """Serve a version beside the champion, e.g. `clinrisk models challenger canary 3 --fraction 0.1`.
    Promoting a new champion ends the trial."""
    from clinrisk.runtime import build_ports

    registry = build_ports(Settings()).registry
    if mode is ChallengerMode.off:
        registry.end_challenger()
        console.print("no challenger: the champion answers every request")
        return
    if version is None:
        raise typer.BadParameter("give the VERSION to serve as the challenger")
    canary = mode is ChallengerMode.canary
    route = registry.route_challenger(
        version, mode="canary" if canary else "shadow", fraction=fraction if canary else 0
    )
    assert route.challenger is not None
    share = f" for {route.challenger.fraction:.0%} of requests" if canary else ""
    console.print(f"version {version} is the {mode.value} challenger{share}; champion {route.version} answers the rest")


# --------------------------------------------------------------------------- score (batch)


@app.command("score")
@one_line_errors
def score(
    source: Annotated[Path, typer.Argument(help="Encounters: CSV or Parquet, UCI schema (`readmitted` ignored).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="CSV or Parquet file to write (by its suffix).")],
    strict: Annotated[bool, typer.Option(help="Any invalid row is fatal: report, write nothing, exit 2.")] = False,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read, checked and scored at a time.")] = 5000,
    factors: Annotated[int, typer.Option(min=0, max=28, help="Top risk factors per row (slower); 0: none.")] = 0,
    *,
    task_name: Annotated[
        str,
        typer.Option(
            "--task", help="The task to score for: readmission, a task of CLINRISK_TASKS_DIR (or tasks/), or a file."
        ),
    ] = DEFAULT_TASK,
) -> None:
    """Score a file with the champion model, as the prediction API would: one output row per valid input row.

    Columns: encounter_id, patient_nbr, probability, band, model_version, and factor_1..K with --factors K.
    For another task (--task): its record id, probability, band, model_version and factor_1..K; the
    file is one of the task's data files (its target may be blank).

    Invalid rows are not scored; they are reported by row number and reason, never by value.

    Unknown categories are rejected, as by the API (not mapped to "other"): such a row is invalid.
    """
    from rich.progress import MofNCompleteColumn, Progress

    from clinrisk.batch.local import BatchRejectedError, load_champion, score_file
    from clinrisk.runtime import build_capturer, build_store
    from clinrisk.serving.scoring import Bands

    settings = Settings()
    if task_name != DEFAULT_TASK:
        _score_task(settings, task_name, source, output, strict=strict, factors=factors)
        return
    model = load_champion(build_store(settings))
    capture = build_capturer(settings)
    columns = (*Progress.get_default_columns(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(f"scoring with model version {model.version}", total=None)
        try:
            report = score_file(
                source, output, model=model, bands=Bands.from_settings(settings), chunk_rows=chunk_rows,
                top_k=factors, strict=strict, on_progress=lambda rows: bar.advance(task, rows),
                on_start=lambda rows: bar.update(task, total=rows), capture=capture,
            )  # fmt: skip
        except BatchRejectedError as error:
            _batch_rejected(error)
    _batch_done(report, capture, output)


def _batch_rejected(error: BatchRejectedError) -> None:
    console.print(error.report.summary(), highlight=False, markup=False)
    _fail(str(error), EXIT_BAD_INPUT)


def _batch_done(report: BatchReport, capture: Capturer | None, output: Path) -> None:
    if capture is not None:
        capture.flush()
    console.print(f"{report.summary()}\nwrote {report.rows_scored:,} rows to {output}", highlight=False, markup=False)


def _score_task(settings: Settings, task: str, source: Path, output: Path, *, strict: bool, factors: int) -> None:
    from clinrisk.batch.local import BatchRejectedError
    from clinrisk.batch.task_batch import load_task_champion, score_task_file
    from clinrisk.runtime import build_capturer, build_store
    from clinrisk.serving.task_scoring import task_bands
    from clinrisk.taskspec.catalogue import configured_tasks_dir, find_task

    spec = find_task(task, configured_tasks_dir(settings), on_broken=_warn_broken).spec
    if spec.plugins:
        _fail(f"task {spec.name!r} needs its plugins' code: score it by its name", EXIT_BAD_INPUT)
    if factors > len(spec.feature_columns):
        _fail(f"--factors: task {task!r} has {len(spec.feature_columns)} factors", EXIT_BAD_INPUT)
    model = load_task_champion(build_store(settings), spec)
    capture = build_capturer(settings)
    try:
        report = score_task_file(
            spec, source, output, model=model, bands=task_bands(settings, spec), top_k=factors, strict=strict,
            capture=capture,
        )  # fmt: skip
    except BatchRejectedError as error:
        _batch_rejected(error)
    _batch_done(report, capture, output)


# --------------------------------------------------------------------------- token, serve (local API)

token_app = _command_group("token", "Local API bearer tokens (stand-ins for Cognito access tokens).")


@token_app.command("create")
@one_line_errors
def token_create(
    scope: Annotated[list[str], typer.Option("--scope", help="predict, explain or admin; repeat for more.")],
    ttl_minutes: Annotated[int, typer.Option(min=1, max=1440, help="Minutes until the token expires.")] = 60,
    subject: Annotated[str, typer.Option(help="Who the token is for (its `sub` claim).")] = "local-user",
) -> None:
    """Print a signed token on stdout, e.g. T=$(clinrisk token create --scope predict)."""
    from clinrisk.serving.auth import SCOPES, issue_token

    unknown = sorted(set(scope) - set(SCOPES))
    if unknown:
        _fail(f"unknown scope {', '.join(unknown)}; choose from {', '.join(SCOPES)}", EXIT_BAD_INPUT)
    sys.stdout.write(issue_token(scope, subject=subject, ttl_seconds=ttl_minutes * 60) + "\n")


@app.command("serve")
@one_line_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes (one per core for throughput).")] = 1,
) -> None:
    """Serve the prediction API locally: API Gateway + Cognito authorizer in front of the predict Lambda."""
    from clinrisk.local import api_server
    from clinrisk.serving.auth import TokenVerifier

    TokenVerifier.from_settings()  # makes the signing key once, before any worker starts
    try:
        api_server.load_handler(api_server.PREDICT_HANDLER)
    except ImportError as error:
        _fail(f"cannot load the predict handler (lambdas/predict/handler.py): {error}", EXIT_FAILED)
    console.print(f"serving the prediction API on http://{host}:{port} (tokens: clinrisk token create --scope predict)")
    api_server.serve(host=host, port=port, workers=workers)


# --------------------------------------------------------------------------- monitoring

monitor_app = _command_group("monitor", "Drift, estimated and realized performance, alarms.")
outcomes_app = _command_group("outcomes", "Observed outcomes, joined to captured predictions.")
simulate_app = _command_group("simulate", "Synthetic traffic for the local loop.")


def _parse_hours(text: str) -> float:
    units = {"h": 1.0, "d": 24.0, "m": 1 / 60}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise typer.BadParameter("a window like 24h, 7d or 90m") from None


MonitoredTaskOption = Annotated[str | None, typer.Option(help="Task to monitor (default: the configured one).")]


def _monitoring_settings(task: str | None) -> Settings:
    """The settings with `task` (a task's name) as the monitored one."""
    base = Settings()
    return base.model_copy(
        update={"monitoring": base.monitoring.model_copy(update={"task": task or base.monitoring.task})}
    )


@monitor_app.command("run")
@one_line_errors
def monitor_run(
    window: Annotated[str, typer.Option(help="How far back: 24h, 7d, 90m.")] = "24h",
    task: MonitoredTaskOption = None,
    as_json: JsonOption = False,
) -> None:
    """Compare the window's captured predictions of a task with each of its served versions' training
    reference; publish the metrics (local EMF log), update its alarms, and retrain it on a new drift alarm."""
    from clinrisk.data.task_binding import resolve_task
    from clinrisk.local.monitoring import monitor_locally
    from clinrisk.monitoring.window import utc_now
    from clinrisk.pipeline.local import run_pipeline
    from clinrisk.runtime import build_ports

    settings = _monitoring_settings(task)
    monitored = resolve_task(settings.monitoring.task)
    ports = build_ports(settings, echo_notifications=True)
    run = monitor_locally(
        settings, ports, hours=_parse_hours(window), now=utc_now(),
        retrain=lambda: run_pipeline(
            _default_data(settings, monitored), settings, ports, trigger="drift-alarm", task=monitored
        ),
    )  # fmt: skip
    if as_json:
        _emit_json([r.model_dump(mode="json", exclude={"fields"}) for r in run.results])
    for result in run.results:
        if not result.published:
            console.print(f"model v{result.model_version}: nothing published ({result.reason})")
            continue
        drifted = ", ".join(result.drifted_fields) or "none"
        console.print(
            f"model v{result.model_version}: {result.rows:,} records; max field PSI {result.feature_drift:.3f}; "
            f"drifted: {drifted}; score PSI {result.score_psi:.3f}; high-risk {result.high_risk_rate:.1%}; "
            f"estimated AUC {result.estimated_auc:.3f}; attribution NDCG {result.attribution_ndcg:.3f}",
            highlight=False,
        )
    for realized in run.realized:
        console.print(_realized_line(realized), highlight=False)
    for transition in run.transitions:
        console.print(f"alarm {transition.alarm} (v{transition.version}) → {transition.state}")
    if run.retraining is not None:
        outcome = getattr(run.retraining, "outcome", run.retraining)
        console.print(f"retraining {settings.monitoring.task} (drift-alarm): {outcome}")


def _realized_line(realized: RealizedPerformance) -> str:
    def figure(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    gaps = ", ".join(f"{a} {figure(g)}" for a, g in realized.subgroup_auc_gap.items()) or "–"
    return (
        f"model v{realized.model_version} realized on {realized.outcomes:,} outcomes: AUC {figure(realized.auc)};"
        f" observed/expected {figure(realized.observed_to_expected, 2)}; subgroup AUC gap {gaps}"
    )


OutcomesFile = Annotated[
    Path,
    typer.Argument(
        help="CSV with encounter_id and readmitted (<30, >30, NO); for another task, its record id and target columns."
    ),
]


@outcomes_app.command("ingest")
@one_line_errors
def outcomes_ingest(
    path: OutcomesFile,
    task: Annotated[str | None, typer.Option(help="Task the outcomes are of (default: the configured one).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Store observed outcomes, keyed like the captures, and report how many match a captured prediction."""
    from datetime import timedelta

    from clinrisk.capture.keys import IdKeyer, local_key
    from clinrisk.data.task_binding import resolve_task
    from clinrisk.monitoring.outcomes import ingest_outcomes, outcome_task
    from clinrisk.monitoring.window import read_window, utc_now

    settings = _monitoring_settings(task)
    name = settings.monitoring.task
    reader = outcome_task(resolve_task(name))
    now = utc_now()
    start = now - timedelta(days=settings.monitoring.outcome_window_days)
    captured = read_window(settings.captures_root, task=name, start=start, end=now)
    report = ingest_outcomes(
        path, keyer=IdKeyer(local_key(settings.id_key_path)), outcomes_root=settings.outcomes_root,
        captured_keys={k for k in captured.column("record_key").to_pylist() if k}, task=name, now=now,
        reader=reader,
    )  # fmt: skip
    if as_json:
        _emit_json(report.model_dump(mode="json"))
        return
    console.print(
        f"{report.rows_read:,} rows read, {report.rows_stored:,} stored; {report.matched:,} match a captured"
        f" prediction, {report.unmatched:,} match none",
        highlight=False,
    )
    for bad in report.bad_rows:
        listed = ", ".join(map(str, bad.rows))
        console.print(f"- {bad.count:,} rows left out: {bad.reason} (rows {listed})", highlight=False, markup=False)


@monitor_app.command("report")
@one_line_errors
def monitor_report(
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write.")] = Path("report.html"),
    task: MonitoredTaskOption = None,
    window: Annotated[str, typer.Option(help="The monitored window: 24h, 7d, 90m.")] = "24h",
    days: Annotated[int, typer.Option(min=1, max=366, help="Days of estimated and realized AUC.")] = 14,
) -> None:
    """Write one self-contained HTML report of the champion's monitoring (nothing is published or alarmed)."""
    from datetime import timedelta

    from clinrisk.local.monitoring import realized_over_outcome_window
    from clinrisk.monitoring.outcomes import read_outcome_table
    from clinrisk.monitoring.report import daily_performance, render_report
    from clinrisk.monitoring.window import (
        load_reference,
        monitored_versions,
        read_window,
        run_monitor,
        utc_now,
        window_ending,
    )
    from clinrisk.runtime import build_store

    settings = _monitoring_settings(task)
    store, now = build_store(settings), utc_now()
    versions = monitored_versions(store, settings.monitoring.task)
    if not versions:
        _fail(
            f"task {settings.monitoring.task!r} has no champion yet: `clinrisk pipeline run` trains and promotes one",
            EXIT_FAILED,
        )
    champion = versions[0]
    span = window_ending(now, _parse_hours(window))
    name = settings.monitoring.task
    captures = read_window(settings.captures_root, task=name, start=span[0], end=span[1])
    [result] = run_monitor(captures, {champion.version: load_reference(store, champion)}, settings, window=span)
    history = read_window(settings.captures_root, task=name, start=now - timedelta(days=days), end=now)
    performance = daily_performance(history, read_outcome_table(settings.outcomes_root, name), version=champion.version)
    realized = [r for r in realized_over_outcome_window(settings, now=now) if r.model_version == champion.version]
    page = render_report(
        result, performance, threshold=settings.monitoring.psi_threshold, generated=now,
        realized=realized[0] if realized else None,
    )  # fmt: skip
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    console.print(f"wrote {output} ({len(page) / 1024:.0f} KiB; {result.rows:,} records, model v{champion.version})")


@simulate_app.command("traffic")
@one_line_errors
def simulate_traffic(
    *,
    shift: Annotated[str, typer.Option(help="none, older, skilled_nursing, coding_change or lab_missing.")] = "none",
    rows: Annotated[int, typer.Option(min=1, help="Encounters to send.")] = 2000,
    task: Annotated[str | None, typer.Option(help="Task (only the configured one is served locally).")] = None,
    url: Annotated[str, typer.Option(help="The running local API.")] = "http://127.0.0.1:8000",
    per_request: Annotated[int, typer.Option(min=1, max=1000, help="Encounters per request.")] = 50,
    seed: Annotated[int, typer.Option(help="Cohort seed.")] = 2024,
    outcomes: Annotated[Path | None, typer.Option(help="Also write the encounters' outcomes CSV here.")] = None,
) -> None:
    """Send a (shifted) synthetic cohort through the running local API (`clinrisk serve`)."""
    from clinrisk.monitoring.traffic import request_bodies, send, shifted_cohort, write_outcomes
    from clinrisk.serving.auth import issue_token

    settings = Settings()
    if task is not None and task != settings.monitoring.task:
        _fail(f"the local API serves task {settings.monitoring.task!r}, not {task!r}", EXIT_BAD_INPUT)
    try:
        frame = shifted_cohort(shift, rows, seed)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    token = issue_token(["predict"], subject="simulate-traffic", ttl_seconds=3600, settings=settings)
    try:
        statuses = send(url, token, request_bodies(frame, per_request))
    except OSError as error:
        _fail(f"cannot reach the API at {url} ({type(error).__name__}); start it with `clinrisk serve`", EXIT_FAILED)
        return
    if outcomes is not None:
        write_outcomes(frame, outcomes)
    summary = ", ".join(f"{count} × {status}" for status, count in sorted(statuses.items()))
    console.print(f"sent {rows:,} encounters (shift: {shift}) in {sum(statuses.values())} requests: {summary}")
    if set(statuses) - {200}:
        raise typer.Exit(EXIT_FAILED)


# --------------------------------------------------------------------------- rag (explanations, issue 13)

rag_app = _command_group("rag", "Explanations: the knowledge index and the similar-patient index.")


@rag_app.command("ingest")
@one_line_errors
def rag_ingest(
    directory: Annotated[
        Path | None, typer.Argument(help="Folder of knowledge/<task>/*.md documents (default: knowledge/).")
    ] = None,
    prune: Annotated[bool, typer.Option(help="Remove indexed documents that are not in the folder.")] = True,
) -> None:
    """Chunk, embed and index every document; unchanged chunks are not written again."""
    from rich.progress import Progress

    from clinrisk.explain.corpus import load_directory
    from clinrisk.explain.ingest import sync
    from clinrisk.runtime import build_knowledge_index

    settings = Settings()
    folder = directory or settings.explain.knowledge_dir
    if not folder.is_dir():
        _fail(f"{folder} is not a folder of knowledge documents", EXIT_BAD_INPUT)
    documents = load_directory(folder)
    index = build_knowledge_index(settings)
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("ingesting", total=sum(len(d.chunks()) for d in documents))
        results = sync(documents, index, prune=prune, advance=lambda n: progress.advance(task, n))
    seconds = time.perf_counter() - started
    _emit_json(
        {
            "documents": len(documents),
            "written": sum(r.written for r in results),
            "deleted": sum(r.deleted for r in results),
            "unchanged": sum(r.unchanged for r in results),
            "seconds": round(seconds, 3),
        }
    )


@rag_app.command("index-champion")
@one_line_errors
def rag_index_champion(task: TaskOption = DEFAULT_TASK) -> None:
    """Load the task's current champion's similar-patient documents into its index again (promotion does this)."""
    from clinrisk.registry.serving_pointer import pointer_key, read_pointer
    from clinrisk.runtime import build_ports, similar_index_publisher

    settings = Settings()
    name = _task(task).name
    ports = build_ports(settings)
    pointer = read_pointer(ports.store, pointer_key(name))
    if pointer is None:
        _fail(f"no champion of task {name!r} has been promoted yet", EXIT_FAILED)
        return
    similar_index_publisher(settings, ports.store, name)(pointer)
    _emit_json({"indexed_version": pointer.version})


# --------------------------------------------------------------------------- tasks

task_app = _command_group("task", "Task files: draft one from a CSV, check data against one.")


@task_app.command("validate")
@one_line_errors
def task_validate(
    task: Annotated[str, typer.Argument(help="A task file, or the name of a task in CLINRISK_TASKS_DIR (or tasks/).")],
    data: Annotated[list[Path], typer.Argument(help="Data files of the task (several: pooled).")],
    as_json: JsonOption = False,
) -> None:
    """Check data files against a task file and list every problem at once (rows and columns, never values)."""
    _print_validation(_task(task).validate(data), as_json=as_json)


@task_app.command("init")
@one_line_errors
def task_init(
    data: Annotated[Path, typer.Argument(help="A CSV file with one row per record.")],
    *,
    target: Annotated[str, typer.Option("--target", help="The outcome column.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Task file to write (YAML).")],
    positive: Annotated[str | None, typer.Option("--positive", help="The target's positive value.")] = None,
    record_id: Annotated[str | None, typer.Option("--id", help="The record id column (default: row number).")] = None,
    group_id: Annotated[str | None, typer.Option("--group", help="The patient column splits group by.")] = None,
    names: Annotated[
        str | None, typer.Option("--names", help="Column names, comma-separated, for a file with no header.")
    ] = None,
) -> None:
    """Draft a task file from a CSV for a person to review, and list what could not be decided."""
    from clinrisk.local.task_draft import draft_task

    draft = draft_task(
        data,
        target=target,
        positive=positive,
        record_id=record_id,
        group_id=group_id,
        names=names.split(",") if names else None,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(draft.text)
    console.print(f"wrote {output}; to review:", highlight=False)
    for line in draft.undecided:
        console.print(f"- {line}", highlight=False)


if __name__ == "__main__":
    app()
