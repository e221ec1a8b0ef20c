"""Prediction capture: every scored encounter as a record with keyed ids, buffered into a sink
(Parquet locally, Firehose in the cloud). Serving and batch scoring write here; `clinrisk.monitoring`
reads what it wrote."""
