"""Named and sparse vectors, server-side BM25 inference and prefetch + fusion queries, for the test server.

Qdrant ≥ 1.15.2 embeds a `Document` whose model is `qdrant/bm25` itself (no inference service): a point's
document becomes a sparse vector of term-frequency weights, a query's document one weight per distinct
token, and a sparse vector config with the IDF modifier weighs both at query time. This server does the
same with qdrant-edge's `Bm25`, which takes Qdrant's Bm25Config options under the same names.

Supported: a point's vectors as one unnamed dense vector, or by name (`""` dense, others sparse or a
`qdrant/bm25` document); a query `nearest` to a dense vector, a sparse vector or a document (with
`using`), `rrf` (k) or `fusion` (RRF with Qdrant's k = 2, DBSF) over `prefetch`es that are nearest
queries themselves. Anything else answers UNIMPLEMENTED.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe
from qdrant_client.grpc import points_pb2

from tests.qdrant_server._convert import dense_values, engine_filter, invalid, refuse_set_fields, unimplemented, \
    value_to_python

#: The model names Qdrant runs itself (it takes either case of the first letter).
BM25_MODELS = {"qdrant/bm25", "Qdrant/bm25"}
#: Qdrant's k for `fusion: RRF` without parameters.
QDRANT_RRF_K = 2
_TOKENIZERS = {"word": qe.TokenizerType.Word, "whitespace": qe.TokenizerType.Whitespace,
               "multilingual": qe.TokenizerType.Multilingual, "prefix": qe.TokenizerType.Prefix}
_OPTIONS = {"k", "b", "avg_len", "language", "tokenizer", "lowercase", "min_token_len", "max_token_len"}


def bm25_model(document: points_pb2.Document, where: str) -> qe.Bm25:
    """The BM25 model a document names, with its options (Qdrant's Bm25Config by JSON name)."""
    if document.model not in BM25_MODELS:
        raise unimplemented(f"{where}.model {document.model!r} (only qdrant/bm25 runs without an inference service)")
    options: dict[str, Any] = {key: value_to_python(value) for key, value in document.options.items()}
    unknown = set(options) - _OPTIONS
    if unknown:
        raise unimplemented(f"{where}.options {sorted(unknown)}")
    if "tokenizer" in options:
        tokenizer = _TOKENIZERS.get(str(options["tokenizer"]))
        if tokenizer is None:
            raise invalid(f"{where}.options.tokenizer: unknown tokenizer {options['tokenizer']!r}")
        options["tokenizer"] = tokenizer
    try:
        return qe.Bm25(qe.Bm25Config(**options))
    except (ValueError, TypeError) as exc:
        raise invalid(f"{where}.options: {exc}") from None


def _sparse(vector: points_pb2.SparseVector, where: str) -> qe.SparseVector:
    if len(vector.indices) != len(vector.values):
        raise invalid(f"{where}: a sparse vector needs as many indices as values")
    return qe.SparseVector(list(vector.indices), dense_values(vector.values, where))


def named_vectors(vectors: points_pb2.NamedVectors, where: str) -> tuple[dict[str, Any], list[float] | None]:
    """A point's vectors by name, documents embedded; and its unnamed dense vector, if any."""
    out: dict[str, Any] = {}
    dense = None
    for name, vector in vectors.vectors.items():
        kind = vector.WhichOneof("vector")
        at = f"{where}.{name or '<unnamed>'}"
        if kind == "dense" and name == "":
            dense = out[name] = dense_values(vector.dense.data, at)
        elif kind == "sparse" and name:
            out[name] = qe.SparseVector(list(vector.sparse.indices), dense_values(vector.sparse.values, at))
        elif kind == "document" and name:
            out[name] = bm25_model(vector.document, f"{at}.document").embed_document(vector.document.text)
        else:
            raise unimplemented(f"{at} of kind {kind} (the unnamed vector dense, named ones sparse or documents)")
    return out, dense


def nearest(query: points_pb2.Query, using: str, where: str) -> tuple[qe.Query, list[float] | None]:
    """A `nearest` query in engine form, and its dense vector (for the dimension check), if any."""
    if query.WhichOneof("variant") != "nearest":
        raise unimplemented(f"queries other than nearest ({where})")
    kind = query.nearest.WhichOneof("variant")
    if kind == "dense":
        if using:
            raise unimplemented(f"{where}: named dense vectors")
        vector = dense_values(query.nearest.dense.data, f"{where}.nearest.dense")
        return qe.Query.Nearest(vector), vector
    if not using:
        raise invalid(f"{where}: a {kind} query needs `using` (the sparse vector's name)")
    if kind == "sparse":
        return qe.Query.Nearest(_sparse(query.nearest.sparse, f"{where}.nearest.sparse"), using=using), None
    if kind == "document":
        model = bm25_model(query.nearest.document, f"{where}.nearest.document")
        return qe.Query.Nearest(model.embed_query(query.nearest.document.text), using=using), None
    raise unimplemented(f"{where}.nearest of kind {kind}")


def fusion(query: points_pb2.Query, where: str) -> Any:
    kind = query.WhichOneof("variant")
    if kind == "rrf":
        return qe.Fusion.Rrf(k=query.rrf.k if query.rrf.HasField("k") else QDRANT_RRF_K)
    if kind == "fusion":
        if query.fusion == points_pb2.Fusion.DBSF:
            return qe.Fusion.Dbsf()
        return qe.Fusion.Rrf(k=QDRANT_RRF_K)
    raise unimplemented(f"{where} of kind {kind} over prefetches (rrf or fusion only)")


def prefetches(request: Any, where: str) -> tuple[list[qe.Prefetch], list[list[float]], set[str]]:
    """The prefetch stages of a query (nearest queries, no nesting), the dense vectors and the names they use."""
    stages, dense, names = [], [], set()
    for i, stage in enumerate(request.prefetch):
        at = f"{where}.prefetch[{i}]"
        refuse_set_fields(stage, {"query", "using", "filter", "limit", "score_threshold"}, at)
        query, vector = nearest(stage.query, stage.using, f"{at}.query")
        if vector is not None:
            dense.append(vector)
        if stage.using:
            names.add(stage.using)
        stages.append(qe.Prefetch(
            limit=stage.limit if stage.HasField("limit") else 10, query=query,
            filter=engine_filter(stage.filter, f"{at}.filter") if stage.HasField("filter") else None,
            score_threshold=stage.score_threshold if stage.HasField("score_threshold") else None))
    return stages, dense, names


def fill_vectors_output(vector: Any, target: points_pb2.VectorsOutput) -> None:
    """A record's vectors: one unnamed dense vector, or by name (a point with a sparse vector)."""
    if not isinstance(vector, dict):
        target.vector.dense.data.extend(float(x) for x in vector)
        return
    for name, value in vector.items():
        output = target.vectors.vectors[name]
        if isinstance(value, qe.SparseVector):
            output.sparse.indices.extend(value.indices)
            output.sparse.values.extend(value.values)
        else:
            output.dense.data.extend(float(x) for x in value)
