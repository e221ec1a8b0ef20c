"""The Bedrock Guardrail every explanation goes through (Converse `guardrailConfig` and `guardContent`).

- Sensitive information: identifiers a narrative must never carry are anonymized in the model's
  output and blocked in its input (the prompt holds codes and numbers, never a name or a number
  that identifies a person, so one there is a bug upstream).
- Contextual grounding: the answer must be grounded in the retrieved passages (the grounding
  source) and relevant to the query; below either threshold the guardrail blocks it and the
  function degrades to the factors and passages.
- A denied topic: prescribing or dosing advice. clinrisk explains a risk score; it is decision
  support, not a prescriber.

A numbered `AWS::Bedrock::GuardrailVersion` is what the function calls: a draft can change under it.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnResource
from constructs import Construct

# Anonymized in the output, blocked in the input: who a person is, how to reach them, and their ids.
# Not AGE: the age band is one of the model's factors, which the narrative explains.
PII_ENTITIES = (
    "NAME",
    "ADDRESS",
    "EMAIL",
    "PHONE",
    "US_SOCIAL_SECURITY_NUMBER",
    "CA_HEALTH_NUMBER",
    "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
    "DRIVER_ID",
    "LICENSE_PLATE",
    "IP_ADDRESS",
)
GROUNDING_THRESHOLD = 0.75
RELEVANCE_THRESHOLD = 0.5
DOSING_TOPIC = "Prescribing or dosing advice"
BLOCKED_MESSAGE = "The explanation was withheld by the content guardrail; the factors and sources are returned."


def guardrail_properties(name: str) -> dict[str, Any]:
    """The guardrail as `AWS::Bedrock::Guardrail` properties."""
    return {
        "Name": name,
        "Description": "clinrisk explanations: no identifiers, grounded in the retrieved passages, no dosing advice",
        "BlockedInputMessaging": BLOCKED_MESSAGE,
        "BlockedOutputsMessaging": BLOCKED_MESSAGE,
        "SensitiveInformationPolicyConfig": {
            "PiiEntitiesConfig": [
                {"Type": entity, "Action": "ANONYMIZE", "InputAction": "BLOCK", "OutputAction": "ANONYMIZE"}
                for entity in PII_ENTITIES
            ]
        },
        "ContextualGroundingPolicyConfig": {
            "FiltersConfig": [
                {"Type": "GROUNDING", "Threshold": GROUNDING_THRESHOLD},
                {"Type": "RELEVANCE", "Threshold": RELEVANCE_THRESHOLD},
            ]
        },
        "TopicPolicyConfig": {
            "TopicsConfig": [
                {
                    "Name": DOSING_TOPIC,
                    "Type": "DENY",
                    "Definition": "Recommending, starting, stopping or changing a medication, or a dose, frequency"
                    " or route of a medication, for a patient.",
                    "Examples": [
                        "Increase the insulin dose to 20 units.",
                        "Stop metformin before discharge.",
                        "Prescribe a loop diuretic for this patient.",
                    ],
                }
            ]
        },
    }


class ExplanationGuardrail(Construct):
    """`guardrail_id`, `version` and `arn` are what the explain function is configured and allowed with."""

    guardrail: CfnResource
    guardrail_version: CfnResource

    def __init__(self, scope: Construct, id: str, *, name: str) -> None:
        super().__init__(scope, id)
        self.guardrail = CfnResource(
            self, "Guardrail", type="AWS::Bedrock::Guardrail", properties=guardrail_properties(name)
        )
        self.guardrail_version = CfnResource(
            self,
            "Version",
            type="AWS::Bedrock::GuardrailVersion",
            properties={
                "GuardrailIdentifier": self.guardrail.get_att("GuardrailId").to_string(),
                "Description": "What the explain function calls; a new version per change of the guardrail",
            },
        )

    @property
    def guardrail_id(self) -> str:
        return self.guardrail.get_att("GuardrailId").to_string()

    @property
    def arn(self) -> str:
        return self.guardrail.get_att("GuardrailArn").to_string()

    @property
    def version(self) -> str:
        return self.guardrail_version.get_att("Version").to_string()
