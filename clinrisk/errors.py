"""clinrisk's own exceptions.

Messages name files, columns, counts and row numbers, never a cell value: a cell holds
patient data, and exception messages end up in logs.
"""

from __future__ import annotations

from typing import Generic, TypeVar

ReportT = TypeVar("ReportT")


class ClinriskError(Exception):
    """Base of every error clinrisk raises on purpose."""


class ReportedError(ClinriskError, Generic[ReportT]):
    """An error that carries the report of what went wrong, and `message(report)` for its text.

    It is rebuilt from the report, not the message, so it survives pickling (multiprocessing,
    subprocess runners) with its report.
    """

    def __init__(self, report: ReportT) -> None:
        super().__init__(self.message(report))
        self.report = report

    @staticmethod
    def message(report: ReportT) -> str:
        raise NotImplementedError

    def __reduce__(self) -> tuple[type[ReportedError[ReportT]], tuple[ReportT]]:
        return (type(self), (self.report,))


class DataFileError(ClinriskError):
    """A data file is missing, empty, corrupt or of an unknown type."""


class ConfigurationError(ClinriskError):
    """A setting the deployment needs is missing or invalid; the message names the setting."""
