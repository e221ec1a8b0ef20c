"""The model card's intended-use statement, shown on the card and with every explanation."""

INTENDED_USE = (
    "Decision support for care teams planning the discharge of adult diabetic inpatients: an estimate of the"
    " probability of readmission within 30 days, trained on 1999–2008 US hospital data and not validated"
    " prospectively. It is not a diagnosis and does not recommend treatment or dosing; clinical judgement decides."
)
