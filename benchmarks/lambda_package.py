"""Packaging budget of every Lambda bundle: build each as a deployment would, then measure it.

    .venv/bin/python benchmarks/lambda_package.py [NAME ...]      (or: make lambda-size)

NAME is one of cdk_app.bundling.FUNCTION_SPECS (predict, pipeline = validate + evaluate,
promote); all of them by default. Prints one JSON object with a summary per bundle: unzipped and
zipped size in MiB (AWS's "MB") against Lambda's 250 MB unzipped limit (and predict's 120 MB
target), the largest distributions, any forbidden package found, and a smoke import of the
handlers under CPython 3.12 when this machine has one. Exits 1 when a bundle is over the limit,
holds a forbidden package or fails its smoke import. Needs a reachable package index.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from cdk_app import bundling
from cdk_app.bundling import BundleReport, FunctionSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
LIMIT_MB = bundling.LAMBDA_UNZIPPED_LIMIT_BYTES // bundling.MIB
# Our own budget below AWS's limit, where one was set (issue 3: the predict Lambda).
TARGETS_MB: dict[str, int] = {"predict": 120}
LARGEST = 8


def _smoke(spec: FunctionSpec, bundle: Path, scratch: Path) -> dict[str, Any]:
    interpreter = bundling.find_interpreter("3.12")
    if interpreter is None:
        return {"python": None, "ok": None, "note": "no CPython 3.12 on this machine; import not tried"}
    runtime = bundling.lambda_runtime_stand_in(scratch / f"runtime-{spec.name}")
    try:
        result = bundling.smoke_import(bundle, interpreter, spec.smoke_modules, runtime_paths=[runtime])
    except bundling.BundleBuildError as error:
        return {"python": "3.12", "ok": False, "error": str(error).splitlines()[-1]}
    return {"python": result.python, "ok": not result.stray, "stray": result.stray}


def summary(spec: FunctionSpec, report: BundleReport, smoke: dict[str, Any]) -> dict[str, Any]:
    unzipped_mb = round(report.unzipped_mib, 1)
    target = TARGETS_MB.get(spec.name)
    return {
        "function": spec.name,
        "python_version": report.python_version,
        "unzipped_mb": unzipped_mb,
        "zipped_mb": round(report.zipped_mib, 1),
        "limit_mb": LIMIT_MB,
        "target_mb": target,
        "within_limit": report.unzipped_bytes < bundling.LAMBDA_UNZIPPED_LIMIT_BYTES,
        "within_target": None if target is None else report.unzipped_bytes < target * bundling.MIB,
        "pruned_mb": round(report.pruned_bytes / bundling.MIB, 1),
        "build_seconds": report.build_seconds,
        "largest": [{"name": size.name, "mb": round(size.mib, 2)} for size in report.distributions[:LARGEST]],
        "top_level": report.top_level,
        "forbidden_present": bundling.forbidden_present(report.root, spec.forbidden),
        "smoke_import": smoke,
    }


def measure(spec: FunctionSpec, scratch: Path) -> dict[str, Any]:
    bundle = scratch / spec.name
    report = bundling.build_lambda_bundle(spec.requirements, bundle, source_dirs=spec.source_dirs)
    return summary(spec, report, _smoke(spec, bundle, scratch))


def _passed(result: dict[str, Any]) -> bool:
    return bool(
        result["within_limit"] and not result["forbidden_present"] and result["smoke_import"]["ok"] is not False
    )


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(bundling.FUNCTION_SPECS)
    unknown = sorted(set(names) - set(bundling.FUNCTION_SPECS))
    if unknown:
        print(json.dumps({"error": f"unknown bundle(s): {', '.join(unknown)}", "known": list(bundling.FUNCTION_SPECS)}))
        return 2
    with tempfile.TemporaryDirectory(prefix="lambda-package-") as scratch:
        results = [measure(bundling.FUNCTION_SPECS[name](REPO_ROOT), Path(scratch)) for name in names]
    print(json.dumps({"limit_mb": LIMIT_MB, "bundles": results}, indent=2))
    return 0 if all(_passed(result) for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
