"""clinrisk's own exceptions.

Messages name files, columns, counts and row numbers, never a cell value: a cell holds
patient data, and exception messages end up in logs.
"""

from __future__ import annotations


class ClinriskError(Exception):
    """Base of every error clinrisk raises on purpose."""


class DataFileError(ClinriskError):
    """A data file is missing, empty, corrupt or of an unknown type."""


class ConfigurationError(ClinriskError):
    """A setting the deployment needs is missing or invalid; the message names the setting."""
