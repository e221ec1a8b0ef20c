"""Prediction capture in the cloud: the predict and batch functions send each scored encounter to
an Amazon Data Firehose stream, which converts the JSON lines to Parquet through a Glue table and
writes them to the capture bucket (KMS), partitioned by task, date and model version from the
record's own fields (dynamic partitioning), in the layout the local capture writes. Record and
patient ids arrive already keyed with HMAC; the key is a Secrets Manager secret (data key).

Captures and keyed outcomes expire after `captureRetentionDays` (cdk.json).
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from cdk_app.compliance import acknowledge
from cdk_app.constructs.wildcard_resources import acknowledge_wildcard_resources
from cdk_app.environment import settings_environment
from cdk_app.permissions import KMS_DECRYPT, allow_write_objects
from clinrisk.capture.records import CAPTURE_SCHEMA, INPUTS_TYPE, PARTITION_COLUMNS
from clinrisk.settings import Settings

CAPTURE_PREFIX = "captures/"
ERROR_PREFIX = "capture-errors/"
KEYED_OUTCOMES_PREFIX = "outcomes-keyed/"
# One table for every task: a task's inputs are the `inputs` map (docs/monitoring.md, "One capture schema").
_GLUE_TYPES = {"string": "string", "int": "bigint", "double": "double", INPUTS_TYPE: "map<string,string>"}
# Parquet conversion needs a buffer of at least 64 MiB; at most 5 minutes keeps the monitor's hour fresh.
BUFFER_MIB = 64
BUFFER_SECONDS = 300


class PredictionCapture(Construct):
    stream: firehose.CfnDeliveryStream
    id_key: secretsmanager.Secret
    table: glue.CfnTable

    def __init__(
        self, scope: Construct, id: str, *, env_name: str, bucket: s3.Bucket, key: kms.IKey, retention_days: int
    ) -> None:
        super().__init__(scope, id)
        self.bucket, self.key = bucket, key
        for rule_id, prefix in (("ExpireCaptures", CAPTURE_PREFIX), ("ExpireKeyedOutcomes", KEYED_OUTCOMES_PREFIX),
                                ("ExpireCaptureErrors", ERROR_PREFIX)):  # fmt: skip
            bucket.add_lifecycle_rule(id=rule_id, prefix=prefix, expiration=Duration.days(retention_days))
        self.id_key = secretsmanager.Secret(
            self,
            "IdKey",
            description="clinrisk: HMAC key that replaces record and patient ids in captures and outcomes",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True, include_space=False
            ),
        )
        database = glue.CfnDatabase(
            self, "Database", catalog_id=Aws.ACCOUNT_ID,
            database_input=glue.CfnDatabase.DatabaseInputProperty(name=f"clinrisk_{env_name.replace('-', '_')}"),
        )  # fmt: skip
        self.table = self._table(database, bucket)
        role = self._role(database, bucket)
        self.stream = self._stream(env_name, role, bucket, key, database)
        self.stream.node.add_dependency(role)
        self._acknowledge(role)

    def _table(self, database: glue.CfnDatabase, bucket: s3.IBucket) -> glue.CfnTable:
        columns = [
            glue.CfnTable.ColumnProperty(name=name, type=_GLUE_TYPES[kind])
            for name, kind in CAPTURE_SCHEMA.items()
            if name not in PARTITION_COLUMNS
        ]
        partitions = [
            glue.CfnTable.ColumnProperty(name=name, type=_GLUE_TYPES[CAPTURE_SCHEMA[name]])
            for name in PARTITION_COLUMNS
        ]
        table = glue.CfnTable(
            self, "Table", catalog_id=Aws.ACCOUNT_ID, database_name=database.ref,
            table_input=glue.CfnTable.TableInputProperty(
                name="captures", table_type="EXTERNAL_TABLE", partition_keys=partitions,
                parameters={"classification": "parquet"},
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=columns, location=f"s3://{bucket.bucket_name}/{CAPTURE_PREFIX}",
                    input_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                    ),
                ),
            ),
        )  # fmt: skip
        table.add_dependency(database)
        return table

    def _role(self, database: glue.CfnDatabase, bucket: s3.IBucket) -> iam.Role:
        role = iam.Role(
            self, "DeliveryRole", assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}
            ),
        )  # fmt: skip
        allow_write_objects(role, bucket, key=self.key, prefixes=(CAPTURE_PREFIX, ERROR_PREFIX))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:AbortMultipartUpload"], resources=[bucket.arn_for_objects(f"{CAPTURE_PREFIX}*")]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"],
                resources=[
                    f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:catalog",
                    f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:database/{database.ref}",
                    f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:table/{database.ref}/captures",
                ],
            )
        )
        return role

    def _stream(
        self, env_name: str, role: iam.Role, bucket: s3.IBucket, key: kms.IKey, database: glue.CfnDatabase
    ) -> firehose.CfnDeliveryStream:
        f = firehose.CfnDeliveryStream
        partition = "".join(f"{name}=!{{partitionKeyFromQuery:{name}}}/" for name in PARTITION_COLUMNS)
        query = "{" + ",".join(f"{name}:.{name}" for name in PARTITION_COLUMNS) + "}"
        return f(
            self, "Stream", delivery_stream_name=f"clinrisk-{env_name}-capture", delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=f.DeliveryStreamEncryptionConfigurationInputProperty(
                key_type="CUSTOMER_MANAGED_CMK", key_arn=key.key_arn
            ),
            extended_s3_destination_configuration=f.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=bucket.bucket_arn, role_arn=role.role_arn,
                prefix=f"{CAPTURE_PREFIX}{partition}", file_extension=".parquet",
                error_output_prefix=f"{ERROR_PREFIX}!{{firehose:error-output-type}}/!{{timestamp:yyyy-MM-dd}}/",
                buffering_hints=f.BufferingHintsProperty(interval_in_seconds=BUFFER_SECONDS, size_in_m_bs=BUFFER_MIB),
                encryption_configuration=f.EncryptionConfigurationProperty(
                    kms_encryption_config=f.KMSEncryptionConfigProperty(awskms_key_arn=key.key_arn)
                ),
                dynamic_partitioning_configuration=f.DynamicPartitioningConfigurationProperty(enabled=True),
                processing_configuration=f.ProcessingConfigurationProperty(enabled=True, processors=[
                    f.ProcessorProperty(type="MetadataExtraction", parameters=[
                        f.ProcessorParameterProperty(parameter_name="MetadataExtractionQuery", parameter_value=query),
                        f.ProcessorParameterProperty(parameter_name="JsonParsingEngine", parameter_value="JQ-1.6"),
                    ]),
                ]),
                data_format_conversion_configuration=f.DataFormatConversionConfigurationProperty(
                    enabled=True,
                    input_format_configuration=f.InputFormatConfigurationProperty(
                        deserializer=f.DeserializerProperty(open_x_json_ser_de=f.OpenXJsonSerDeProperty())
                    ),
                    output_format_configuration=f.OutputFormatConfigurationProperty(
                        serializer=f.SerializerProperty(parquet_ser_de=f.ParquetSerDeProperty())
                    ),
                    schema_configuration=f.SchemaConfigurationProperty(
                        catalog_id=Aws.ACCOUNT_ID, database_name=database.ref, table_name="captures",
                        region=Aws.REGION, role_arn=role.role_arn, version_id="LATEST",
                    ),
                ),
            ),
        )  # fmt: skip

    @property
    def environment(self) -> dict[str, str]:
        """The settings a capturing function needs (clinrisk.settings.MonitoringRules)."""
        return settings_environment(
            Settings, monitoring__firehose_stream=self.stream.ref, monitoring__id_key_secret_arn=self.id_key.secret_arn
        )

    def allow_capture(self, function: iam.IGrantable) -> None:
        """Sending to the stream and reading the id key (decrypted with the data key)."""
        for actions, resource in (
            (["firehose:PutRecordBatch"], self.stream.attr_arn),
            (["secretsmanager:GetSecretValue"], self.id_key.secret_arn),
            (list(KMS_DECRYPT), self.key.key_arn),
        ):
            function.grant_principal.add_to_principal_policy(iam.PolicyStatement(actions=actions, resources=[resource]))

    def _acknowledge(self, role: iam.Role) -> None:
        acknowledge_wildcard_resources(
            role,
            "Firehose writes objects whose keys it makes at delivery time (partitions from each record, then its own"
            " file names) under the captures/ and capture-errors/ prefixes, so object ARNs end in a prefix wildcard.",
        )
        acknowledge(
            role,
            "HIPAA.Security-IAMNoInlinePolicy",
            "The policy belongs to the delivery stream's own role and lives and dies with it in CloudFormation; a"
            " managed policy would be a second resource with the same lifetime and no reuse.",
        )
        for rule in ("AwsSolutions-SMG4", "HIPAA.Security-SecretsManagerRotationEnabled"):
            acknowledge(
                self.id_key,
                rule,
                "The HMAC id key must stay the same for as long as captures and outcomes are kept: a rotated key"
                " would give the same encounter a new pseudonym, and outcomes would no longer join to captures.",
            )
