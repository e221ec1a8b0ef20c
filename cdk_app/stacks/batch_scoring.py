"""BatchScoringStack: cloud batch scoring, a state machine that scores a CSV in S3 and writes the scores back.

Composition: three Lambdas (`BatchScoringFunctions`: Plan in the pandas bundle, ScoreChunk and
Finish in the light predict bundle) and the state machine that runs them
(`BatchScoringStateMachine`: Plan → Distributed Map of ScoreChunk → Finish → Notify). Inputs are
read from and outputs written to the data bucket under `batch-scoring/`; see
state_machines/README.md, "Batch scoring", for the execution input and the states.

Start a run with `aws stepfunctions start-execution --state-machine-arn <BatchStateMachineArn>
--input '{"input_uri": "s3://<data>/batch-scoring/input/x.csv", "output_uri":
"s3://<data>/batch-scoring/output/x.csv"}'`.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from cdk_app.constructs.batch_scoring_functions import (
    INPUT_PREFIX,
    MAP_RESULTS_PREFIX,
    OUTPUT_PREFIX,
    WORK_PREFIX,
    BatchResources,
    BatchScoringFunctions,
)
from cdk_app.constructs.batch_state_machine import BatchScoringStateMachine, map_max_concurrency
from cdk_app.stacks.props import ClinriskProps


class BatchScoringStack(Stack):
    functions: dict[str, lambda_.Function]
    batch_functions: BatchScoringFunctions
    scoring: BatchScoringStateMachine

    def __init__(self, scope: Construct, id: str, *, props: ClinriskProps) -> None:
        super().__init__(scope, id, **props.naming(id, "batch scoring of a CSV in S3"))
        config, foundation = props.config, props.foundation
        buckets, topics = foundation.buckets, foundation.topics
        self.batch_functions = BatchScoringFunctions(
            self,
            "Functions",
            resources=BatchResources(**props.function_wiring),
            score_concurrency=map_max_concurrency(),
        )
        batch = self.batch_functions
        self.functions = {
            name: wrapped.function for name, wrapped in zip(("plan", "score", "finish"), batch.all, strict=True)
        }
        self.scoring = BatchScoringStateMachine(
            self,
            "Scoring",
            machine=props.machine(
                f"clinrisk-{config.env}-batch-scoring",
                {
                    "AlertsTopicArn": topics.alerts.topic_arn,
                    "PlanFunctionArn": batch.plan.function.function_arn,
                    "ScoreChunkFunctionArn": batch.score.function.function_arn,
                    "FinishFunctionArn": batch.finish.function.function_arn,
                    "WorkBucket": buckets.data.bucket_name,
                    "MapResultsPrefix": MAP_RESULTS_PREFIX,
                },
                list(self.functions.values()),
            ),
            work_bucket=buckets.data,
            manifests=f"{WORK_PREFIX}/*/manifest.json",
            map_results_prefix=MAP_RESULTS_PREFIX,
        )
        CfnOutput(
            self,
            "BatchStateMachineArn",
            value=self.state_machine.state_machine_arn,
            description=f"Execution input: input_uri under s3://<data bucket>/{INPUT_PREFIX}, output_uri under"
            f" s3://<data bucket>/{OUTPUT_PREFIX}",
        )

    @property
    def state_machine(self) -> sfn.StateMachine:
        return self.scoring.state_machine
