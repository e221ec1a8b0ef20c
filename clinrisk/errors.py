"""clinrisk's own exceptions.

Messages name files, columns, counts and row numbers, never a cell value: a cell holds
patient data, and exception messages end up in logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clinrisk.validation import ValidationReport


class ClinriskError(Exception):
    """Base of every error clinrisk raises on purpose."""


class DataFileError(ClinriskError):
    """A data file is missing, empty, corrupt or of an unknown type."""


class DataValidationError(ClinriskError):
    """A table of encounters breaks the schema; `report` lists every problem."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(f"data validation failed: {report.brief()}")
        self.report = report

    def __reduce__(self) -> tuple[type[DataValidationError], tuple[ValidationReport]]:
        # Rebuild from the report, not the message, so the error survives pickling
        # (multiprocessing, subprocess runners).
        return (type(self), (self.report,))
