"""Monitoring figures (issue 12), printed as one JSON document:

    .venv/bin/python benchmarks/monitoring.py [--home DIR --cohort FILE] [--windows N] [--auc-only]

1. `false_alarms`: windows drawn from the training distribution (a fresh synthetic cohort of the
   same generator), at the default minimum window and at 2,000 records: the share in which the
   monitor flags any field (the FeatureDrift alarm's decision). Goal ≤ 2% over ≥ 50 windows.
2. `detection`: the same for each named shift (`clinrisk.tasks.readmission.shifts`). Goal ≥ 95%.
3. `smallest_window`: per shift, the smallest window size (of a ladder) detected in ≥ 95% of windows.
4. `estimated_vs_realized_auc`: CBPE's expected AUC against the realized AUC on covariate-shifted
   windows of 2,000, `--windows` per shift (goal |error| ≤ 0.02). `--auc-only` prints this figure alone.
5. `monitor_run_1m`: `read_window` + `run_monitor` over 1,000,000 captured records in the local
   Parquet layout, in a fresh process: seconds and peak RSS (goal ≤ 30 s, ≤ 1 GiB).
6. `capture_overhead`: the in-process predict handler (one encounter, top-5 factors), p50/p99
   with capture off and on, interleaved in one run (goal ≤ 0.2 ms added at p50).

The model is the champion of a pipeline run on a 20,000-row synthetic cohort (made in a scratch
home without `--home`), with its monitoring reference from the training job.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "benchmarks")]

import serving as serving_bench  # noqa: E402  (benchmarks/serving.py: the home and the handler events)

POPULATION = 50_000
LADDER = (50, 100, 200, 300, 500, 1000, 2000)
LADDER_WINDOWS = 20
SHIFT_NAMES = ("older", "skilled_nursing", "coding_change", "lab_missing")
TARGETS = {"false_alarm_rate": 0.02, "detection_rate": 0.95, "auc_error": 0.02, "run_seconds": 30, "run_gib": 1.0,
           "capture_p50_ms": 0.2}  # fmt: skip


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _settings(home: Path) -> Any:
    os.environ["CLINRISK_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    from clinrisk.settings import Settings

    return Settings()


def _champion(settings: Any) -> tuple[Any, Any]:
    from clinrisk.batch.local import load_champion
    from clinrisk.monitoring.window import load_reference, monitored_versions
    from clinrisk.runtime import build_store

    store = build_store(settings)
    files = monitored_versions(store)[0]
    reference = load_reference(store, files)
    if reference is None:
        raise SystemExit("the champion has no monitoring reference (trained before capture existed)")
    return load_champion(store), reference


def population_table(model: Any, frame: Any, *, top_k: int = 0) -> tuple[Any, np.ndarray]:
    """Every encounter of `frame` scored by `model` as capture rows (one Arrow table), and the labels."""
    from clinrisk.capture.local_sink import scored_table
    from clinrisk.monitoring.reference import plain_value
    from clinrisk.serving.scoring import Bands
    from clinrisk.tasks.readmission.features import prior_encounter_counts
    from clinrisk.tasks.readmission.schema import POSITIVE_LABEL

    labels = (frame["readmitted"] == POSITIVE_LABEL).to_numpy()
    priors = prior_encounter_counts(frame).astype(int).tolist()
    records = [
        {k: plain_value(v) for k, v in row.items()} for row in frame.drop(columns=["readmitted"]).to_dict("records")
    ]
    scored = model.score(records, priors, bands=Bands(0.1, 0.2), top_k=top_k)
    common = {"task": "readmission", "model_version": model.version, "date": "", "captured_at": 0.0,
              "request_id": "bench", "source": "api", "role": "answer"}  # fmt: skip
    return scored_table(records, priors, scored, common=common), labels


def _window(table: Any, size: int, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    index = rng.choice(table.num_rows, size=size, replace=False)
    return table.take(index), index


def _flagged(window: Any, reference: Any, rules: Any) -> bool:
    from clinrisk.monitoring.monitor import monitor_window

    now = datetime.now(UTC)
    result = monitor_window(window, reference, rules, task="readmission", version=1, window=(now, now))
    return result.drift


def drift_rates(tables: dict[str, Any], reference: Any, settings: Any, windows: int) -> dict[str, Any]:
    rules = settings.monitoring
    ladder_rules = rules.model_copy(update={"min_window": min(LADDER)})
    rng = np.random.default_rng(12)
    sizes = sorted({rules.min_window, 2000})
    out: dict[str, Any] = {"false_alarms": {}, "detection": {}, "smallest_window": {}}
    for size in sizes:
        flags = [_flagged(_window(tables["none"], size, rng)[0], reference, rules) for _ in range(windows)]
        out["false_alarms"][str(size)] = {"windows": windows, "flagged": sum(flags), "rate": sum(flags) / windows}
    for name in SHIFT_NAMES:
        out["detection"][name] = {}
        for size in sizes:
            flags = [_flagged(_window(tables[name], size, rng)[0], reference, rules) for _ in range(windows)]
            out["detection"][name][str(size)] = {"windows": windows, "rate": sum(flags) / windows}
        smallest = None
        for size in LADDER:
            flags = [
                _flagged(_window(tables[name], size, rng)[0], reference, ladder_rules) for _ in range(LADDER_WINDOWS)
            ]
            if sum(flags) / LADDER_WINDOWS >= TARGETS["detection_rate"]:
                smallest = size
                break
        out["smallest_window"][name] = {"size": smallest, "windows_per_size": LADDER_WINDOWS, "ladder": list(LADDER)}
    return out


def auc_error(tables: dict[str, Any], labels: dict[str, np.ndarray], windows: int) -> dict[str, Any]:
    from clinrisk.evaluation.metrics import roc_auc
    from clinrisk.monitoring.stats import expected_auc

    rng = np.random.default_rng(13)
    per_shift: dict[str, Any] = {}
    errors_all: list[float] = []
    for name in (*SHIFT_NAMES, "none"):  # "none" (no shift) last, apart from the goal's figures, as a control
        errors = []
        for _ in range(windows):
            window, index = _window(tables[name], 2000, rng)
            p = window.column("probability").to_numpy()
            errors.append(expected_auc(p) - roc_auc(labels[name][index], p))
        errors_all += errors if name != "none" else []
        per_shift[name] = {
            "mean_abs_error": float(np.mean(np.abs(errors))),
            "p90_abs_error": float(np.quantile(np.abs(errors), 0.9)),
            "bias": float(np.mean(errors)),
        }
    return {
        "window": 2000,
        "windows_per_shift": windows,
        "mean_abs_error": float(np.mean(np.abs(errors_all))),
        "p90_abs_error": float(np.quantile(np.abs(errors_all), 0.9)),
        "share_within_0_02": float(np.mean(np.abs(errors_all) <= 0.02)),
        "per_shift": per_shift,
    }


# --------------------------------------------------------------------------- 1M records


def write_million(root: Path, table: Any, factors_table: Any, rows: int, now: datetime) -> None:
    """`rows` records in the local capture layout, spread over the 23 hours before `now`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clinrisk.capture.local_sink import arrow_schema

    factors = factors_table.column("factors")
    repeats = -(-rows // table.num_rows)
    tiled = pa.concat_tables([table] * repeats).slice(0, rows)
    tiled = tiled.set_column(
        tiled.schema.get_field_index("factors"), "factors",
        pa.chunked_array([factors.take(np.arange(rows) % factors_table.num_rows).combine_chunks()]),
    )  # fmt: skip
    times = now.timestamp() - np.linspace(23 * 3600, 60, rows)
    tiled = tiled.set_column(tiled.schema.get_field_index("captured_at"), "captured_at", pa.array(times))
    schema = arrow_schema()
    for start in range(0, rows, 100_000):
        part = tiled.slice(start, 100_000)
        day = datetime.fromtimestamp(float(part.column("captured_at")[0].as_py()), UTC).strftime("%Y-%m-%d")
        directory = root / "task=readmission" / f"date={day}" / f"model_version={table.column('model_version')[0]}"
        directory.mkdir(parents=True, exist_ok=True)
        pq.write_table(part.select(schema.names).cast(schema), directory / f"part-{start}.parquet")


def measure_run(root: Path, home: Path, hours: float) -> dict[str, Any]:
    """In this (fresh) process: read the window and monitor it; seconds and peak RSS."""
    settings = _settings(home)
    from clinrisk.monitoring.window import read_window, run_monitor, utc_now

    _, reference = _champion(settings)
    started = time.perf_counter()
    now = utc_now()
    captures = read_window(root, task="readmission", start=now - timedelta(hours=hours), end=now)
    version = int(captures.column("model_version")[0].as_py())
    results = run_monitor(captures, {version: reference}, settings, window=(now - timedelta(hours=hours), now))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"records": captures.num_rows, "seconds": round(seconds, 2), "peak_rss_gib": round(peak / 2**30, 3),
            "published": results[0].published}  # fmt: skip


