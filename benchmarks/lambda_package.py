"""Packaging budget of the predict Lambda: build its bundle as a deployment would, then measure it.

    .venv/bin/python benchmarks/lambda_package.py        (or: make lambda-size)

Prints one JSON object: unzipped and zipped size in MiB (AWS's "MB") against Lambda's 250 MB
unzipped limit and our 120 MB target, the largest distributions, any forbidden package found,
and a smoke import of the bundle under CPython 3.12 when this machine has one. Exits 1 when the
bundle is over the limit or holds a forbidden package. Needs a reachable package index.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from clinrisk.packaging import (
    LAMBDA_UNZIPPED_LIMIT_BYTES,
    MIB,
    BundleReport,
    FunctionSpec,
    build_lambda_bundle,
    find_interpreter,
    forbidden_present,
    lambda_runtime_stand_in,
    predict_function,
    smoke_import,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = LAMBDA_UNZIPPED_LIMIT_BYTES // MIB
TARGET_MB = 120
LARGEST = 8


def _smoke(spec: FunctionSpec, bundle: Path, scratch: Path) -> dict[str, Any]:
    interpreter = find_interpreter("3.12")
    if interpreter is None:
        return {"python": None, "ok": False, "note": "no CPython 3.12 on this machine; import not tried"}
    result = smoke_import(
        bundle, interpreter, spec.smoke_modules, runtime_paths=[lambda_runtime_stand_in(scratch / "runtime")]
    )
    return {"python": result.python, "ok": not result.stray, "stray": result.stray}


def summary(spec: FunctionSpec, report: BundleReport, smoke: dict[str, Any]) -> dict[str, Any]:
    unzipped_mb = round(report.unzipped_mib, 1)
    return {
        "function": spec.name,
        "python_version": report.python_version,
        "unzipped_mb": unzipped_mb,
        "zipped_mb": round(report.zipped_mib, 1),
        "limit_mb": LIMIT_MB,
        "target_mb": TARGET_MB,
        "within_limit": report.unzipped_bytes < LAMBDA_UNZIPPED_LIMIT_BYTES,
        "within_target": report.unzipped_bytes < TARGET_MB * MIB,
        "pruned_mb": round(report.pruned_bytes / MIB, 1),
        "build_seconds": report.build_seconds,
        "largest": [{"name": size.name, "mb": round(size.mib, 2)} for size in report.distributions[:LARGEST]],
        "top_level": report.top_level,
        "forbidden_present": forbidden_present(report.root, spec.forbidden),
        "smoke_import": smoke,
    }


def main() -> int:
    spec = predict_function(REPO_ROOT)
    with tempfile.TemporaryDirectory(prefix="lambda-package-") as scratch:
        bundle = Path(scratch) / "bundle"
        report = build_lambda_bundle(spec.requirements, bundle, source_dirs=spec.source_dirs)
        result = summary(spec, report, _smoke(spec, bundle, Path(scratch)))
    print(json.dumps(result, indent=2))
    return 0 if result["within_limit"] and not result["forbidden_present"] else 1


if __name__ == "__main__":
    sys.exit(main())
