"""`clinrisk task init`: draft a task file from a CSV, for a person to review.

What it infers, column by column (after dropping the missing markers it finds):
- only 0/1 (or true/false, yes/no) -> boolean;
- numbers with at most `MAX_CODES` distinct whole values -> categorical, codes labelled by themselves;
- other numbers -> numeric, range = the observed min and max, unit unknown; a 0 in a column whose
  other values are all at least `ZERO_GAP` reads as "not recorded" and becomes a missing value;
- text with at most `MAX_CODES` distinct values -> categorical; other text (names, notes, dates)
  cannot be a feature and is left out;
- the --id and --group columns -> identifier; a target with a threshold -> numeric.
A file of fewer than `SMALL_FILE_ROWS` rows gets shallower, more regularised trees under `training:`.
Everything it guessed or could not decide is returned as `undecided`, one line each, and the
draft is checked by the task file loader before it is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from clinrisk.errors import DataFileError
from clinrisk.taskspec.spec import normalise_code, parse_task

MISSING_CANDIDATES = ("?", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None", "-", "")
BOOLEAN_WORDS = ({"0", "1"}, {"false", "true"}, {"no", "yes"}, {"n", "y"})
MAX_CODES = 12
ZERO_GAP = 20.0
ROW_ID = "row_id"
# Below this many rows the trainer's defaults (chosen on 100k readmission rows: min_child_weight 50)
# cannot split at all; these are the settings the heart-disease task chose by CV on 303 rows.
SMALL_FILE_ROWS = 5000
SMALL_FILE_TRAINING = {"max_depth": 3, "min_child_weight": 3, "reg_lambda": 5}


@dataclass(frozen=True)
class Draft:
    text: str
    undecided: list[str]


def draft_task(
    path: Path,
    *,
    target: str,
    positive: str | None = None,
    record_id: str | None = None,
    group_id: str | None = None,
    names: list[str] | None = None,
) -> Draft:
    raw, header = _read(path, names)
    undecided: list[str] = []
    if not header:
        undecided.append(
            "the file has no header: columns are named in the order given by --names"
            if names
            else f"the file has no header: columns are named col1..col{raw.shape[1]}; rename them"
        )
    for name in (target, record_id, group_id):
        if name is not None and name not in raw.columns:
            raise DataFileError(f"{path}: no column {name!r} (columns: {', '.join(raw.columns)})")
    markers = sorted({cell for cell in MISSING_CANDIDATES if raw.isin([cell]).any().any()})
    ids = {record_id, group_id} - {None}
    target_rule = _target(raw[target], markers, positive, undecided)
    numeric_target = target if "positive_if" in target_rule else None
    columns, ignored = _columns(raw, markers, ids=ids, numeric_target=numeric_target, header=header, notes=undecided)
    document: dict[str, Any] = {
        "name": _task_name(path),
        "description": f"TODO: what the task predicts (drafted from {path.name})",
        "record_id": record_id or ROW_ID,
        "group_id": group_id or record_id or ROW_ID,
        "target": target_rule,
        "source": {
            "header": header,
            **({} if record_id else {"row_id": ROW_ID}),
            **({"ignore": ignored} if ignored else {}),
        },
        "missing_markers": markers or [""],
        "columns": columns,
        "model_card": {"intended_use": "TODO", "population": "TODO", "limitations": []},
    }
    if len(raw) < SMALL_FILE_ROWS:
        document["training"] = SMALL_FILE_TRAINING
        undecided.append(f"{len(raw)} rows: shallow trees written under training: (tune them by cross-validation)")
    if record_id is None:
        undecided.append(f"no --id: the loader numbers the rows ({ROW_ID}), and each row is taken to be one patient")
    elif group_id is None:
        undecided.append(f"no --group: splits group by {record_id}, so each row is taken to be one patient")
    undecided.append("description and model_card are placeholders (TODO)")
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    parse_task(text, source="the draft")  # a draft that does not load is a bug here, not the user's
    return Draft(text=text, undecided=undecided)


def _columns(
    raw: pd.DataFrame,
    markers: list[str],
    *,
    ids: set[str | None],
    numeric_target: str | None,
    header: bool,
    notes: list[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The declared columns and, for a file with a header, the columns left out; notes are appended to."""
    columns: list[dict[str, Any]] = []
    ignored: list[str] = []
    for name in raw.columns:
        if name in ids:
            columns.append({"name": name, "type": "identifier"})
            continue
        cells = raw[name]
        column: dict[str, Any] | None
        if name == numeric_target:
            column, found = _numeric(name, pd.to_numeric(cells[~cells.isin(markers)]), whole=True)
        else:
            column, found = _infer_column(str(name), cells, markers)
        notes += found
        if column is not None:
            columns.append(column)
        elif header:
            ignored.append(str(name))
        else:  # a file without a header must declare every field: as text that is never a feature
            columns.append({"name": name, "type": "identifier", "description": "not used"})
    return columns, ignored