# --------------------------------------------------------------------------- capture overhead


def capture_overhead(home: Path, cohort: Path, requests: int) -> dict[str, Any]:
    from clinrisk.runtime import build_capturer
    from lambdas.predict import handler as module  # type: ignore[import-not-found, unused-ignore]
    from lambdas.predict import routes  # type: ignore[import-not-found, unused-ignore]

    settings = _settings(home)
    pool = serving_bench.encounters(cohort, 200)
    prepared = [serving_bench._event(serving_bench.predict_body(e)) for e in pool]
    base = dataclasses.replace(routes.serving(), capture=None)
    captured = dataclasses.replace(base, capture=build_capturer(settings))
    times: dict[str, list[float]] = {"off": [], "on": []}
    statuses: set[int] = set()
    for i in range(requests * 2 + 400):
        mode = "on" if (i // 50) % 2 else "off"  # alternate in blocks of 50, so both see the same machine
        chosen = captured if mode == "on" else base
        routes.serving = lambda chosen=chosen: chosen  # type: ignore[assignment]
        event, context = prepared[i % len(prepared)]
        started = time.perf_counter()
        response = module.handler(event, context)
        elapsed = time.perf_counter() - started
        statuses.add(response["statusCode"])
        if i >= 400:  # warm-up
            times[mode].append(elapsed)
    assert captured.capture is not None
    captured.capture.flush()

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50_ms": round(1000 * statistics.median(values), 4),
                "p99_ms": round(1000 * float(np.quantile(values, 0.99)), 4)}  # fmt: skip

    off, on = summary(times["off"]), summary(times["on"])
    return {
        "requests_each": len(times["on"]),
        "statuses": sorted(statuses),
        "off": off,
        "on": on,
        "added_p50_ms": round(on["p50_ms"] - off["p50_ms"], 4),
        "added_p99_ms": round(on["p99_ms"] - off["p99_ms"], 4),
        "captured": dataclasses.asdict(captured.capture.stats),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path)
    parser.add_argument("--cohort", type=Path)
    parser.add_argument("--windows", type=int, default=60)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--auc-only", action="store_true", help="only the estimated-against-realized AUC figure")
    parser.add_argument("--measure-run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_run:
        print(json.dumps(measure_run(args.measure_run, args.home, 24.0)))
        return 0
    scratch = Path(tempfile.mkdtemp(prefix="clinrisk-bench-monitoring-"))
    home, cohort, prepared = args.home, args.cohort, None
    if home is None:
        home = scratch / "home"
        with contextlib.redirect_stdout(io.StringIO()):
            prepared = serving_bench.prepare_home(home, scratch)
        cohort = Path(prepared["cohort"])
    settings = _settings(home)
    from clinrisk.tasks.readmission.shifts import SHIFTS
    from clinrisk.tasks.readmission.synth import generate_cohort

    model, reference = _champion(settings)
    population = generate_cohort(POPULATION, seed=99)
    tables, labels = {}, {}
    for name in ("none", *SHIFT_NAMES):
        _say(f"scoring the population: {name}")
        tables[name], labels[name] = population_table(model, SHIFTS[name](population, np.random.default_rng(5)))
    report: dict[str, Any] = {"model_version": model.version, "reference_rows": reference.rows,
                              "min_window": settings.monitoring.min_window, "targets": TARGETS}  # fmt: skip
    if args.auc_only:
        report["estimated_vs_realized_auc"] = auc_error(tables, labels, args.windows)
        print(json.dumps(report, indent=2))
        return 0
    _say("false alarms and detection")
    report |= drift_rates(tables, reference, settings, args.windows)
    _say("estimated against realized AUC")
    report["estimated_vs_realized_auc"] = auc_error(tables, labels, args.windows)
    factors, _ = population_table(model, generate_cohort(20_000, seed=98), top_k=settings.serving.top_factors)
    _say("1M records")
    root = scratch / "captures"
    write_million(root, tables["none"], factors, args.records, datetime.now(UTC))
    run = subprocess.run(
        [sys.executable, __file__, "--measure-run", str(root), "--home", str(home)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    report["monitor_run_1m"] = json.loads(run.stdout.strip().splitlines()[-1])
    _say("capture overhead")
    with contextlib.redirect_stdout(io.StringIO()):
        report["capture_overhead"] = capture_overhead(home, cohort, args.requests)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
