"""What the training job needs from Python 3.11 on the SageMaker XGBoost image's Python 3.10.

The job imports clinrisk from the source tarball (cdk_app/constructs/training_source.py) and the
image runs CPython 3.10, so the modules on its import path use these names instead of 3.11's.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):  # noqa: UP036 - the training image runs 3.10
    from enum import StrEnum
else:  # pragma: no cover - exercised under the image's Python by tests/infrastructure/test_pipeline.py

    class StrEnum(str, Enum):  # noqa: UP042 - enum.StrEnum does not exist on 3.10
        """enum.StrEnum of 3.11: members are strings, and str() gives the value."""

        def __str__(self) -> str:
            return str(self.value)


__all__ = ["StrEnum"]