def _read(path: Path, names: list[str] | None) -> tuple[pd.DataFrame, bool]:
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataFileError(f"{path}: cannot be read as a CSV file ({type(error).__name__})") from None
    first = raw.iloc[0].str.strip()
    header = not all(_is_number(cell) or cell in MISSING_CANDIDATES for cell in first)
    if header:
        raw = raw.iloc[1:].reset_index(drop=True)
        raw.columns = pd.Index(names or [cell or f"col{i + 1}" for i, cell in enumerate(first)])
    else:
        raw.columns = pd.Index(names or [f"col{i + 1}" for i in range(raw.shape[1])])
    if names and len(names) != raw.shape[1]:
        raise DataFileError(f"{path}: --names gives {len(names)} names for {raw.shape[1]} columns")
    return raw.apply(lambda column: column.str.strip()), header


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _infer_column(name: str, cells: pd.Series, markers: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
    present = cells[~cells.isin(markers)]
    if present.empty:
        return None, [f"{name}: every cell is missing; left out"]
    numbers = pd.to_numeric(present, errors="coerce")
    numeric = bool(numbers.notna().all())
    distinct = sorted({normalise_code(cell) for cell in present}, key=_code_order)
    if {value.lower() for value in distinct} in BOOLEAN_WORDS:
        return {"name": name, "type": "boolean"}, []
    whole = numeric and bool((numbers == numbers.round()).all())
    if len(distinct) <= MAX_CODES and (whole or not numeric):
        codes = {value: value for value in distinct}
        return {"name": name, "type": "categorical", "codes": codes}, [
            f"{name}: categorical with {len(distinct)} codes, labelled by themselves; give them labels"
            + ("; or make it numeric if the codes are counts or an ordered scale" if numeric else "")
        ]
    if not numeric:
        return None, [f"{name}: text with {len(distinct)} distinct values; not a feature, left out"]
    return _numeric(name, numbers, whole)


def _numeric(name: str, numbers: pd.Series, whole: bool) -> tuple[dict[str, Any], list[str]]:
    column: dict[str, Any] = {"name": name, "type": "numeric", "unit": "TODO", "integer": whole}
    notes = [f"{name}: numeric, unit unknown; range is the observed min and max, widen it to plausible limits"]
    nonzero = numbers[numbers != 0]
    if (numbers == 0).any() and not nonzero.empty and nonzero.min() >= ZERO_GAP:
        column["missing_values"] = [0]
        notes.append(f"{name}: 0 read as 'not recorded' (the other values are all {ZERO_GAP:g} or more); check")
        numbers = nonzero
    column["range"] = {"min": _plain(numbers.min()), "max": _plain(numbers.max())}
    return column, notes


def _target(cells: pd.Series, markers: list[str], positive: str | None, undecided: list[str]) -> dict[str, Any]:
    name = str(cells.name)
    if positive is not None:
        return {"column": name, "positive": [normalise_code(positive)]}
    values = {normalise_code(cell) for cell in cells[~cells.isin(markers)]}
    if values <= {"0", "1"}:
        return {"column": name, "positive": ["1"]}
    numbers = pd.to_numeric(pd.Series(sorted(values)), errors="coerce")
    if numbers.notna().all() and numbers.min() == 0:
        undecided.append(f"target {name}: {len(values)} values from 0; positive taken as '> 0'; check")
        return {"column": name, "positive_if": "> 0"}
    raise DataFileError(f"target {name!r}: cannot tell the positive class; give --positive")


def _code_order(code: str) -> tuple[int, float, str]:
    return (0, float(code), "") if _is_number(code) else (1, 0.0, code)


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


_DATA_SUFFIXES = (".gz", ".csv", ".tsv", ".txt", ".data", ".dat")


def _task_name(path: Path) -> str:
    """The file's name without its data suffixes, in words joined by '-' (`processed.cleveland.data`
    -> `processed-cleveland`): the name keys the registered model, so sites must not collapse into one."""
    name = path.name.lower()
    while name.endswith(_DATA_SUFFIXES):
        name = name.rsplit(".", 1)[0]
    words = "".join(char if char.isalnum() else " " for char in name).split()
    stem = "-".join(words)
    return stem if stem and stem[0].isalpha() else f"task-{stem}"
