"""SageMaker framework image URIs for environment-agnostic stacks.

The `sagemaker` SDK resolves an image URI for one region; our stacks name no region at synth
time. So the SDK is asked for every region it knows, and the stack carries the answers as a
CloudFormation mapping, looked up with the region the stack is deployed to. The SDK (a pinned
dependency) stays the single source of truth for account ids and repository names.
"""

from __future__ import annotations

import functools
import logging
from typing import Literal

from aws_cdk import Aws, CfnMapping, Stack
from constructs import Construct

# The SageMaker XGBoost framework container that runs sagemaker_jobs/train.py in script mode.
# Its xgboost reads the booster JSON that clinrisk.model.tree_ensemble serves.
XGBOOST_FRAMEWORK_VERSION = "3.0-5"
ImageScope = Literal["training", "inference"]


@functools.cache
def _registry_uris(scope: ImageScope) -> dict[str, str]:
    # The SDK logs a line per lookup at INFO; a synth does not need 40 of them.
    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    from sagemaker.core import image_uris  # type: ignore[import-untyped]

    config = image_uris.config_for_framework("xgboost")[scope]["versions"][XGBOOST_FRAMEWORK_VERSION]
    return {
        region: image_uris.retrieve("xgboost", region=region, version=XGBOOST_FRAMEWORK_VERSION, image_scope=scope)
        for region in sorted(config["registries"])
    }


def xgboost_image_uri(scope: Construct, *, image_scope: ImageScope) -> str:
    """The XGBoost framework image for the deploying region (a token); one mapping per stack and scope."""
    stack = Stack.of(scope)
    mapping_id = f"XgboostImage{image_scope.capitalize()}"
    mapping = stack.node.try_find_child(mapping_id)
    if not isinstance(mapping, CfnMapping):
        mapping = CfnMapping(
            stack,
            mapping_id,
            mapping={region: {"uri": uri} for region, uri in _registry_uris(image_scope).items()},
        )
    return mapping.find_in_map(Aws.REGION, "uri")
