"""The VPC variant (`-c vpc=true`, with servingMode=sagemaker and approvals on: `synthesized_variant`).

Checked on the synthesized templates, resource by resource, never by logical id: no way to the
internet, isolated subnets in two zones, encrypted flow logs, every function and the training job in
those subnets, the endpoint list and its policies against what the roles in the VPC are granted,
the security-group rules, and the same cdk-nag and cfn-lint bar as the default deployment.
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ec2 as ec2

from cdk_app.compliance import MIN_REASON_LENGTH, acknowledgments_in, add_nag_packs
from cdk_app.constructs.network import S3_ACTIONS, VPC_CIDR, endpoint_specs, outside
from cdk_app.constructs.python_function import NETWORK_INTERFACE_ACTIONS
from cdk_app.constructs.retraining_state_machine import (
    DefinitionOutOfSyncError,
    TrainingVpc,
    definition_substitutions,
    with_training_vpc,
)
from cdk_app.constructs.training_job import NETWORK_DESCRIBE_ACTIONS
from cdk_app.constructs.training_job import NETWORK_INTERFACE_ACTIONS as TRAINING_INTERFACE_ACTIONS
from cdk_app.constructs.wildcard_resources import flatten_reference
from cdk_app.state_machine import definition_text, substitute
from tests.infrastructure.conftest import Synthesized
from tests.infrastructure.test_security import wildcard_actions
from tests.infrastructure.test_synth import EXPECTED_STACKS, cfn_lint_errors
from tests.unit.test_state_machines import SAMPLE_SUBSTITUTIONS, validation_errors

pytestmark = pytest.mark.infrastructure

FOUNDATION = "clinrisk-dev-foundation"
PIPELINE = "clinrisk-dev-pipeline"
REGION = "<AWS::Region>"
# The variant's interface endpoints, as cdk-nag flattens their service names.
EXPECTED_INTERFACE_SERVICES = {
    f"com.amazonaws.{REGION}.states",
    f"com.amazonaws.{REGION}.sns",
    f"com.amazonaws.{REGION}.ssm",
    f"com.amazonaws.{REGION}.secretsmanager",
    f"com.amazonaws.{REGION}.kinesis-firehose",  # prediction capture
    f"aws.sagemaker.{REGION}.experiments",
    f"com.amazonaws.{REGION}.sagemaker.api",
    f"com.amazonaws.{REGION}.sagemaker.runtime",
    f"com.amazonaws.{REGION}.bedrock-runtime",
    f"com.amazonaws.{REGION}.monitoring",  # the alarm notices' GetMetricData
}
INTERNET_TYPES = {
    "AWS::EC2::InternetGateway",
    "AWS::EC2::EgressOnlyInternetGateway",
    "AWS::EC2::VPCGatewayAttachment",
    "AWS::EC2::NatGateway",
    "AWS::EC2::EIP",
    "AWS::EC2::VPNGateway",
    "AWS::EC2::TransitGatewayAttachment",
    "AWS::EC2::VPCPeeringConnection",
}
# Actions of roles in the VPC that need no endpoint, because an AWS service performs them for the
# function, outside the VPC: Lambda writes logs, X-Ray segments and dead letters and manages the
# ENIs; S3, SNS and Secrets Manager call KMS; SageMaker pulls the image, checks PassRole and writes
# the job's logs, and its metrics (network isolation: the container itself reaches nothing).
ON_BEHALF_PREFIXES = {"logs", "xray", "sqs", "ec2", "kms", "iam", "ecr"}
ON_BEHALF_ACTIONS = {"cloudwatch:PutMetricData"}
# Reached through the collection's own OpenSearch Serverless VPC endpoint (AWS::OpenSearchServerless::VpcEndpoint).
COLLECTION_ACTIONS = {"aoss:APIAccessAll"}
SAMPLE_VPC = {
    "TrainingSubnet0": "subnet-0123456789abcdef0",
    "TrainingSubnet1": "subnet-0123456789abcdef1",
    "TrainingSecurityGroup0": "sg-0123456789abcdef0",
}


# --------------------------------------------------------------------------- helpers


def _resources(variant: Synthesized, resource_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for stack_name, stack in variant.stacks.items():
        for logical_id, resource in stack.template.get("Resources", {}).items():
            if resource["Type"] == resource_type:
                yield stack_name, logical_id, resource.get("Properties", {})


def _foundation(variant: Synthesized, resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: props for stack, lid, props in _resources(variant, resource_type) if stack == FOUNDATION}


def _target(variant: Synthesized, value: Any) -> str:
    """The Foundation logical id that a Ref, a GetAtt or an import of either names."""
    if isinstance(value, dict) and "Fn::ImportValue" in value:
        outputs = variant.stacks[FOUNDATION].template["Outputs"].values()
        value = next(o["Value"] for o in outputs if o.get("Export", {}).get("Name") == value["Fn::ImportValue"])
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    assert isinstance(value, dict) and "Fn::GetAtt" in value, value
    return str(value["Fn::GetAtt"][0])


def _targets(variant: Synthesized, values: list[Any]) -> set[str]:
    return {_target(variant, value) for value in values}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _subnets(variant: Synthesized) -> set[str]:
    return set(_foundation(variant, "AWS::EC2::Subnet"))


def _default_sg_provider(variant: Synthesized) -> set[tuple[str, str]]:
    """The CDK's deploy-time function that empties the default security group (outside the VPC: it calls
    the EC2 API once per deployment, and the VPC has no EC2 endpoint)."""
    return {
        (stack, _target(variant, props["ServiceToken"]))
        for stack, _, props in _resources(variant, "Custom::VpcRestrictDefaultSG")
    }


def _functions(variant: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    exempt = _default_sg_provider(variant)
    return {
        (stack, lid): props
        for stack, lid, props in _resources(variant, "AWS::Lambda::Function")
        if (stack, lid) not in exempt
    }


def _function_security_group(variant: Synthesized) -> str:
    groups = {
        _target(variant, group)
        for props in _functions(variant).values()
        for group in props["VpcConfig"]["SecurityGroupIds"]
    }
    assert len(groups) == 1, groups
    return groups.pop()


def _state_machine(variant: Synthesized) -> dict[str, Any]:
    machines = [
        props
        for stack, _, props in _resources(variant, "AWS::StepFunctions::StateMachine")
        if stack == PIPELINE and "TrainingRoleArn" in props.get("DefinitionSubstitutions", {})
    ]
    assert len(machines) == 1
    return machines[0]


def _training_security_group(variant: Synthesized) -> str:
    return _target(variant, _state_machine(variant)["DefinitionSubstitutions"]["TrainingSecurityGroup0"])


def _endpoints(variant: Synthesized, kind: str) -> dict[str, dict[str, Any]]:
    return {
        flatten_reference(props["ServiceName"]): props
        for props in _foundation(variant, "AWS::EC2::VPCEndpoint").values()
        if props.get("VpcEndpointType", "Gateway") == kind
    }


def _role_statements(variant: Synthesized, stack: str, role_id: str) -> list[dict[str, Any]]:
    """The Allow statements of every policy attached to the role (its default policy and any other)."""
    return [
        statement
        for policy_stack, _, props in _resources(variant, "AWS::IAM::Policy")
        if policy_stack == stack and {"Ref": role_id} in props.get("Roles", [])
        for statement in _as_list(props["PolicyDocument"]["Statement"])
        if statement["Effect"] == "Allow"
    ]


def _roles_in_the_vpc(variant: Synthesized) -> list[tuple[str, str]]:
    """(stack, role id) of every function in the VPC and of the training job."""
    roles = [(stack, _target(variant, props["Role"])) for (stack, _), props in _functions(variant).items()]
    training = _state_machine(variant)["DefinitionSubstitutions"]["TrainingRoleArn"]
    return [*roles, (PIPELINE, _target(variant, training))]


def _group_rules(variant: Synthesized, group: str, direction: str) -> list[dict[str, Any]]:
    """Inline and standalone rules of a security group; direction is "Ingress" or "Egress"."""
    inline = _foundation(variant, "AWS::EC2::SecurityGroup")[group].get(f"SecurityGroup{direction}", [])
    standalone = [
        props
        for props in _foundation(variant, f"AWS::EC2::SecurityGroup{direction}").values()
        if _target(variant, props["GroupId"]) == group
    ]
    return [*inline, *standalone]


# --------------------------------------------------------------------------- the same bar as the default


def test_the_variant_synthesizes_every_stack_with_no_nag_finding(synthesized_variant: Synthesized) -> None:
    assert synthesized_variant.error is None, synthesized_variant.error
    assert set(synthesized_variant.stacks) == EXPECTED_STACKS
    assert synthesized_variant.nag_findings() == []


def test_cfn_lint_finds_no_errors_in_the_variant(synthesized_variant: Synthesized) -> None:
    errors = cfn_lint_errors(synthesized_variant)
    assert set(errors) == EXPECTED_STACKS
    assert {name: found for name, found in errors.items() if found} == {}


def test_the_variant_has_no_cdk_warnings_and_only_reasoned_acknowledgments(synthesized_variant: Synthesized) -> None:
    assert {name: found for name, found in synthesized_variant.serious_messages().items() if found} == {}
    acknowledged = acknowledgments_in(synthesized_variant.outdir)
    assert all(len(reason) >= MIN_REASON_LENGTH for _, _, reason in acknowledged)
    # In the VPC no function may claim it is outside one.
    assert [path for path, rule, _ in acknowledged if rule.endswith("LambdaInsideVPC")] == []


def test_nag_packs_see_a_vpc_without_flow_logs_or_a_closed_default_group(tmp_path: Any) -> None:
    """The negative control: the variant's zero findings mean the VPC rules ran and passed."""
    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Open")
    ec2.Vpc(
        stack,
        "Vpc",
        max_azs=1,
        nat_gateways=0,
        subnet_configuration=[ec2.SubnetConfiguration(name="i", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
        restrict_default_security_group=False,
    )
    add_nag_packs(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {violation["ruleName"] for plugin in report["pluginReports"] for violation in plugin["violations"]}
    assert {"AwsSolutions-VPC7", "HIPAA.Security-VPCFlowLogsEnabled"} <= rules
    assert "HIPAA.Security-VPCDefaultSecurityGroupClosed" in rules


# --------------------------------------------------------------------------- the network


def test_the_vpc_has_no_way_to_the_internet(synthesized_variant: Synthesized) -> None:
    for stack_name, stack in synthesized_variant.stacks.items():
        types = {resource["Type"] for resource in stack.template["Resources"].values()}
        assert types & INTERNET_TYPES == set(), stack_name
        # Isolated route tables hold only the local route and the S3 gateway's prefix-list route,
        # neither of which is a resource: any AWS::EC2::Route would be a way out.
        assert "AWS::EC2::Route" not in types, stack_name
    vpcs = _foundation(synthesized_variant, "AWS::EC2::VPC")
    assert [props["CidrBlock"] for props in vpcs.values()] == [VPC_CIDR]
    # Interface endpoints' private DNS needs both.
    assert all(props["EnableDnsHostnames"] and props["EnableDnsSupport"] for props in vpcs.values())


def test_two_isolated_subnets_in_two_zones(synthesized_variant: Synthesized) -> None:
    subnets = _foundation(synthesized_variant, "AWS::EC2::Subnet").values()
    assert len(subnets) == 2
    for props in subnets:
        assert props["MapPublicIpOnLaunch"] is False
        assert {"Key": "aws-cdk:subnet-type", "Value": "Isolated"} in props["Tags"]
    zones = [json.dumps(props["AvailabilityZone"], sort_keys=True) for props in subnets]
    assert len(set(zones)) == 2


def test_flow_logs_record_all_traffic_into_an_encrypted_group_kept_a_year(synthesized_variant: Synthesized) -> None:
    (flow_log,) = _foundation(synthesized_variant, "AWS::EC2::FlowLog").values()
    assert flow_log["ResourceType"] == "VPC"
    assert _target(synthesized_variant, flow_log["ResourceId"]) in _foundation(synthesized_variant, "AWS::EC2::VPC")
    assert flow_log["TrafficType"] == "ALL"
    assert flow_log["LogDestinationType"] == "cloud-watch-logs"
    group = _foundation(synthesized_variant, "AWS::Logs::LogGroup")[
        _target(synthesized_variant, flow_log["LogGroupName"])
    ]
    assert group["RetentionInDays"] == 365
    key = _foundation(synthesized_variant, "AWS::KMS::Key")[_target(synthesized_variant, group["KmsKeyId"])]
    assert "CloudWatch Logs" in key["Description"]  # the messaging key
    role = _foundation(synthesized_variant, "AWS::IAM::Role")[
        _target(synthesized_variant, flow_log["DeliverLogsPermissionArn"])
    ]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]


def test_the_default_security_group_is_emptied(synthesized_variant: Synthesized) -> None:
    (restrict,) = _foundation(synthesized_variant, "Custom::VpcRestrictDefaultSG").values()
    assert restrict["DefaultSecurityGroupId"]["Fn::GetAtt"][1] == "DefaultSecurityGroup"
    assert _target(synthesized_variant, restrict["DefaultSecurityGroupId"]) in _foundation(
        synthesized_variant, "AWS::EC2::VPC"
    )
    # Its provider is the only function outside the VPC.
    assert len(_default_sg_provider(synthesized_variant)) == 1


def test_every_function_runs_in_the_isolated_subnets(synthesized_variant: Synthesized) -> None:
    functions = _functions(synthesized_variant)
    stacks = {stack for stack, _ in functions}
    assert {PIPELINE, "clinrisk-dev-serving", "clinrisk-dev-batch-scoring"} <= stacks
    assert len(functions) >= 9  # five pipeline, predict, three batch scoring
    subnets = _subnets(synthesized_variant)
    for where, props in functions.items():
        assert "VpcConfig" in props, where
        assert _targets(synthesized_variant, props["VpcConfig"]["SubnetIds"]) == subnets, where
    assert _function_security_group(synthesized_variant) in _foundation(synthesized_variant, "AWS::EC2::SecurityGroup")


def test_the_training_job_runs_in_the_isolated_subnets(synthesized_variant: Synthesized) -> None:
    machine = _state_machine(synthesized_variant)
    definition = json.loads(machine["DefinitionString"])
    vpc_config = definition["States"]["Train"]["Parameters"].pop("VpcConfig")
    assert vpc_config == {
        "Subnets": ["${TrainingSubnet0}", "${TrainingSubnet1}"],
        "SecurityGroupIds": ["${TrainingSecurityGroup0}"],
    }
    # Everything else is the ASL file as written, which the interpreter tests run.
    assert definition == json.loads(definition_text())
    values = machine["DefinitionSubstitutions"]
    subnets = _targets(synthesized_variant, [values["TrainingSubnet0"], values["TrainingSubnet1"]])
    assert subnets == _subnets(synthesized_variant)
    assert _training_security_group(synthesized_variant) != _function_security_group(synthesized_variant)


def _variant_definition(synthesized_variant: Synthesized) -> dict[str, Any]:
    text = _state_machine(synthesized_variant)["DefinitionString"]
    parsed: dict[str, Any] = json.loads(substitute(text, {**SAMPLE_SUBSTITUTIONS, **SAMPLE_VPC}))
    return parsed


def test_every_service_task_of_the_variant_sends_a_valid_request(synthesized_variant: Synthesized) -> None:
    # The service-model check of tests/unit/test_state_machines.py, on the definition this variant deploys.
    tasks = {n: s for n, s in _variant_definition(synthesized_variant)["States"].items() if s["Type"] == "Task"}
    assert "VpcConfig" in tasks["Train"]["Parameters"]
    assert {name: report for name, state in tasks.items() if (report := validation_errors(state))} == {}


def test_a_misspelt_vpc_config_fails_validation(synthesized_variant: Synthesized) -> None:
    train = copy.deepcopy(_variant_definition(synthesized_variant)["States"]["Train"])
    train["Parameters"]["VpcConfig"]["Subnet"] = train["Parameters"]["VpcConfig"].pop("Subnets")
    assert "Subnet" in validation_errors(train)


def test_a_vpc_placeholder_without_a_value_stops_synthesis_naming_it() -> None:
    text = with_training_vpc(definition_text(), TrainingVpc(subnet_ids=["a", "b"], security_group_ids=["sg"]))
    values = {**SAMPLE_SUBSTITUTIONS, "TrainingSubnet0": "a", "TrainingSecurityGroup0": "sg"}
    with pytest.raises(DefinitionOutOfSyncError, match="TrainingSubnet1"):
        definition_substitutions(text, values)
    with pytest.raises(DefinitionOutOfSyncError, match="VpcConfig"):
        with_training_vpc(text, TrainingVpc(subnet_ids=["a"], security_group_ids=["sg"]))


# --------------------------------------------------------------------------- endpoints


def test_interface_endpoints_are_the_services_the_functions_call(synthesized_variant: Synthesized) -> None:
    endpoints = _endpoints(synthesized_variant, "Interface")
    assert set(endpoints) == EXPECTED_INTERFACE_SERVICES
    groups = set()
    for service, props in endpoints.items():
        assert props["PrivateDnsEnabled"] is True, service
        assert _targets(synthesized_variant, props["SubnetIds"]) == _subnets(synthesized_variant), service
        groups |= _targets(synthesized_variant, props["SecurityGroupIds"])
    assert len(groups) == 1 and _function_security_group(synthesized_variant) not in groups
    # Without the sagemaker serving mode, neither SageMaker endpoint is paid for.
    assert {spec.id for spec in endpoint_specs(sagemaker_serving=False)} == {
        "StepFunctions",
        "Sns",
        "Ssm",
        "SecretsManager",
        "MlflowTracking",
        "Firehose",
        "BedrockRuntime",
        "CloudWatchMonitoring",
    }


def test_the_s3_gateway_admits_only_this_accounts_buckets_and_principals(synthesized_variant: Synthesized) -> None:
    (s3,) = _endpoints(synthesized_variant, "Gateway").values()
    route_tables = {
        _target(synthesized_variant, props["RouteTableId"])
        for props in _foundation(synthesized_variant, "AWS::EC2::SubnetRouteTableAssociation").values()
    }
    assert _targets(synthesized_variant, s3["RouteTableIds"]) == route_tables
    (statement,) = s3["PolicyDocument"]["Statement"]
    assert sorted(_as_list(statement["Action"])) == sorted(S3_ACTIONS)
    assert statement["Condition"]["StringEquals"] == {
        "aws:ResourceAccount": {"Ref": "AWS::AccountId"},
        "aws:PrincipalAccount": {"Ref": "AWS::AccountId"},
    }


def test_endpoint_policies_admit_exactly_what_the_roles_in_the_vpc_are_granted(
    synthesized_variant: Synthesized,
) -> None:
    interface = {
        action: service
        for service, props in _endpoints(synthesized_variant, "Interface").items()
        for statement in props["PolicyDocument"]["Statement"]
        for action in _as_list(statement["Action"])
    }
    gateway = {action for props in _endpoints(synthesized_variant, "Gateway").values()
               for s in props["PolicyDocument"]["Statement"] for action in _as_list(s["Action"])}  # fmt: skip
    granted = {
        action
        for stack, role in _roles_in_the_vpc(synthesized_variant)
        for statement in _role_statements(synthesized_variant, stack, role)
        for action in _as_list(statement["Action"])
    }
    unreachable = {
        a
        for a in granted
        if a not in interface
        and a not in gateway
        and a.split(":")[0] not in ON_BEHALF_PREFIXES
        and a not in ON_BEHALF_ACTIONS
        and not (a in COLLECTION_ACTIONS and _has_collection_endpoint(synthesized_variant))
    }
    assert unreachable == set(), "granted calls with no endpoint to reach them"
    assert {a for a in granted if a.startswith("s3:")} <= gateway
    assert set(interface) - granted == set(), "endpoint actions no role in the VPC is granted"
    for service in EXPECTED_INTERFACE_SERVICES:
        assert any(interface[a] == service for a in granted if a in interface), f"{service} serves no role"


def _has_collection_endpoint(synthesized: Synthesized) -> bool:
    resources = synthesized.template("clinrisk-dev-explain").to_json()["Resources"]
    return any(r["Type"] == "AWS::OpenSearchServerless::VpcEndpoint" for r in resources.values())


def test_every_endpoint_admits_only_this_accounts_principals(synthesized_variant: Synthesized) -> None:
    for service, props in _endpoints(synthesized_variant, "Interface").items():
        for statement in props["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            assert statement["Condition"]["StringEquals"]["aws:PrincipalAccount"] == {"Ref": "AWS::AccountId"}, service
            assert not [a for a in _as_list(statement["Action"]) if "*" in a], service


# --------------------------------------------------------------------------- security groups


def _is_https(rule: dict[str, Any]) -> bool:
    return rule["IpProtocol"] == "tcp" and rule["FromPort"] == 443 and rule["ToPort"] == 443


def _covers_all_but_the_vpc(blocks: list[str]) -> bool:
    networks = [ipaddress.ip_network(block) for block in blocks]
    vpc = ipaddress.ip_network(VPC_CIDR)
    disjoint = all(not a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])
    return (
        disjoint
        and not any(n.overlaps(vpc) for n in networks)
        and (sum(n.num_addresses for n in networks) + vpc.num_addresses == 2**32)
    )


def test_the_outside_blocks_are_everything_but_the_vpc() -> None:
    assert _covers_all_but_the_vpc(outside(VPC_CIDR))
    assert not _covers_all_but_the_vpc([*outside(VPC_CIDR), "10.0.1.0/24"])


def test_endpoints_take_https_from_the_functions_only(synthesized_variant: Synthesized) -> None:
    (endpoint_group,) = {
        group
        for props in _endpoints(synthesized_variant, "Interface").values()
        for group in _targets(synthesized_variant, props["SecurityGroupIds"])
    }
    (ingress,) = _group_rules(synthesized_variant, endpoint_group, "Ingress")
    assert _is_https(ingress)
    assert _target(synthesized_variant, ingress["SourceSecurityGroupId"]) == _function_security_group(
        synthesized_variant
    )
    # Endpoints start no connection: the CDK's placeholder rule that matches no traffic.
    (egress,) = _group_rules(synthesized_variant, endpoint_group, "Egress")
    assert egress["CidrIp"] == "255.255.255.255/32"


def test_functions_send_https_to_the_endpoints_and_s3_only(synthesized_variant: Synthesized) -> None:
    group = _function_security_group(synthesized_variant)
    assert _group_rules(synthesized_variant, group, "Ingress") == []
    egress = _group_rules(synthesized_variant, group, "Egress")
    assert all(_is_https(rule) for rule in egress)
    to_groups = [rule for rule in egress if "DestinationSecurityGroupId" in rule]
    assert len(to_groups) == 1
    assert _covers_all_but_the_vpc([rule["CidrIp"] for rule in egress if "CidrIp" in rule])


def test_the_training_job_sends_https_to_s3_only(synthesized_variant: Synthesized) -> None:
    group = _training_security_group(synthesized_variant)
    assert _group_rules(synthesized_variant, group, "Ingress") == []
    egress = _group_rules(synthesized_variant, group, "Egress")
    assert all(_is_https(rule) and "CidrIp" in rule for rule in egress)
    assert _covers_all_but_the_vpc([rule["CidrIp"] for rule in egress])


# --------------------------------------------------------------------------- IAM for the network


def test_no_policy_of_the_variant_allows_a_wildcard_action(synthesized_variant: Synthesized) -> None:
    for policy_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for stack, lid, props in _resources(synthesized_variant, policy_type):
            assert wildcard_actions(props["PolicyDocument"]) == [], (stack, lid)
    for stack, lid, props in _resources(synthesized_variant, "AWS::IAM::Role"):
        for inline in props.get("Policies", []):
            assert wildcard_actions(inline["PolicyDocument"]) == [], (stack, lid)


def test_function_roles_may_manage_their_network_interfaces(synthesized_variant: Synthesized) -> None:
    for (stack, _), props in _functions(synthesized_variant).items():
        statements = _role_statements(synthesized_variant, stack, _target(synthesized_variant, props["Role"]))
        eni = [s for s in statements if set(NETWORK_INTERFACE_ACTIONS) <= set(_as_list(s["Action"]))]
        assert eni and all(s["Resource"] == "*" and "Condition" not in s for s in eni), stack


def test_the_training_role_may_manage_interfaces_in_this_vpc_only(synthesized_variant: Synthesized) -> None:
    (stack, role) = _roles_in_the_vpc(synthesized_variant)[-1]
    statements = _role_statements(synthesized_variant, stack, role)
    changing = [s for s in statements if set(_as_list(s["Action"])) & set(TRAINING_INTERFACE_ACTIONS)]
    assert len(changing) == 1 and sorted(_as_list(changing[0]["Action"])) == sorted(TRAINING_INTERFACE_ACTIONS)
    vpc_arn = changing[0]["Condition"]["ArnEquals"]["ec2:Vpc"]
    imported = [part for part in vpc_arn["Fn::Join"][1] if isinstance(part, dict) and "Fn::ImportValue" in part]
    assert [_target(synthesized_variant, part) for part in imported] == list(
        _foundation(synthesized_variant, "AWS::EC2::VPC")
    )
    unconditioned = [s for s in statements if s["Resource"] == "*" and "Condition" not in s]
    describe = {a for s in unconditioned for a in _as_list(s["Action"]) if a.startswith("ec2:")}
    # DeleteNetworkInterfacePermission has no ec2:Vpc key: with the condition it would always be denied.
    assert describe == set(NETWORK_DESCRIBE_ACTIONS) | {"ec2:DeleteNetworkInterfacePermission"}


def test_the_state_machine_creates_training_jobs_only_in_the_isolated_subnets(synthesized_variant: Synthesized) -> None:
    creating = [
        statement
        for _, _, props in _resources(synthesized_variant, "AWS::IAM::Policy")
        for statement in _as_list(props["PolicyDocument"]["Statement"])
        if "sagemaker:CreateTrainingJob" in _as_list(statement["Action"])
    ]
    assert len(creating) == 1
    condition = creating[0]["Condition"]
    allowed = condition["ForAllValues:StringEquals"]
    assert _targets(synthesized_variant, allowed["sagemaker:VpcSubnets"]) == _subnets(synthesized_variant)
    assert _targets(synthesized_variant, allowed["sagemaker:VpcSecurityGroupIds"]) == {
        _training_security_group(synthesized_variant)
    }
    # ForAllValues alone also holds for a request with no VpcConfig at all.
    assert condition["Null"] == {"sagemaker:VpcSubnets": "false", "sagemaker:VpcSecurityGroupIds": "false"}
