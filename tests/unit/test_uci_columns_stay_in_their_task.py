"""Nothing outside the readmission task package names a UCI column (issue 14 part 3): a scan of every
string literal in the deployed code for the schema's column names.

Every straggler is now behind the task port. `NAMES_THAT_ARE_NOT_COLUMNS` lists the literals that
only share a column's spelling, file by file: a new literal anywhere fails, and so does an entry that
is no longer true.
"""

from __future__ import annotations

import ast
from pathlib import Path

from clinrisk.tasks.readmission.schema import COLUMN_NAMES

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("clinrisk", "lambdas", "sagemaker_jobs", "rag_ingest", "cdk_app")
TASK_PACKAGE = ROOT / "clinrisk" / "tasks" / "readmission"

NAMES_THAT_ARE_NOT_COLUMNS: dict[str, set[str]] = {
    # Not the column: the field of a knowledge-document change event.
    "rag_ingest/handler.py": {"change"},
}


def uci_literals(root: Path = ROOT, tops: tuple[str, ...] = SCANNED) -> dict[str, set[str]]:
    names = set(COLUMN_NAMES)
    found: dict[str, set[str]] = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            if path.is_relative_to(TASK_PACKAGE):
                continue
            literals = {
                node.value
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names
            }
            if literals:
                found[path.relative_to(root).as_posix()] = literals
    return found


def test_no_uci_column_is_named_outside_its_task_package_beyond_the_known_stragglers() -> None:
    assert uci_literals() == NAMES_THAT_ARE_NOT_COLUMNS


def test_the_scan_finds_a_column_name_written_as_a_literal_even_inside_an_f_string(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "straggler.py").write_text("print(f\"{frame['patient_nbr'].nunique()} patients\")\n")
    (tmp_path / "pkg" / "clean.py").write_text('KEY = "patient"\n')
    assert uci_literals(tmp_path, ("pkg",)) == {"pkg/straggler.py": {"patient_nbr"}}
