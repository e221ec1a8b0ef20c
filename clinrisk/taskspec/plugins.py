"""The feature plugins a task file may name: features that need code, not just a column declaration.

Only the names live here for now; a task file naming any other plugin is refused when it loads.
Binding each name to the code that computes it (the readmission task's prior-encounter counts and
ICD-9 groups, in `clinrisk.tasks.readmission.features`) is the next step of issue 14.
"""

from __future__ import annotations

KNOWN_PLUGINS: frozenset[str] = frozenset({"readmission.prior_encounters", "readmission.icd9_groups"})
