"""SageMaker script-mode inference entry point: what the endpoint of the `sagemaker` serving mode runs.

The SageMaker XGBoost framework image's model server imports this module (SAGEMAKER_PROGRAM,
from the source tarball named by SAGEMAKER_SUBMIT_DIRECTORY) and calls `model_fn` once with the
unpacked model archive, then `transform_fn` for each request. The local stand-in
(`clinrisk.adapters.local_endpoint`) calls the same two functions. Logs carry counts and the
version, never a record.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# In the image the toolkit unpacks the source tarball (this file at its root, beside `clinrisk`, and
# the vendored packages in `lib/`) into /opt/ml/code and installs it into site-packages, from
# where it is imported; in the repository the project is one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))
sys.path.insert(1, str(Path(__file__).resolve().parent))
sys.path.insert(2, str(Path(__file__).resolve().parent.parent))

from clinrisk.serving.endpoint_archive import CONTENT_TYPE
from clinrisk.serving.endpoint_contract import EndpointModel, load_endpoint_model, transform

logger = logging.getLogger("clinrisk.endpoint")


def model_fn(model_dir: str) -> EndpointModel:
    model = load_endpoint_model(Path(model_dir))
    logger.info("loaded %s version %d", model.name, model.version)
    return model


def transform_fn(model: EndpointModel, request_body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
    """Score one request; the tuple tells the model server the answer's content type."""
    return transform(model, request_body, content_type), CONTENT_TYPE
