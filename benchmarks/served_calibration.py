"""How well calibrated a pipeline run's model is where it was fitted and on new patients, and so how
far CBPE's label-free AUC estimate is from the realized AUC (issue 12), printed as JSON:

    .venv/bin/python benchmarks/served_calibration.py HOME/store/runs/RUN_ID

For the run's validation and test channels, and for a fresh 50,000-row synthetic cohort (seed 99,
as `benchmarks/monitoring.py` draws its windows from) unshifted and under each named shift: the
prevalence and mean probability, realized AUC, CBPE's expected AUC and their difference, ECE, and
the calibration slope and intercept (a logistic regression of the outcome on the probability's
logit: slope < 1 means over-confident, and CBPE then over-estimates the AUC).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clinrisk.data.task_binding import resolve_task
from clinrisk.data.validation import load_encounters
from clinrisk.evaluation.metrics import roc_auc
from clinrisk.model.risk_model import RiskModel, logit
from clinrisk.monitoring.stats import expected_auc, expected_calibration_error
from clinrisk.tasks.readmission.shifts import SHIFTS
from clinrisk.tasks.readmission.synth import generate_cohort


def describe(labels: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    fit = LogisticRegression(C=1e6, max_iter=1000).fit(logit(p).reshape(-1, 1), labels)
    realized, expected = roc_auc(labels, p), expected_auc(p)
    return {"rows": int(labels.size), "prevalence": round(float(labels.mean()), 4), "mean_p": round(float(p.mean()), 4),
            "auc": round(realized, 4), "cbpe_auc": round(expected, 4), "cbpe_minus_auc": round(expected - realized, 4),
            "ece": round(expected_calibration_error(labels, p), 4),
            "slope": round(float(fit.coef_[0, 0]), 3), "intercept": round(float(fit.intercept_[0]), 3)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path, help="a pipeline run directory: model/ and channels/")
    args = parser.parse_args()
    model = RiskModel.load(args.run / "model")
    task = resolve_task()
    sets = {ch: task.examples(load_encounters(next((args.run / "channels" / ch).iterdir())))
            for ch in ("validation", "test")}  # fmt: skip
    population = generate_cohort(50_000, seed=99)
    for name in ("none", *sorted(set(SHIFTS) - {"none"})):
        sets[f"fresh_{name}"] = task.examples(SHIFTS[name](population, np.random.default_rng(5)))
    print(
        json.dumps({name: describe(s.labels, model.predict_features(s.features)) for name, s in sets.items()}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
