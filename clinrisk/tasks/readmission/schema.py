"""The UCI "Diabetes 130-US hospitals" encounter schema: one table of column specs.

Everything that knows about columns (the pydantic `Encounter` model, file validation, the
synthetic generator and the features) reads this table, so a value set is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from clinrisk.compat import StrEnum

MISSING_TOKEN = "?"
TARGET = "readmitted"
TARGET_VALUES: tuple[str, ...] = ("<30", ">30", "NO")
POSITIVE_LABEL = "<30"
ENCOUNTER_ID = "encounter_id"
PATIENT_ID = "patient_nbr"

# Encounters that ended in death or hospice cannot be readmitted (data set README).
DEATH_OR_HOSPICE_DISPOSITIONS: frozenset[int] = frozenset({11, 13, 14, 19, 20, 21})


class ColumnKind(StrEnum):
    IDENTIFIER = "identifier"  # positive integer key
    INTEGER = "integer"  # a count or a length of stay, with a range
    CODE = "code"  # an integer drawn from a closed set of ids (IDs_mapping.csv)
    CATEGORY = "category"  # a string drawn from a closed set
    ICD9 = "icd9"  # an ICD-9 diagnosis code
    TEXT = "text"  # free text: any value is accepted


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: ColumnKind
    description: str
    nullable: bool = False
    values: tuple[str, ...] | tuple[int, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None

    @property
    def field_name(self) -> str:
        """A Python identifier for the column (a few UCI names hold hyphens)."""
        return self.name.replace("-", "_")


ICD9_PATTERN = r"^(\d{1,3}(\.\d{1,2})?|V\d{2}(\.\d{1,2})?|E\d{3}(\.\d)?)$"

MEDICATION_STATES: tuple[str, ...] = ("No", "Steady", "Up", "Down")
MEDICATIONS: tuple[str, ...] = (
    "metformin",
    "repaglinide",
    "nateglinide",
    "chlorpropamide",
    "glimepiride",
    "acetohexamide",
    "glipizide",
    "glyburide",
    "tolbutamide",
    "pioglitazone",
    "rosiglitazone",
    "acarbose",
    "miglitol",
    "troglitazone",
    "tolazamide",
    "examide",
    "citoglipton",
    "insulin",
    "glyburide-metformin",
    "glipizide-metformin",
    "glimepiride-pioglitazone",
    "metformin-rosiglitazone",
    "metformin-pioglitazone",
)

RACES: tuple[str, ...] = ("Caucasian", "AfricanAmerican", "Hispanic", "Other", "Asian")
GENDERS: tuple[str, ...] = ("Female", "Male", "Unknown/Invalid")
AGE_BANDS: tuple[str, ...] = tuple(f"[{lo}-{lo + 10})" for lo in range(0, 100, 10))
WEIGHT_BANDS: tuple[str, ...] = (
    *(f"[{lo}-{lo + 25})" for lo in range(0, 200, 25)),
    ">200",
)
PAYER_CODES: tuple[str, ...] = (
    "MC", "HM", "SP", "BC", "MD", "CP", "UN", "CM", "OG", "PO", "DM", "CH", "WC", "OT", "MP",
    "SI", "FR",
)  # fmt: skip
ADMISSION_TYPE_IDS: tuple[int, ...] = tuple(range(1, 9))
DISCHARGE_DISPOSITION_IDS: tuple[int, ...] = tuple(range(1, 31))
ADMISSION_SOURCE_IDS: tuple[int, ...] = tuple(range(1, 27))
GLUCOSE_SERUM_RESULTS: tuple[str, ...] = ("None", "Norm", ">200", ">300")
A1C_RESULTS: tuple[str, ...] = ("None", "Norm", ">7", ">8")

# In these two columns "None" means "not measured": it is a value, not a missing cell.
# Files that store it as an empty cell (later releases of the data set do) are read as "None".
NOT_MEASURED_COLUMNS: tuple[str, ...] = ("max_glu_serum", "A1Cresult")

_K = ColumnKind
FEATURE_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("race", _K.CATEGORY, "Race as recorded", nullable=True, values=RACES),
    ColumnSpec("gender", _K.CATEGORY, "Gender as recorded", values=GENDERS),
    ColumnSpec("age", _K.CATEGORY, "Age in 10-year bands", values=AGE_BANDS),
    ColumnSpec("weight", _K.CATEGORY, "Weight in pounds, banded", nullable=True, values=WEIGHT_BANDS),
    ColumnSpec("admission_type_id", _K.CODE, "Admission type (IDs_mapping.csv)", values=ADMISSION_TYPE_IDS),
    ColumnSpec(
        "discharge_disposition_id", _K.CODE, "Discharge disposition (IDs_mapping.csv)",
        values=DISCHARGE_DISPOSITION_IDS,
    ),
    ColumnSpec(
        "admission_source_id", _K.CODE, "Admission source (IDs_mapping.csv)", values=ADMISSION_SOURCE_IDS
    ),
    ColumnSpec("time_in_hospital", _K.INTEGER, "Days from admission to discharge", minimum=1, maximum=14),
    ColumnSpec("payer_code", _K.CATEGORY, "Payer", nullable=True, values=PAYER_CODES),
    ColumnSpec("medical_specialty", _K.TEXT, "Specialty of the admitting physician", nullable=True),
    ColumnSpec("num_lab_procedures", _K.INTEGER, "Lab tests during the encounter", minimum=0, maximum=300),
    ColumnSpec("num_procedures", _K.INTEGER, "Non-lab procedures during the encounter", minimum=0, maximum=50),
    ColumnSpec("num_medications", _K.INTEGER, "Distinct generic drugs administered", minimum=0, maximum=200),
    ColumnSpec("number_outpatient", _K.INTEGER, "Outpatient visits in the prior year", minimum=0, maximum=100),
    ColumnSpec("number_emergency", _K.INTEGER, "Emergency visits in the prior year", minimum=0, maximum=100),
    ColumnSpec("number_inpatient", _K.INTEGER, "Inpatient visits in the prior year", minimum=0, maximum=100),
    ColumnSpec("diag_1", _K.ICD9, "Primary diagnosis (ICD-9)", nullable=True),
    ColumnSpec("diag_2", _K.ICD9, "Secondary diagnosis (ICD-9)", nullable=True),
    ColumnSpec("diag_3", _K.ICD9, "Additional secondary diagnosis (ICD-9)", nullable=True),
    ColumnSpec("number_diagnoses", _K.INTEGER, "Diagnoses entered", minimum=1, maximum=20),
    ColumnSpec("max_glu_serum", _K.CATEGORY, "Glucose serum test result", values=GLUCOSE_SERUM_RESULTS),
    ColumnSpec("A1Cresult", _K.CATEGORY, "HbA1c test result", values=A1C_RESULTS),
    *(
        ColumnSpec(drug, _K.CATEGORY, f"Dosage change of {drug}", values=MEDICATION_STATES)
        for drug in MEDICATIONS
    ),
    ColumnSpec("change", _K.CATEGORY, "Any change of diabetic medication", values=("No", "Ch")),
    ColumnSpec("diabetesMed", _K.CATEGORY, "Any diabetic medication prescribed", values=("Yes", "No")),
)  # fmt: skip

ID_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec(ENCOUNTER_ID, _K.IDENTIFIER, "Unique id of the encounter", minimum=1),
    ColumnSpec(PATIENT_ID, _K.IDENTIFIER, "Id of the patient", minimum=1),
)
TARGET_COLUMN = ColumnSpec(TARGET, _K.CATEGORY, "Readmission: <30 days, >30 days, or NO", values=TARGET_VALUES)

# The column order of diabetic_data.csv.
COLUMNS: tuple[ColumnSpec, ...] = (*ID_COLUMNS, *FEATURE_COLUMNS, TARGET_COLUMN)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
SPECS: dict[str, ColumnSpec] = {c.name: c for c in COLUMNS}


def _annotation(spec: ColumnSpec) -> Any:
    if spec.values is not None:
        annotation: Any = Literal[spec.values]
    elif spec.kind in (ColumnKind.INTEGER, ColumnKind.IDENTIFIER):
        annotation = int
    else:
        annotation = str
    return annotation | None if spec.nullable else annotation


def field_definition(spec: ColumnSpec) -> Any:
    """The pydantic field (annotation, FieldInfo) of a column: its type, range, pattern and UCI name as alias."""
    constraints: dict[str, Any] = {"alias": spec.name, "description": spec.description}
    if spec.minimum is not None:
        constraints["ge"] = spec.minimum
    if spec.maximum is not None:
        constraints["le"] = spec.maximum
    if spec.kind is ColumnKind.ICD9:
        constraints["pattern"] = ICD9_PATTERN
    if spec.nullable:
        return (_annotation(spec), Field(None, **constraints))
    return (_annotation(spec), Field(..., **constraints))


class _EncounterBase(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    def to_record(self) -> dict[str, Any]:
        """The encounter as a row keyed by the UCI column names."""
        return self.model_dump(by_alias=True)


# One encounter to score: ids and clinical columns, no outcome.
Encounter: type[_EncounterBase] = create_model(
    "Encounter",
    __base__=_EncounterBase,
    __doc__="One inpatient encounter in the UCI Diabetes 130-US hospitals schema.",
    **{spec.field_name: field_definition(spec) for spec in (*ID_COLUMNS, *FEATURE_COLUMNS)},
)

# One encounter with its outcome, as in diabetic_data.csv.
LabeledEncounter: type[_EncounterBase] = create_model(
    "LabeledEncounter",
    __base__=Encounter,
    __doc__="One encounter of diabetic_data.csv, with its readmission outcome.",
    **{TARGET_COLUMN.field_name: field_definition(TARGET_COLUMN)},
)
