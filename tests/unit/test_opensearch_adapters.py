"""OpenSearch Serverless through opensearch-py's real client, transport and SigV4 signer, with the
HTTP pool replaced by one that records each request and answers from a queue: index bodies, query
bodies (k-NN with filter, BM25, _msearch), bulk writes and deletes, and failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from opensearchpy import OpenSearch, Urllib3AWSV4SignerAuth, Urllib3HttpConnection

from clinrisk.adapters.local_embeddings import WordLlamaEmbedder
from clinrisk.adapters.opensearch import (
    OpenSearchKnowledgeIndex,
    OpenSearchSimilarPatientIndex,
    knowledge_index_body,
    similar_index_body,
)
from clinrisk.explain.corpus import parse_document
from clinrisk.explain.ports import IndexUnavailableError
from clinrisk.explain.similar_documents import SimilarDocument, SimilarDocuments, write_documents

ENDPOINT = "https://abc123.us-east-1.aoss.amazonaws.com"
DOC = (
    "---\nid: lace-index\ntitle: LACE\ntask: readmission\nsource: van Walraven C, et al. CMAJ 2010\n"
    "url: https://doi.org/10.1503/cmaj.091117\ndate: 2010-04-06\nfactors: time_in_hospital\n---\n"
    "# LACE\n## Length of stay\nLonger stays earn more points.\n## Acuity\nEmergent admissions add points.\n"
)
CHUNKS = parse_document(DOC, name="lace-index.md").chunks()
STALE = "lace-index#1-aaaaaaaaaaaaaaaa"


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[Any] = []

    def urlopen(self, method: str, url: str, body: Any, retries: Any = None, headers: Any = None, **_: Any) -> Any:
        self.requests.append({"method": method, "url": url, "body": body, "headers": dict(headers or {})})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return urllib3.HTTPResponse(
            body=json.dumps(answer).encode(), status=200, headers={"content-type": "application/json"}
        )

    def close(self) -> None:
        pass

    def ndjson(self, index: int) -> list[dict[str, Any]]:
        body = self.requests[index]["body"]
        return [json.loads(line) for line in body.decode().splitlines() if line]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> OpenSearch:
    class RecordingConnection(Urllib3HttpConnection):
        def _create_urllib3_pool(self) -> None:
            self.pool = recorder

    auth = Urllib3AWSV4SignerAuth(Credentials("testing", "testing"), "us-east-1", "aoss")
    return OpenSearch(hosts=[ENDPOINT], http_auth=auth, use_ssl=True, connection_class=RecordingConnection)


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


def hits(*sources: dict[str, Any], ids: Callable[[int], str] = lambda i: f"auto-{i}") -> dict[str, Any]:
    return {"hits": {"hits": [{"_id": ids(i), "_source": s} for i, s in enumerate(sources)]}}


def test_index_bodies_declare_hnsw_knn_vectors() -> None:
    knowledge = knowledge_index_body(512)
    vector = knowledge["mappings"]["properties"]["embedding"]
    assert knowledge["settings"]["index"]["knn"] is True
    assert vector == {
        "type": "knn_vector",
        "dimension": 512,
        "method": {
            "name": "hnsw",
            "engine": "faiss",
            "space_type": "innerproduct",
            "parameters": {"m": 16, "ef_construction": 128},
        },
    }
    assert knowledge["mappings"]["properties"]["text"] == {"type": "text"}  # BM25 (the default similarity)
    similar = similar_index_body(28)["mappings"]["properties"]
    assert similar["embedding"]["dimension"] == 28 and similar["embedding"]["method"]["space_type"] == "l2"
    assert set(similar) == {
        "embedding",
        "model_version",
        "outcome",
        "age",
        "discharge_group",
        "primary_diagnosis_group",
    }


def test_search_is_one_signed_msearch_of_knn_and_bm25_fused_by_rank(
    client: OpenSearch, recorder: Recorder, embedder: WordLlamaEmbedder
) -> None:
    first, second = (c.model_dump_json() for c in CHUNKS)
    recorder.answers.append({"responses": [hits({"chunk": first}, {"chunk": second}), hits({"chunk": second})]})
    found = OpenSearchKnowledgeIndex(client, "clinrisk-knowledge", embedder).search(
        "long stay", task="readmission", k=5, factor="time_in_hospital"
    )
    assert [h.chunk.id for h in found] == [CHUNKS[1].id, CHUNKS[0].id]  # in both rankings beats first in one
    request = recorder.requests[0]
    assert (request["method"], request["url"]) == ("POST", "/_msearch")
    auth = request["headers"]["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=testing/") and "/us-east-1/aoss/aws4_request" in auth
    assert "x-amz-content-sha256" in {k.lower() for k in request["headers"]}
    header, knn, header2, bm25 = recorder.ndjson(0)
    assert header == header2 == {"index": "clinrisk-knowledge"}
    filters = [{"term": {"task": "readmission"}}, {"term": {"factors": "time_in_hospital"}}]
    clause = knn["query"]["knn"]["embedding"]
    assert len(clause["vector"]) == 256 and clause["k"] == 20 and clause["filter"] == {"bool": {"filter": filters}}
    assert bm25["query"]["bool"] == {
        "must": [{"multi_match": {"query": "long stay", "fields": ["text", "heading^2"]}}],
        "filter": filters,
    }


def test_ingest_writes_new_chunks_with_bulk_and_deletes_stale_ones_by_id(
    client: OpenSearch, recorder: Recorder, embedder: WordLlamaEmbedder
) -> None:
    from clinrisk.explain.ingest import ingest_document

    index = OpenSearchKnowledgeIndex(client, "clinrisk-knowledge", embedder)
    # Stored: the first chunk (current) and one stale chunk, written twice.
    recorder.answers += [
        hits({"chunk_id": CHUNKS[0].id}, {"chunk_id": STALE}, {"chunk_id": STALE}),
        {"errors": False, "items": [{"index": {"status": 201}}]},
        hits({"chunk_id": STALE}, {"chunk_id": STALE}, ids=lambda i: f"old-{i}"),
        {"errors": False, "items": [{"delete": {"status": 200}}, {"delete": {"status": 200}}]},
    ]  # fmt: skip
    result = ingest_document(parse_document(DOC, name="lace-index.md"), index)
    assert (result.written, result.deleted, result.unchanged) == (1, 1, 1)
    assert recorder.ndjson(0) == [{"size": 500, "_source": ["chunk_id"], "query": {"term": {"doc_id": "lace-index"}}}]
    action, document = recorder.ndjson(1)
    assert action == {"index": {"_index": "clinrisk-knowledge"}}  # no _id: vector collections assign it
    assert document["chunk_id"] == CHUNKS[1].id and len(document["embedding"]) == 256
    assert document["factors"] == ["time_in_hospital"] and document["heading"] == "LACE > Acuity"
    assert recorder.ndjson(3) == [
        {"delete": {"_index": "clinrisk-knowledge", "_id": "old-0"}},
        {"delete": {"_index": "clinrisk-knowledge", "_id": "old-1"}},
    ]


def test_an_unreachable_collection_is_an_unavailable_index(
    client: OpenSearch, recorder: Recorder, embedder: WordLlamaEmbedder
) -> None:
    recorder.answers += [urllib3.exceptions.ProtocolError("connection refused")] * 2  # the client retries once
    with pytest.raises(IndexUnavailableError, match="ConnectionError"):
        OpenSearchKnowledgeIndex(client, "k", embedder).search("x", task="readmission", k=3)


def test_a_failed_bulk_action_is_reported(client: OpenSearch, recorder: Recorder, embedder: WordLlamaEmbedder) -> None:
    recorder.answers.append({"errors": True, "items": [{"index": {"status": 429, "error": {"type": "throttled"}}}]})
    with pytest.raises(IndexUnavailableError, match="1 of 1 actions failed"):
        OpenSearchKnowledgeIndex(client, "k", embedder).put(CHUNKS[:1])


def test_similar_patients_come_back_as_an_aggregate_of_the_k_nearest(client: OpenSearch, recorder: Recorder) -> None:
    rows = [
        {"outcome": i % 4 == 0, "age": "[70-80)", "discharge_group": "home", "primary_diagnosis_group": "circulatory"}
        for i in range(20)
    ]
    recorder.answers.append(hits(*rows))
    summary = OpenSearchSimilarPatientIndex(client, "clinrisk-similar-patients").summarise(
        [0.1] * 28, model_version=3, k=20
    )
    assert (summary.k, summary.readmitted, summary.model_version) == (20, 5, 3)
    body = json.loads(recorder.requests[0]["body"])
    assert recorder.requests[0]["url"] == "/clinrisk-similar-patients/_search"
    assert body["_source"] == ["outcome", "age", "discharge_group", "primary_diagnosis_group"]  # never the vector
    assert body["query"]["knn"]["embedding"]["k"] == 20
    assert body["query"]["knn"]["embedding"]["filter"] == {"bool": {"filter": [{"term": {"model_version": 3}}]}}


def test_fewer_neighbours_than_k_is_unavailable(client: OpenSearch, recorder: Recorder) -> None:
    recorder.answers.append(hits({"outcome": 1, "age": "a", "discharge_group": "b", "primary_diagnosis_group": "c"}))
    with pytest.raises(IndexUnavailableError, match="fewer than 20"):
        OpenSearchSimilarPatientIndex(client, "s").summarise([0.0] * 28, model_version=1, k=20)


def _similar_documents(tmp_path: Path, n: int) -> SimilarDocuments:
    fields = {"age": "[70-80)", "discharge_group": "home", "primary_diagnosis_group": "circulatory"}
    documents = [SimilarDocument(vector=[i / 100] * 28, outcome=i % 3 == 0, fields=fields) for i in range(n)]
    write_documents(tmp_path, factors=[f"f{i}" for i in range(28)], documents=documents)
    return SimilarDocuments(tmp_path)


def total(n: int) -> dict[str, Any]:
    return {"hits": {"total": {"value": n, "relation": "eq"}, "hits": []}}


BULK_OK = {"errors": False, "items": []}


def test_promotion_loads_a_version_with_bulk_in_batches(client: OpenSearch, recorder: Recorder, tmp_path: Path) -> None:
    documents = _similar_documents(tmp_path, 1200)
    recorder.answers += [total(0), BULK_OK, BULK_OK, BULK_OK]
    OpenSearchSimilarPatientIndex(client, "clinrisk-similar-patients").load(7, documents)
    count = recorder.requests[0]
    assert (count["method"], count["url"]) == ("POST", "/clinrisk-similar-patients/_search")
    assert json.loads(count["body"]) == {
        "size": 0,
        "track_total_hits": True,
        "query": {"bool": {"filter": [{"term": {"model_version": 7}}]}},
    }
    bulks = recorder.requests[1:]
    assert [(r["method"], r["url"]) for r in bulks] == [("POST", "/_bulk")] * 3
    assert "/us-east-1/aoss/aws4_request" in bulks[0]["headers"]["Authorization"]
    lines = [recorder.ndjson(i) for i in (1, 2, 3)]
    assert [len(batch) // 2 for batch in lines] == [500, 500, 200]
    action, document = lines[0][:2]
    assert action == {"index": {"_index": "clinrisk-similar-patients"}}  # no _id: vector collections assign it
    # Exactly the fields the index maps (similar_index_body), the vector at the mapped dimension.
    assert set(document) == set(similar_index_body(28)["mappings"]["properties"])
    assert document["model_version"] == 7 and document["outcome"] == 1 and len(document["embedding"]) == 28
    assert document["embedding"] == [0.0] * 28 and lines[2][-1]["embedding"] == [11.99] * 28


def test_a_version_already_loaded_is_not_written_again(client: OpenSearch, recorder: Recorder, tmp_path: Path) -> None:
    """A rollback promotes a version whose documents are still in the index: nothing is written."""
    documents = _similar_documents(tmp_path, 30)
    recorder.answers.append(total(30))
    OpenSearchSimilarPatientIndex(client, "s").load(4, documents)
    assert len(recorder.requests) == 1


def test_a_partial_load_is_cleared_before_the_version_is_written_again(
    client: OpenSearch, recorder: Recorder, tmp_path: Path
) -> None:
    documents = _similar_documents(tmp_path, 30)
    recorder.answers += [
        total(2),
        hits({}, {}, ids=lambda i: f"old-{i}"),
        BULK_OK,
        hits(),
        BULK_OK,
    ]  # fmt: skip
    OpenSearchSimilarPatientIndex(client, "s").load(4, documents)
    page = json.loads(recorder.requests[1]["body"])
    assert page == {"size": 500, "_source": False, "query": {"bool": {"filter": [{"term": {"model_version": 4}}]}}}
    assert recorder.ndjson(2) == [
        {"delete": {"_index": "s", "_id": "old-0"}},
        {"delete": {"_index": "s", "_id": "old-1"}},
    ]
    assert len(recorder.ndjson(4)) == 60


def test_a_failed_load_removes_what_it_wrote_and_fails(client: OpenSearch, recorder: Recorder, tmp_path: Path) -> None:
    documents = _similar_documents(tmp_path, 600)
    throttled = {"errors": True, "items": [{"index": {"status": 429, "error": {"type": "throttled"}}}]}
    recorder.answers += [total(0), BULK_OK, throttled, hits({}, ids=lambda i: f"new-{i}"), BULK_OK, hits()]
    with pytest.raises(IndexUnavailableError, match="bulk of similar patients failed for v9"):
        OpenSearchSimilarPatientIndex(client, "s").load(9, documents)
    assert recorder.ndjson(4) == [{"delete": {"_index": "s", "_id": "new-0"}}]
    assert recorder.answers == []


def _ssm_client() -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client("ssm", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def test_promote_reads_the_collection_endpoint_from_its_ssm_parameter() -> None:
    from botocore.stub import Stubber  # type: ignore[import-untyped]

    from clinrisk.adapters.opensearch import collection_endpoint
    from clinrisk.settings import Settings

    settings = Settings(backend="aws", explain={"opensearch_endpoint_parameter": "/clinrisk/dev/collection-endpoint"})
    ssm = _ssm_client()
    with Stubber(ssm) as stub:
        answer = {"Parameter": {"Name": "/clinrisk/dev/collection-endpoint", "Type": "String", "Value": ENDPOINT}}
        stub.add_response("get_parameter", answer, {"Name": "/clinrisk/dev/collection-endpoint"})
        stub.add_response("get_parameter", {"Parameter": {"Value": "http://plain.example"}}, None)
        stub.add_client_error("get_parameter", "ParameterNotFound", http_status_code=400)
        assert collection_endpoint(settings, ssm) == ENDPOINT
        with pytest.raises(IndexUnavailableError, match="does not hold an https URL"):
            collection_endpoint(settings, ssm)
        with pytest.raises(IndexUnavailableError, match="could not be read: ParameterNotFound"):
            collection_endpoint(settings, ssm)
    explicit = Settings(backend="aws", explain={"opensearch_endpoint": ENDPOINT, "opensearch_endpoint_parameter": "x"})
    assert collection_endpoint(explicit, object()) == ENDPOINT  # the setting wins; SSM is never called
    with pytest.raises(IndexUnavailableError, match="neither"):
        collection_endpoint(Settings(backend="aws"))


def test_each_task_has_its_own_similar_patient_index_with_its_own_fields(
    client: OpenSearch, recorder: Recorder
) -> None:
    """Heart disease's vectors have 13 dimensions and its documents its own coded fields (its subgroups),
    so it has an index of its own; readmission's keeps its name."""
    from clinrisk.adapters.opensearch import similar_index_name, task_similar_index
    from clinrisk.taskspec.catalogue import find_task

    heart = find_task("heart-disease").spec
    name, body = task_similar_index("clinrisk-similar-patients", heart)
    assert (
        name
        == similar_index_name("clinrisk-similar-patients", "heart-disease")
        == "clinrisk-similar-patients-heart-disease"
    )
    assert body["mappings"]["properties"]["embedding"]["dimension"] == 13
    assert set(body["mappings"]["properties"]) == {"embedding", "model_version", "outcome", "sex", "age_band", "site"}
    assert (
        task_similar_index("clinrisk-similar-patients", find_task("readmission").spec)[0] == "clinrisk-similar-patients"
    )
    rows = [{"outcome": i % 2, "sex": "1", "age_band": "55-65", "site": "cleveland"} for i in range(20)]
    recorder.answers.append(hits(*rows))
    summary = OpenSearchSimilarPatientIndex(client, name, ("sex", "age_band", "site")).summarise(
        [0.0] * 13, model_version=2, k=20
    )
    assert (summary.k, summary.readmitted) == (20, 10)
    assert summary.distributions == {"sex": {"1": 20}, "age_band": {"55-65": 20}, "site": {"cleveland": 20}}
    assert recorder.requests[0]["url"] == f"/{name}/_search"
    assert json.loads(recorder.requests[0]["body"])["_source"] == ["outcome", "sex", "age_band", "site"]
