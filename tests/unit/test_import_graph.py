"""The import graph: no cycle anywhere, and `clinrisk.serving` light at module level.

grimp (import-linter's graph library) reads every import statement, those inside functions and
those behind `TYPE_CHECKING` included (build_graph's `exclude_type_checking_imports` is False by
default); the first tests show it on a package made for the purpose, so a cycle of either kind
cannot hide from the check on the real packages.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

import clinrisk.serving

PACKAGES = ("clinrisk", "lambdas", "sagemaker_jobs", "cdk_app")
# What the predict Lambda's bundle does not hold, or must not load on a cold start.
HEAVY = ("pandas", "xgboost", "scipy", "shap", "sklearn", "mlflow", "boto3")


def import_cycles(graph: grimp.ImportGraph) -> list[tuple[str, ...]]:
    """One shortest cycle through each import that lies on a cycle (a → b with a chain b → … → a)."""
    cycles = set()
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:  # imported → … → importer, closed by importer → imported
                at = back.index(min(back))  # the same cycle, whichever of its imports found it
                cycles.add((*back[at:], *back[:at], min(back)))
    return sorted(cycles)


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _graph_of(root: Path, package: str, monkeypatch: pytest.MonkeyPatch) -> grimp.ImportGraph:
    monkeypatch.syspath_prepend(str(root))
    return grimp.build_graph(package, cache_dir=None)


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(
        tmp_path,
        {
            "cyclefn/__init__.py": "",
            "cyclefn/a.py": "import cyclefn.b\n",
            "cyclefn/b.py": "def later() -> None:\n    import cyclefn.a\n",
        },
    )
    assert import_cycles(_graph_of(tmp_path, "cyclefn", monkeypatch)) == [("cyclefn.a", "cyclefn.b", "cyclefn.a")]


def test_a_cycle_behind_type_checking_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(
        tmp_path,
        {
            "cycletc/__init__.py": "",
            "cycletc/a.py": "from cycletc.b import B\n",
            "cycletc/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cycletc.a import A\nB = 1\n",
        },
    )
    assert import_cycles(_graph_of(tmp_path, "cycletc", monkeypatch)) == [("cycletc.a", "cycletc.b", "cycletc.a")]


def test_no_import_cycle_in_the_repository() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert import_cycles(graph) == []


def test_serving_loads_no_heavy_library_at_module_level() -> None:
    """What the `serving-light` import contract cannot see (it ignores two function-level and
    TYPE_CHECKING edges): importing every serving module, in a fresh interpreter, loads none of them."""
    modules = sorted(info.name for info in pkgutil.walk_packages(clinrisk.serving.__path__, "clinrisk.serving."))
    assert "clinrisk.serving.prediction" in modules
    script = (
        f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(n for n in {HEAVY!r} if n in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
