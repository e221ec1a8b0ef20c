"""Explanations: a prediction explained with cited knowledge passages and the outcomes of similar
past patients (issue 13). Domain code only; the adapters behind its ports live in
`clinrisk.adapters`, the handlers in `lambdas/explain` and `rag_ingest`."""
