"""OpenSearch Serverless (VECTORSEARCH collection) through opensearch-py with SigV4 (`aoss`):
the knowledge index (hybrid k-NN + BM25, fused by RRF) and the similar-patient index.

The index bodies below are the single definition of both indexes: the CDK app declares them
with AWS::OpenSearchServerless::Index from the same functions.

OpenSearch Serverless vector collections do not accept custom document ids, so a chunk's id is a
keyword field (`chunk_id`): ingest finds a document's chunks by `doc_id`, writes new chunks with
`_bulk` index actions, and deletes stale ones by the `_id`s a search returns. Search results are
collapsed by `chunk_id`, so a chunk written twice (two events for one object within the
collection's refresh interval) is still one passage.

Each task has its own similar-patient index (`similar_index_name`: its vectors have its own
dimensions and its documents its own coded fields). It holds the documents of every champion of
the task promoted, each with its `model_version`; a query filters on the version that scored the
request. Promotion loads a version with `_bulk` (no numpy: the promote Lambda has none) unless
the index already holds all of its documents (a rollback), and clears a partial load before
writing it again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clinrisk.explain.corpus import Chunk
from clinrisk.explain.ports import Embedder, Hit, IndexUnavailableError
from clinrisk.explain.retrieval import reciprocal_rank_fusion
from clinrisk.explain.similar import SimilarPatients, summarise
from clinrisk.explain.similar_documents import SimilarDocument, SimilarDocuments
from clinrisk.settings import DEFAULT_TASK, Settings
from clinrisk.tasks.readmission.explanation import SUMMARY_FIELDS as READMISSION_FIELDS

if TYPE_CHECKING:
    from clinrisk.taskspec.spec import TaskSpec

VECTOR_FIELD = "embedding"
_CANDIDATES = 20
_MAX_IDS = 500
_BULK_BATCH = 500
# The HNSW graph: faiss is the engine OpenSearch Serverless vector collections support.
_HNSW = {"name": "hnsw", "engine": "faiss", "parameters": {"m": 16, "ef_construction": 128}}


def knowledge_index_body(dimensions: int) -> dict[str, Any]:
    return {
        "settings": {"index": {"knn": True, "knn.algo_param.ef_search": 100}},
        "mappings": {
            "properties": {
                VECTOR_FIELD: {
                    "type": "knn_vector",
                    "dimension": dimensions,
                    "method": {**_HNSW, "space_type": "innerproduct"},  # unit vectors: cosine
                },
                "chunk_id": {"type": "keyword"},
                "doc_id": {"type": "keyword"},
                "task": {"type": "keyword"},
                "factors": {"type": "keyword"},
                "heading": {"type": "text"},
                "text": {"type": "text"},
                # The passage as stored (JSON), not searched: AWS::OpenSearchServerless::Index declares only
                # text, keyword, integer and knn_vector fields, so no disabled object field.
                "chunk": {"type": "text", "index": False},
            }
        },
    }


def similar_index_name(base: str, task: str) -> str:
    """Each task's own similar-patient index (its vectors have its own dimensions); readmission's keeps its name."""
    return base if task == DEFAULT_TASK else f"{base}-{task}"


def task_similar_index(base: str, spec: TaskSpec) -> tuple[str, dict[str, Any]]:
    """A task's similar-patient index, as the CDK app declares it: its name, and its body with one
    dimension per factor (readmission's 28 factors; a task file's feature columns) and its coded fields."""
    if spec.name == DEFAULT_TASK:
        from clinrisk.tasks.readmission.factors import FACTORS

        return similar_index_name(base, spec.name), similar_index_body(len(FACTORS), READMISSION_FIELDS)
    from clinrisk.taskspec.summary_fields import summary_fields

    body = similar_index_body(len(spec.feature_columns), summary_fields(spec))
    return similar_index_name(base, spec.name), body


def similar_index_body(dimensions: int, fields: Sequence[str] = READMISSION_FIELDS) -> dict[str, Any]:
    return {
        "settings": {"index": {"knn": True, "knn.algo_param.ef_search": 100}},
        "mappings": {
            "properties": {
                VECTOR_FIELD: {"type": "knn_vector", "dimension": dimensions, "method": {**_HNSW, "space_type": "l2"}},
                "model_version": {"type": "integer"},
                "outcome": {"type": "integer"},  # the CloudFormation index declares no `byte`
                **{name: {"type": "keyword"} for name in fields},
            }
        },
    }


def collection_endpoint(settings: Settings, ssm: Any = None) -> str:
    """The collection endpoint: the setting, else the SSM parameter the Explain stack writes it to."""
    explain = settings.explain
    if explain.opensearch_endpoint:
        return explain.opensearch_endpoint
    if not explain.opensearch_endpoint_parameter:
        raise IndexUnavailableError("neither CLINRISK_EXPLAIN__OPENSEARCH_ENDPOINT nor its _PARAMETER is set")
    import boto3  # type: ignore[import-untyped]
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    client = ssm or boto3.client("ssm", region_name=settings.aws_region)
    try:
        endpoint = str(client.get_parameter(Name=explain.opensearch_endpoint_parameter)["Parameter"]["Value"]).strip()
    except (BotoCoreError, ClientError) as error:
        why = type(error).__name__
        raise IndexUnavailableError(f"the collection endpoint parameter could not be read: {why}") from None
    if not endpoint.startswith("https://"):
        raise IndexUnavailableError("the collection endpoint parameter does not hold an https URL")
    return endpoint


def aoss_client(settings: Settings) -> Any:
    """An opensearch-py client signing every request with SigV4 for the `aoss` service."""
    import boto3
    from opensearchpy import OpenSearch, Urllib3AWSV4SignerAuth, Urllib3HttpConnection

    endpoint = collection_endpoint(settings)
    session = boto3.Session(region_name=settings.aws_region)
    auth = Urllib3AWSV4SignerAuth(session.get_credentials(), session.region_name, "aoss")
    return OpenSearch(
        hosts=[endpoint],
        http_auth=auth,
        use_ssl=True,
        verify_certs=True,
        connection_class=Urllib3HttpConnection,
        timeout=settings.explain.budget_seconds / 2,
        max_retries=1,
    )


def _call(what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """Every request in one place: transport failures become IndexUnavailableError (the domain degrades)."""
    from opensearchpy.exceptions import OpenSearchException

    try:
        return call(*args, **kwargs)
    except OpenSearchException as error:
        raise IndexUnavailableError(f"OpenSearch {what} failed: {type(error).__name__}") from None


@dataclass(frozen=True)
class OpenSearchKnowledgeIndex:
    client: Any
    index: str
    embedder: Embedder

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenSearchKnowledgeIndex:
        from clinrisk.adapters.bedrock import TitanEmbedder

        return cls(aoss_client(settings), settings.explain.knowledge_index, TitanEmbedder.from_settings(settings))

    # ------------------------------------------------------------------ ingest side

    def doc_ids(self) -> set[str]:
        body = {"size": 0, "aggs": {"docs": {"terms": {"field": "doc_id", "size": 10_000}}}}
        response = _call("search", self.client.search, index=self.index, body=body)
        return {bucket["key"] for bucket in response["aggregations"]["docs"]["buckets"]}

    def chunk_ids(self, doc_id: str) -> set[str]:
        return set(self._stored(doc_id))

    def put(self, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            return
        vectors = self.embedder.embed([c.searchable for c in chunks])
        lines: list[dict[str, Any]] = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            lines += [{"index": {"_index": self.index}}, self._document(chunk, vector)]
        self._bulk(lines)

    def delete(self, chunk_ids: Collection[str]) -> None:
        wanted = set(chunk_ids)
        if not wanted:
            return
        by_doc = self._stored_by_chunk_ids(wanted)
        self._bulk([{"delete": {"_index": self.index, "_id": _id}} for ids in by_doc.values() for _id in ids])

    # ------------------------------------------------------------------ query side

    def search(self, query: str, *, task: str, k: int, factor: str | None = None) -> list[Hit]:
        vector = self.embedder.embed([query])[0]
        filters: list[dict[str, Any]] = [{"term": {"task": task}}]
        if factor is not None:
            filters.append({"term": {"factors": factor}})
        requests = [
            {"index": self.index},
            self.knn_query(vector, filters),
            {"index": self.index},
            self.bm25_query(query, filters),
        ]
        response = _call("msearch", self.client.msearch, body=requests)
        rankings, chunks = [], {}
        for result in response["responses"]:
            if "error" in result:
                raise IndexUnavailableError(f"OpenSearch search failed: {result['error'].get('type', 'error')}")
            ranking = []
            for hit in result["hits"]["hits"]:
                chunk = Chunk.model_validate_json(hit["_source"]["chunk"])
                chunks[chunk.id] = chunk
                ranking.append(chunk.id)
            rankings.append(list(dict.fromkeys(ranking)))  # collapse duplicates of one chunk
        return [Hit(chunks[i], score) for i, score in reciprocal_rank_fusion(rankings)[:k]]

    @staticmethod
    def knn_query(vector: Any, filters: list[dict[str, Any]]) -> dict[str, Any]:
        """k-NN with an efficient (pre-)filter inside the knn clause."""
        knn = {"vector": [float(x) for x in vector], "k": _CANDIDATES, "filter": {"bool": {"filter": filters}}}
        return {"size": _CANDIDATES, "_source": ["chunk"], "query": {"knn": {VECTOR_FIELD: knn}}}

    @staticmethod
    def bm25_query(query: str, filters: list[dict[str, Any]]) -> dict[str, Any]:
        must = {"multi_match": {"query": query, "fields": ["text", "heading^2"]}}
        return {"size": _CANDIDATES, "_source": ["chunk"], "query": {"bool": {"must": [must], "filter": filters}}}

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _document(chunk: Chunk, vector: Any) -> dict[str, Any]:
        return {
            VECTOR_FIELD: [float(x) for x in vector],
            "chunk_id": chunk.id,
            "doc_id": chunk.doc_id,
            "task": chunk.task,
            "factors": list(chunk.factors),
            "heading": " > ".join(chunk.heading_path),
            "text": chunk.text,
            "chunk": chunk.model_dump_json(),
        }

    def _stored(self, doc_id: str) -> dict[str, list[str]]:
        return self._matching({"term": {"doc_id": doc_id}})

    def _stored_by_chunk_ids(self, chunk_ids: set[str]) -> dict[str, list[str]]:
        return self._matching({"terms": {"chunk_id": sorted(chunk_ids)}})

    def _matching(self, query: dict[str, Any]) -> dict[str, list[str]]:
        """chunk id → the `_id`s holding it (more than one if it was written twice)."""
        body = {"size": _MAX_IDS, "_source": ["chunk_id"], "query": query}
        response = _call("search", self.client.search, index=self.index, body=body)
        stored: dict[str, list[str]] = {}
        for hit in response["hits"]["hits"]:
            stored.setdefault(hit["_source"]["chunk_id"], []).append(hit["_id"])
        return stored

    def _bulk(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        response = _call("bulk", self.client.bulk, body=lines)
        if response.get("errors"):
            failed = sum(1 for item in response["items"] if next(iter(item.values())).get("error"))
            raise IndexUnavailableError(f"OpenSearch bulk: {failed} of {len(response['items'])} actions failed")


@dataclass(frozen=True)
class OpenSearchSimilarPatientIndex:
    """The champion's training encounters by per-factor SHAP vector; the adapter reads the k
    nearest (outcome and coded fields only, never the vector or an identifier) and returns their
    aggregate."""

    client: Any
    index: str
    fields: tuple[str, ...] = READMISSION_FIELDS  # the task's coded summary fields

    @classmethod
    def from_settings(cls, settings: Settings, task: str = DEFAULT_TASK) -> OpenSearchSimilarPatientIndex:
        from clinrisk.taskspec.catalogue import configured_tasks_dir, find_task
        from clinrisk.taskspec.summary_fields import summary_fields

        index = similar_index_name(settings.explain.similar_index, task)
        if task == DEFAULT_TASK:
            return cls(aoss_client(settings), index)
        return cls(aoss_client(settings), index, summary_fields(find_task(task, configured_tasks_dir(settings)).spec))

    def summarise(self, vector: Sequence[float], *, model_version: int, k: int) -> SimilarPatients:
        body = self.query(vector, model_version=model_version, k=k, fields=self.fields)
        response = _call("search", self.client.search, index=self.index, body=body)
        rows = [hit["_source"] for hit in response["hits"]["hits"]][:k]
        if len(rows) < k:
            raise IndexUnavailableError(
                f"the similar-patient index holds fewer than {k} encounters of v{model_version}"
            )
        fields = {name: [str(row[name]) for row in rows] for name in self.fields}
        return summarise([int(row["outcome"]) for row in rows], fields, model_version=model_version)

    @staticmethod
    def query(
        vector: Sequence[float], *, model_version: int, k: int, fields: Sequence[str] = READMISSION_FIELDS
    ) -> dict[str, Any]:
        knn = {
            "vector": [float(x) for x in vector],
            "k": k,
            "filter": _version_filter(model_version),
        }
        return {"size": k, "_source": ["outcome", *fields], "query": {"knn": {VECTOR_FIELD: knn}}}

    def load(self, version: int, documents: SimilarDocuments) -> None:
        stored = self.count(version)
        if stored == documents.header.rows:
            return  # already loaded: a rollback to this version, or a promotion run again
        if stored:
            self.delete_version(version, stored)
        try:
            batch: list[dict[str, Any]] = []
            for document in documents:
                batch += [{"index": {"_index": self.index}}, self.document(version, document)]
                if len(batch) == 2 * _BULK_BATCH:
                    self._bulk(version, batch)
                    batch = []
            self._bulk(version, batch)
        except Exception:
            # Leave no partial version behind: explanations of it degrade (too few neighbours)
            # rather than aggregate over a subset. Best effort: the collection may be what failed.
            with contextlib.suppress(IndexUnavailableError):
                self.delete_version(version, documents.header.rows)
            raise

    @staticmethod
    def document(version: int, document: SimilarDocument) -> dict[str, Any]:
        return {VECTOR_FIELD: document.vector, "model_version": version, "outcome": document.outcome, **document.fields}

    def count(self, version: int) -> int:
        body = {"size": 0, "track_total_hits": True, "query": _version_filter(version)}
        response = _call("search", self.client.search, index=self.index, body=body)
        return int(response["hits"]["total"]["value"])

    def delete_version(self, version: int, expected: int) -> None:
        """Delete a version's documents by `_id` (vector collections have no custom ids), a page at a time."""
        for _ in range(expected // _MAX_IDS + 2):
            body = {"size": _MAX_IDS, "_source": False, "query": _version_filter(version)}
            response = _call("search", self.client.search, index=self.index, body=body)
            ids = [hit["_id"] for hit in response["hits"]["hits"]]
            if not ids:
                return
            self._bulk(version, [{"delete": {"_index": self.index, "_id": _id}} for _id in ids])

    def _bulk(self, version: int, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        response = _call("bulk", self.client.bulk, body=lines)
        if response.get("errors"):
            raise IndexUnavailableError(f"OpenSearch bulk of similar patients failed for v{version}")


def _version_filter(version: int) -> dict[str, Any]:
    return {"bool": {"filter": [{"term": {"model_version": version}}]}}
