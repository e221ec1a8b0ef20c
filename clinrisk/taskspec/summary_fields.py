"""The coded fields a task's similar-patient aggregates report: its fairness subgroups (sex, an age
band, the site), each a code or a bin, never a value as entered. A subgroup on an id column, or on
a numeric column without bins, would carry a patient's own value, so it is left out."""

from __future__ import annotations

from clinrisk.taskspec.spec import NumericColumn, TaskSpec


def summary_fields(spec: TaskSpec) -> tuple[str, ...]:
    """The names of the subgroups whose levels similar-patient documents keep, in declared order."""
    ids = {spec.record_id, spec.group_id}
    numeric = {column.name for column in spec.columns if isinstance(column, NumericColumn)}
    return tuple(
        s.name for s in spec.subgroups if s.column not in ids and (s.bins is not None or s.column not in numeric)
    )
