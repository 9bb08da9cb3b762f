"""QdrantBackend: a Qdrant server (gRPC preferred) or qdrant-client's local mode, via AsyncQdrantClient.

`location` is a server URL (`http://host:6333`; with `prefer_grpc` the client talks gRPC to port
6334, or to the port a `?grpc_port=N` query names, as in `http://host:6333?grpc_port=7334`; `timeout`
is in whole seconds, qdrant-client rounds it up), or `":memory:"` / a directory path for
qdrant-client's local mode. Local mode is an in-process stand-in for tests and small set-ups: it
has no HNSW index (a search scans every point), keeps no quantization config, and its calls run on
the event loop.

Aliases are Qdrant's own; a switch is one `update_collection_aliases` call holding the delete and
the create, which the server applies atomically. A collection's embedding model is kept in the
collection's metadata (`metadata.embedding_model`), which server and local mode both store.

To check vector sizes without I/O the backend keeps each collection's spec (a collection's spec
never changes, but for its payload indexes, which `get_collection`, an ordered scroll and the index
calls read afresh from the server's payload schema), and a snapshot of the collection and alias names
for `resolve` and the data calls. Payload indexes are the server's own (`create_payload_index`);
qdrant-client's local mode builds none, so there their declarations live in the collection's metadata
(`metadata.payload_indexes`, JSON) and the filters scan.
The snapshot is refreshed by this backend's own changes, on a name it does not know, and when older
than `names_ttl` seconds — so an alias switched by another process is seen within that time.

Snapshots wrap the server's collection snapshot API. `create_snapshot` asks the server for one and
returns once it is written (`wait=True`): the server copies the collection's segments as they are
at that moment, while writes go on (a write acknowledged before the call is in it; one made during
it may or may not be), and keeps the archive (with its SHA-256) in its own snapshot directory,
`<snapshots_path>/<collection>/` — so a snapshot is as durable as that directory. The API lists
snapshots per collection, so `restore_snapshot` finds one among the snapshots of the collections
that exist now (a deleted collection's are out of reach) and has the server recover it into the
new name from its own REST URL (`snapshot_url`, by default `location`: set it when the server
reaches itself at another address), passing the checksum so the server verifies the download. Recovering
onto an existing collection would overwrite it, so the new name is checked first; another client
that creates that name between the check and the recover would lose it (the server has no
create-only recover). qdrant-client's local mode has no snapshots: creating or restoring one fails
with FailedPrecondition, and a collection's list is empty.

Errors: a server that cannot be reached or times out, or answers 5xx / 429, is Unavailable; 404 is
NotFound and 409 AlreadyExists; anything else from the engine is unexpected and passes through.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, TypedDict, cast
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit
from uuid import UUID

import numpy as np
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from searchgw.gateway.backends._catalog import _index_from_json
from searchgw.gateway.backends.types import (
    BM25_VECTOR,
    DEFAULT_QUANTILE,
    Bm25Config,
    Bm25Tokenizer,
    CollectionInfo,
    CollectionSpec,
    Condition,
    Distance,
    FieldCondition,
    Filter,
    IndexBuild,
    FusionMethod,
    HasId,
    IsEmpty,
    IsNull,
    OrderBy,
    PayloadIndex,
    PayloadIndexType,
    Point,
    PointId,
    ScalarQuantization,
    ScoredPoint,
    ScrollPage,
    SearchParams,
    SearchMode,
    SearchQuery,
    SnapshotInfo,
    StoredPoint,
    TextIndexParams,
    Tokenizer,
)
from searchgw.gateway.rules import (
    aliases_of,
    check_key,
    bm25_text,
    check_name,
    check_search_mode,
    check_snapshot_name,
    checked_filter,
    checked_ids,
    checked_order_by,
    checked_payload_index,
    checked_points,
    checked_query,
    checked_selector,
    normalized_spec,
    point_id,
    refuse_if_aliased,
    with_payload_index,
    without_payload_index,
)
from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, SearchgwError, Unavailable

_EMBEDDING_MODEL_KEY = "embedding_model"
#: The collection metadata key that keeps a collection's BM25 config (the server keeps only the sparse
#: vector's IDF modifier; the BM25 parameters travel with every document and query as the model's options).
_BM25_KEY = "bm25"
#: The server-side BM25 inference model of Qdrant ≥ 1.15.2.
BM25_MODEL = "qdrant/bm25"
#: qdrant-client's local mode accepts payload indexes but keeps none (it has no index to build): there
#: the backend keeps their declarations in the collection's metadata under this key, as JSON.
_LOCAL_INDEXES_KEY = "payload_indexes"

_DISTANCES = {
    Distance.COSINE: models.Distance.COSINE,
    Distance.DOT: models.Distance.DOT,
    Distance.EUCLID: models.Distance.EUCLID,
    Distance.MANHATTAN: models.Distance.MANHATTAN,
}
_DISTANCES_BACK = {engine: domain for domain, engine in _DISTANCES.items()}
#: gRPC status codes (by name: this package does not import grpc) that mean "try again later".
_UNAVAILABLE_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"}


def _grpc_code_name(exc: Exception) -> str | None:
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    try:
        name: object = code().name
    except Exception:  # not a gRPC error after all
        return None
    return name if isinstance(name, str) else None


@contextmanager
def _engine_errors(subject: str) -> Iterator[None]:
    """Translate the client's errors for the expected cases; `subject` names what was asked for."""
    try:
        yield
    except SearchgwError:
        raise
    except UnexpectedResponse as exc:
        status = exc.status_code
        if status == 404:
            raise NotFound(f"{subject} does not exist") from exc
        if status == 409:
            raise AlreadyExists(f"{subject} exists") from exc
        if status is None or status == 429 or status >= 500:
            raise Unavailable(f"the Qdrant server failed ({status}) on {subject}; retry") from exc
        raise
    except ResponseHandlingException as exc:
        raise Unavailable(f"the Qdrant server cannot be reached ({type(exc.source).__name__}: {exc.source})") from exc
    except OSError as exc:  # refused connections and timeouts (TimeoutError is an OSError)
        raise Unavailable(f"the Qdrant server cannot be reached ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:
        code = _grpc_code_name(exc)
        if code in _UNAVAILABLE_CODES:
            raise Unavailable(f"the Qdrant server cannot be reached ({code})") from exc
        if code == "NOT_FOUND":
            raise NotFound(f"{subject} does not exist") from exc
        if code == "ALREADY_EXISTS":
            raise AlreadyExists(f"{subject} exists") from exc
        raise


# -- domain ⇄ client models ---------------------------------------------------------------------
_INDEX_SCHEMAS = {
    PayloadIndexType.KEYWORD: models.PayloadSchemaType.KEYWORD,
    PayloadIndexType.INTEGER: models.PayloadSchemaType.INTEGER,
    PayloadIndexType.FLOAT: models.PayloadSchemaType.FLOAT,
    PayloadIndexType.BOOL: models.PayloadSchemaType.BOOL,
    PayloadIndexType.DATETIME: models.PayloadSchemaType.DATETIME,
    PayloadIndexType.UUID: models.PayloadSchemaType.UUID,
    PayloadIndexType.TEXT: models.PayloadSchemaType.TEXT,
}
_INDEX_TYPES_BACK = {schema: kind for kind, schema in _INDEX_SCHEMAS.items()}
_TOKENIZERS = {
    Tokenizer.WORD: models.TokenizerType.WORD,
    Tokenizer.WHITESPACE: models.TokenizerType.WHITESPACE,
    Tokenizer.PREFIX: models.TokenizerType.PREFIX,
    Tokenizer.MULTILINGUAL: models.TokenizerType.MULTILINGUAL,
}
_TOKENIZERS_BACK = {engine: domain for domain, engine in _TOKENIZERS.items()}


def _index_schema(index: PayloadIndex) -> Any:
    """The client's schema for a checked index (`rules.checked_payload_index`)."""
    if index.type is not PayloadIndexType.TEXT:
        return _INDEX_SCHEMAS[index.type]
    assert index.text is not None  # checked_payload_index fills a text index's params
    return models.TextIndexParams(type=models.TextIndexType.TEXT, tokenizer=_TOKENIZERS[index.text.tokenizer],
                                  lowercase=index.text.lowercase, min_token_len=index.text.min_token_length or None,
                                  max_token_len=index.text.max_token_length or None)


def _index_from_info(key: str, info: models.PayloadIndexInfo) -> PayloadIndex | None:
    """The domain index of a field the server reports; None for a kind searchgw does not declare (geo)."""
    kind = _INDEX_TYPES_BACK.get(models.PayloadSchemaType(info.data_type))
    if kind is None:
        return None
    if kind is not PayloadIndexType.TEXT:
        return PayloadIndex(key, kind)
    params = info.params if isinstance(info.params, models.TextIndexParams) else models.TextIndexParams(
        type=models.TextIndexType.TEXT)
    tokenizer = _TOKENIZERS_BACK.get(params.tokenizer or models.TokenizerType.WORD, Tokenizer.WORD)
    return PayloadIndex(key, kind, TextIndexParams(tokenizer=tokenizer,
                                                   lowercase=True if params.lowercase is None else params.lowercase,
                                                   min_token_length=params.min_token_len or 0,
                                                   max_token_length=params.max_token_len or 0))


def _field_condition(condition: FieldCondition) -> Any:
    """The new kinds of field test (text, datetime range, values count); None for the others."""
    if condition.text is not None:
        return models.FieldCondition(key=condition.key, match=models.MatchText(text=condition.text))
    if condition.datetime_range is not None:
        dates = condition.datetime_range
        bounds = {name: None if getattr(dates, name) is None else datetime.fromisoformat(getattr(dates, name))
                  for name in ("gt", "gte", "lt", "lte")}
        return models.FieldCondition(key=condition.key, range=models.DatetimeRange(**bounds))
    if condition.values_count is not None:
        counts = condition.values_count
        return models.FieldCondition(key=condition.key, values_count=models.ValuesCount(
            gt=counts.gt, gte=counts.gte, lt=counts.lt, lte=counts.lte))
    return None


def _condition(condition: Condition) -> Any:
    if isinstance(condition, Filter):
        return _filter(condition)
    if isinstance(condition, HasId):
        return models.HasIdCondition(has_id=list(condition.ids))
    if isinstance(condition, IsNull):
        return models.IsNullCondition(is_null=models.PayloadField(key=condition.key))
    if isinstance(condition, IsEmpty):
        return models.IsEmptyCondition(is_empty=models.PayloadField(key=condition.key))
    client_condition = _field_condition(condition)
    if client_condition is not None:
        return client_condition
    if condition.range is not None:
        bounds = condition.range
        return models.FieldCondition(key=condition.key, range=models.Range(gt=bounds.gt, gte=bounds.gte,
                                                                           lt=bounds.lt, lte=bounds.lte))
    if condition.any_keyword is not None:
        return models.FieldCondition(key=condition.key, match=models.MatchAny(any=list(condition.any_keyword)))
    value = next(v for v in (condition.keyword, condition.integer, condition.boolean) if v is not None)
    return models.FieldCondition(key=condition.key, match=models.MatchValue(value=value))


def _search_params(params: SearchParams | None) -> models.SearchParams | None:
    if params is None:
        return None
    quantization = None
    if params.quantization is not None:
        q = params.quantization
        quantization = models.QuantizationSearchParams(ignore=q.ignore, rescore=q.rescore, oversampling=q.oversampling)
    return models.SearchParams(hnsw_ef=params.hnsw_ef, exact=params.exact, quantization=quantization)


def _filter(filter: Filter) -> models.Filter:
    def clause(conditions: tuple[Condition, ...]) -> list[Any] | None:
        return [_condition(c) for c in conditions] or None

    min_should = None
    if filter.min_should is not None:
        min_should = models.MinShould(conditions=[_condition(c) for c in filter.min_should.conditions],
                                      min_count=filter.min_should.min_count)
    return models.Filter(must=clause(filter.must), should=clause(filter.should), must_not=clause(filter.must_not),
                         min_should=min_should)


def bm25_options(config: Bm25Config) -> dict[str, Any]:
    """The `qdrant/bm25` model's options for a config (Qdrant's Bm25Config, by its JSON names)."""
    return {"k": config.k1, "b": config.b, "avg_len": config.avg_len, "language": config.language,
            "tokenizer": config.tokenizer.value}


def _bm25_document(text: str, config: Bm25Config) -> models.Document:
    return models.Document(text=text, model=BM25_MODEL, options=bm25_options(config))


def _bm25_from_metadata(metadata: dict[str, Any]) -> Bm25Config | None:
    stored = metadata.get(_BM25_KEY)
    if not isinstance(stored, dict):
        return None
    return Bm25Config(k1=float(stored["k1"]), b=float(stored["b"]), avg_len=float(stored["avg_len"]),
                      language=str(stored["language"]), tokenizer=Bm25Tokenizer(stored["tokenizer"]))


def _dense(vector: Any) -> Any:
    """The unnamed dense vector of a record (a point with a BM25 vector has its vectors by name)."""
    return vector[""] if isinstance(vector, dict) else vector


def _stored_point(record: models.Record) -> StoredPoint:
    vector = (np.zeros(0, dtype=np.float32) if record.vector is None
              else np.asarray(_dense(record.vector), dtype=np.float32))
    return StoredPoint(id=_domain_id(record.id), vector=vector, payload=dict(record.payload or {}))


def _indexes_to_json(indexes: Sequence[PayloadIndex]) -> str:
    return json.dumps([asdict(index) for index in indexes], separators=(",", ":"))


def _declared_indexes(name: str, info: models.CollectionInfo, local: bool) -> tuple[PayloadIndex, ...]:
    """A collection's payload indexes: the server's payload schema, or (local mode) the declarations
    kept in its metadata."""
    if local:
        declared = (info.config.metadata or {}).get(_LOCAL_INDEXES_KEY)
        indexes = [_index_from_json(entry) for entry in json.loads(declared)] if isinstance(declared, str) else []
    else:
        indexes = [index for key, schema in (info.payload_schema or {}).items()
                   if (index := _index_from_info(key, schema)) is not None]
    return tuple(sorted(indexes, key=lambda index: index.key))


def _spec_from_info(name: str, info: models.CollectionInfo, local: bool = False) -> CollectionSpec:
    vectors = info.config.params.vectors
    if not isinstance(vectors, models.VectorParams):
        raise FailedPrecondition(f"collection {name!r} has named vectors; searchgw serves one unnamed dense vector")
    hnsw = info.config.hnsw_config
    quantization = info.config.quantization_config
    scalar = None
    if isinstance(quantization, models.ScalarQuantization):
        scalar = ScalarQuantization(quantile=quantization.scalar.quantile or DEFAULT_QUANTILE,
                                    always_ram=bool(quantization.scalar.always_ram))
    return CollectionSpec(
        name=name,
        dimension=vectors.size,
        distance=_DISTANCES_BACK[vectors.distance],
        hnsw_m=hnsw.m,
        hnsw_ef_construct=hnsw.ef_construct,
        full_scan_threshold=hnsw.full_scan_threshold,
        scalar_quantization=scalar,
        embedding_model=str((info.config.metadata or {}).get(_EMBEDDING_MODEL_KEY, "")),
        payload_indexes=_declared_indexes(name, info, local),
        bm25=(_bm25_from_metadata(info.config.metadata or {})
              if BM25_VECTOR in (info.config.params.sparse_vectors or {}) else None),
    )


def _snapshot_info(collection: str, description: models.SnapshotDescription) -> SnapshotInfo:
    created = 0.0
    if description.creation_time:  # ISO 8601, UTC, without a zone
        moment = datetime.fromisoformat(description.creation_time)
        created = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    return SnapshotInfo(name=description.name, collection=collection, size_bytes=description.size,
                        create_time=created, checksum=description.checksum or "")


def _domain_id(engine_id: int | str | UUID) -> PointId:
    """A point id as the domain has it: a UUID (the client may parse one) as its string form."""
    return str(engine_id) if isinstance(engine_id, UUID) else engine_id


class _ServerOptions(TypedDict, total=False):
    """The client options a server location's query may name."""

    grpc_port: int


def _server_url(location: str) -> tuple[str, _ServerOptions]:
    """A server URL without its query, and the client options the query names (only `grpc_port`)."""
    parts = urlsplit(location)
    query = parse_qs(parts.query, keep_blank_values=True)
    options: _ServerOptions = {}
    for key, values in query.items():
        port = values[0] if key == "grpc_port" and len(values) == 1 else ""
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"location: {location!r} has a query other than one grpc_port=N (1 to 65535)")
        options["grpc_port"] = int(port)
    return urlunsplit(parts._replace(query="")), options


def _client(location: str, api_key: str | None, timeout: float, prefer_grpc: bool) -> AsyncQdrantClient:
    if location.startswith(("http://", "https://")):
        url, options = _server_url(location)
        # No compatibility check: it would be a blocking request in the constructor.
        # qdrant-client annotates `timeout` as int but takes seconds as a float (httpx and grpc timeouts).
        # cloud_inference: documents (BM25 texts) go to the server, which embeds them (Qdrant ≥ 1.15.2
        # runs `qdrant/bm25` itself); otherwise the client would embed them with fastembed.
        return AsyncQdrantClient(url=url, api_key=api_key, timeout=timeout,  # type: ignore[arg-type]
                                 prefer_grpc=prefer_grpc, check_compatibility=False, cloud_inference=True,
                                 **options)
    if location == ":memory:":
        return AsyncQdrantClient(location=":memory:")
    return AsyncQdrantClient(path=location)


@dataclass(frozen=True)
class _Names:
    """The collection and alias names as the server reported them at `taken_at`."""

    collections: frozenset[str] = frozenset()
    aliases: dict[str, str] = field(default_factory=dict)
    taken_at: float = -math.inf


class QdrantBackend:
    """A Qdrant server or qdrant-client local mode; see the module docstring."""

    kind = "qdrant"

    def __init__(self, location: str, *, api_key: str | None = None, timeout: float = 10.0,
                 prefer_grpc: bool = True, names_ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, snapshot_url: str = "") -> None:
        if not location:
            raise ValueError("location: a Qdrant URL, ':memory:' or a directory path is required")
        self._client = _client(location, api_key, timeout, prefer_grpc)
        #: qdrant-client's local mode (no server): it has no snapshots.
        self._local = not location.startswith(("http://", "https://"))
        self._api_key = api_key
        self._snapshot_url = (snapshot_url or ("" if self._local else _server_url(location)[0])).rstrip("/")
        self._names_ttl = names_ttl
        self._clock = clock
        self._names = _Names()
        self._specs: dict[str, CollectionSpec] = {}
        self._closed = False

    # -- names and specs ---------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the qdrant backend is closed")

    async def _fresh_names(self) -> _Names:
        self._check_open()
        with _engine_errors("the collection list"):
            collections = await self._client.get_collections()
            aliases = await self._client.get_aliases()
        self._names = _Names(
            collections=frozenset(c.name for c in collections.collections),
            aliases={a.alias_name: a.collection_name for a in aliases.aliases},
            taken_at=self._clock(),
        )
        return self._names

    @staticmethod
    def _lookup(names: _Names, name: str) -> str | None:
        return names.aliases.get(name) or (name if name in names.collections else None)

    async def resolve(self, name: str) -> str:
        self._check_open()
        names = self._names
        physical = None if self._clock() - names.taken_at > self._names_ttl else self._lookup(names, name)
        if physical is None:  # an old snapshot, or a name it does not hold: ask the server
            physical = self._lookup(await self._fresh_names(), name)
        if physical is None:
            raise NotFound(f"collection or alias {name!r} does not exist")
        return physical

    async def _spec(self, physical: str) -> CollectionSpec:
        spec = self._specs.get(physical)
        if spec is None:
            with self._forgetting(physical):
                info = await self._client.get_collection(physical)
            spec = self._specs[physical] = _spec_from_info(physical, info, self._local)
        return spec

    @contextmanager
    def _forgetting(self, physical: str) -> Iterator[None]:
        """Engine errors translated; a collection the server no longer has is forgotten."""
        try:
            with _engine_errors(f"collection {physical!r}"):
                yield
        except NotFound:
            self._specs.pop(physical, None)
            self._names = _Names()
            raise

    async def _target(self, name: str) -> tuple[str, CollectionSpec]:
        physical = await self.resolve(name)
        return physical, await self._spec(physical)

    # -- collections -------------------------------------------------------------------------
    async def create_collection(self, spec: CollectionSpec) -> CollectionInfo:
        spec = normalized_spec(spec)
        names = await self._fresh_names()
        if spec.name in names.collections or spec.name in names.aliases:
            raise AlreadyExists(f"a collection or alias named {spec.name!r} exists")
        quantization = None
        if spec.scalar_quantization is not None:
            quantization = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
                type=models.ScalarType.INT8, quantile=spec.scalar_quantization.quantile,
                always_ram=spec.scalar_quantization.always_ram))
        sparse = None
        if spec.bm25 is not None:
            if self._local:
                raise FailedPrecondition(
                    "collection.bm25: qdrant-client's local mode has no BM25 inference; use a Qdrant server "
                    "(≥ 1.15.2) or the edge backend", metadata={"field": "collection.bm25"})
            sparse = {BM25_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)}
        with _engine_errors(f"collection {spec.name!r}"):
            await self._client.create_collection(
                spec.name,
                vectors_config=models.VectorParams(size=spec.dimension, distance=_DISTANCES[spec.distance]),
                sparse_vectors_config=sparse,
                hnsw_config=models.HnswConfigDiff(m=spec.hnsw_m, ef_construct=spec.hnsw_ef_construct,
                                                  full_scan_threshold=spec.full_scan_threshold),
                quantization_config=quantization,
                metadata=self._metadata(spec),
            )
            if not self._local:
                for index in spec.payload_indexes:
                    await self._client.create_payload_index(spec.name, index.key, field_schema=_index_schema(index),
                                                            wait=True)
        self._specs[spec.name] = spec
        self._names = _Names()
        return CollectionInfo(spec=spec, points_count=0)

    async def get_collection(self, name: str) -> CollectionInfo:
        names = await self._fresh_names()
        physical = self._lookup(names, name)
        if physical is None:
            raise NotFound(f"collection or alias {name!r} does not exist")
        spec = await self._spec_afresh(physical)  # its payload indexes may have changed elsewhere
        return CollectionInfo(spec=spec, points_count=await self.count(physical),
                              aliases=aliases_of(physical, names.aliases))

    async def list_collections(self) -> list[CollectionInfo]:
        names = await self._fresh_names()
        return [await self.get_collection(name) for name in sorted(names.collections)]

    async def delete_collection(self, name: str) -> None:
        names = await self._fresh_names()
        if name not in names.collections:
            raise NotFound(f"collection {name!r} does not exist" + (
                " (it is an alias: delete_alias removes it)" if name in names.aliases else ""))
        refuse_if_aliased(name, names.aliases)
        with self._forgetting(name):
            await self._client.delete_collection(name)
        self._specs.pop(name, None)
        self._names = _Names()

    # -- aliases -----------------------------------------------------------------------------
    async def update_alias(self, alias: str, collection: str) -> str | None:
        check_name("alias", alias)
        names = await self._fresh_names()
        if collection not in names.collections:
            raise NotFound(f"collection {collection!r} does not exist" + (
                " (it is an alias; point at a collection)" if collection in names.aliases else ""))
        if alias in names.collections:
            raise AlreadyExists(f"{alias!r} is a collection; an alias needs a name of its own")
        previous = names.aliases.get(alias)
        if previous == collection:
            return previous
        actions: list[Any] = []
        if previous is not None:
            actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        actions.append(models.CreateAliasOperation(
            create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)))
        with _engine_errors(f"alias {alias!r}"):
            await self._client.update_collection_aliases(actions)
        self._names = _Names()
        return previous

    async def delete_alias(self, alias: str) -> None:
        names = await self._fresh_names()
        if alias not in names.aliases:
            raise NotFound(f"alias {alias!r} does not exist")
        with _engine_errors(f"alias {alias!r}"):
            await self._client.update_collection_aliases(
                [models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))])
        self._names = _Names()

    async def list_aliases(self) -> dict[str, str]:
        return dict(sorted((await self._fresh_names()).aliases.items()))

    # -- points ------------------------------------------------------------------------------
    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        physical, spec = await self._target(collection)
        checked = checked_points(physical, spec.dimension, points)
        if not checked:
            return
        structs = [models.PointStruct(id=p.id, vector=self._vector(spec, p), payload=p.payload) for p in checked]
        with self._forgetting(physical):
            await self._client.upsert(physical, points=structs, wait=True)

    @staticmethod
    def _vector(spec: CollectionSpec, point: Point) -> Any:
        """The dense vector, and with a BM25 config the point's text as a `qdrant/bm25` document, which
        the server turns into the sparse vector (a point without a text has none)."""
        dense = cast(list[float], point.vector)  # checked_points gives vectors in engine form (list[float])
        text = None if spec.bm25 is None else bm25_text(point.payload)
        if spec.bm25 is None or text is None:
            return dense
        return {"": dense, BM25_VECTOR: _bm25_document(text, spec.bm25)}

    async def delete_points(self, collection: str, *, ids: Sequence[PointId] | None = None,
                            filter: Filter | None = None) -> None:
        physical, _ = await self._target(collection)
        selector = checked_selector(ids, filter)
        if isinstance(selector, Filter):
            points_selector: Any = models.FilterSelector(filter=_filter(selector))
        elif selector:
            point_ids: list[models.ExtendedPointId] = list(selector)
            points_selector = models.PointIdsList(points=point_ids)
        else:
            return
        with self._forgetting(physical):
            await self._client.delete(physical, points_selector=points_selector, wait=True)

    async def search(self, collection: str, query: SearchQuery) -> list[ScoredPoint]:
        physical, spec = await self._target(collection)
        query = checked_query(physical, spec.dimension, query)
        check_search_mode(spec, query, collection)
        query_filter = None if query.filter is None else _filter(query.filter)
        # checked_query made the vector a list[float] (empty for a sparse query, which has none)
        scoring: Any = cast(list[float], query.vector)
        using: str | None = None
        prefetch: list[models.Prefetch] | None = None
        if query.mode is not SearchMode.DENSE:
            assert spec.bm25 is not None and query.text is not None  # check_search_mode
            document = _bm25_document(query.text, spec.bm25)
            scoring, using = document, BM25_VECTOR
            if query.mode is SearchMode.HYBRID:
                depth = query.fusion.prefetch_for(query.limit, query.offset)
                prefetch = [models.Prefetch(query=cast(list[float], query.vector), limit=depth, filter=query_filter),
                            models.Prefetch(query=document, using=BM25_VECTOR, limit=depth, filter=query_filter)]
                using = None
                scoring = (models.RrfQuery(rrf=models.Rrf(k=query.fusion.rrf_k))
                           if query.fusion.method is FusionMethod.RRF
                           else models.FusionQuery(fusion=models.Fusion.DBSF))
        with self._forgetting(physical):
            response = await self._client.query_points(
                physical,
                query=scoring,
                using=using,
                prefetch=prefetch,
                limit=query.limit,
                offset=query.offset,
                query_filter=query_filter,
                score_threshold=query.score_threshold,
                with_payload=query.with_payload,
                with_vectors=False,
                search_params=_search_params(query.params),
            )
        return [ScoredPoint(id=_domain_id(hit.id), score=hit.score,
                            payload=dict(hit.payload or {}) if query.with_payload else None)
                for hit in response.points]

    async def count(self, collection: str, filter: Filter | None = None) -> int:
        physical, _ = await self._target(collection)
        checked = None if filter is None else _filter(checked_filter("filter", filter))
        with self._forgetting(physical):
            return (await self._client.count(physical, count_filter=checked, exact=True)).count

    async def scroll(self, collection: str, *, offset: PointId | None = None, limit: int = 256,
                     filter: Filter | None = None, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = True) -> ScrollPage:
        physical, spec = await self._target(collection)
        if offset is not None:
            offset = point_id("offset", offset)
        checked = None if filter is None else checked_filter("filter", filter)
        client_order = None
        if order_by is not None:
            spec = await self._spec_afresh(physical)  # its indexes may have changed since it was cached
            order_by = checked_order_by(spec, order_by)
            if offset is not None:
                raise InvalidArgument("offset", "an ordered scroll starts at order_by.start_from, not at an id")
            client_order = models.OrderBy(key=order_by.key, start_from=order_by.start_from,
                                          direction=models.Direction.DESC if order_by.descending
                                          else models.Direction.ASC)
        with self._forgetting(physical):
            records, next_offset = await self._client.scroll(
                physical, scroll_filter=None if checked is None else _filter(checked), limit=max(1, limit),
                offset=offset, order_by=client_order, with_payload=bool(with_payload),
                with_vectors=bool(with_vector))
        points = tuple(_stored_point(record) for record in records)
        if order_by is not None:
            return ScrollPage(points, None, tuple(r.order_value for r in records if r.order_value is not None))
        return ScrollPage(points, None if next_offset is None else _domain_id(cast(int | str, next_offset)))

    async def retrieve(self, collection: str, ids: Sequence[PointId], *, with_payload: bool = True,
                       with_vector: bool = False) -> list[StoredPoint]:
        physical, _ = await self._target(collection)
        checked = checked_ids("ids", ids)
        if not checked:
            return []
        with self._forgetting(physical):
            records = await self._client.retrieve(physical, ids=checked, with_payload=bool(with_payload),
                                                  with_vectors=bool(with_vector))
        found = {point.id: point for point in map(_stored_point, records)}
        return [found[i] for i in dict.fromkeys(checked) if i in found]

    def _metadata(self, spec: CollectionSpec) -> dict[str, Any]:
        metadata: dict[str, Any] = {_EMBEDDING_MODEL_KEY: spec.embedding_model}
        if self._local:
            metadata[_LOCAL_INDEXES_KEY] = _indexes_to_json(spec.payload_indexes)
        if spec.bm25 is not None:
            bm25 = spec.bm25
            metadata[_BM25_KEY] = {"k1": bm25.k1, "b": bm25.b, "avg_len": bm25.avg_len, "language": bm25.language,
                                   "tokenizer": bm25.tokenizer.value}
        return metadata

    async def _change_indexes(self, physical: str, updated: CollectionSpec, apply: Callable[[], Any]) -> None:
        """Apply an index change: on a server, `apply()` (the engine's call); in local mode, the new
        declarations in the collection's metadata."""
        with self._forgetting(physical):
            if self._local:
                await self._client.update_collection(physical, metadata=self._metadata(updated))
            else:
                await apply()

    async def _spec_afresh(self, physical: str) -> CollectionSpec:
        """The spec with the payload indexes as the server has them now (the rest never changes, and
        local mode reports no HNSW settings: the cached spec keeps what it was created with)."""
        with self._forgetting(physical):
            info = await self._client.get_collection(physical)
        fresh = _spec_from_info(physical, info, self._local)
        cached = self._specs.get(physical)
        spec = self._specs[physical] = fresh if cached is None else replace(cached,
                                                                            payload_indexes=fresh.payload_indexes)
        return spec

    # -- payload indexes ---------------------------------------------------------------------
    async def create_payload_index(self, collection: str, index: PayloadIndex) -> CollectionInfo:
        index = checked_payload_index("index", index)
        physical = await self.resolve(collection)
        updated = with_payload_index(await self._spec_afresh(physical), index)  # the limit, before any change
        await self._change_indexes(physical, updated, lambda: self._client.create_payload_index(
            physical, index.key, field_schema=_index_schema(index), wait=True))
        return await self.get_collection(physical)

    async def delete_payload_index(self, collection: str, key: str) -> CollectionInfo:
        check_key("key", key)
        physical = await self.resolve(collection)
        updated = without_payload_index(await self._spec_afresh(physical), key)  # NotFound when it has none
        await self._change_indexes(physical, updated,
                                   lambda: self._client.delete_payload_index(physical, key, wait=True))
        return await self.get_collection(physical)

    async def optimize(self, collection: str) -> IndexBuild:
        """Nothing to do: a Qdrant server indexes by itself (and local mode has no index)."""
        await self.resolve(collection)
        return IndexBuild()

    # -- snapshots ---------------------------------------------------------------------------
    def _refuse_local(self, action: str) -> None:
        if self._local:
            raise FailedPrecondition(f"cannot {action}: qdrant-client's local mode keeps no snapshots; "
                                     "use a Qdrant server (an http(s) URL) or the edge backend")

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        physical = await self.resolve(collection)
        self._refuse_local(f"snapshot collection {physical!r}")
        with self._forgetting(physical):
            description = await self._client.create_snapshot(physical, wait=True)
        if description is None:  # only without wait
            raise Unavailable(f"the Qdrant server did not describe the snapshot of {physical!r}; list them")
        return _snapshot_info(physical, description)

    async def list_snapshots(self, collection: str) -> list[SnapshotInfo]:
        check_name("collection", collection)
        physical = await self.resolve(collection)
        if self._local:
            return []
        with self._forgetting(physical):
            descriptions = await self._client.list_snapshots(physical)
        return sorted((_snapshot_info(physical, d) for d in descriptions), key=lambda s: (s.create_time, s.name))

    async def _find_snapshot(self, snapshot: str, collections: frozenset[str]) -> SnapshotInfo:
        # The server names a snapshot after its collection: look there first.
        for collection in sorted(collections, key=lambda c: (not snapshot.startswith(f"{c}-"), c)):
            try:
                with _engine_errors(f"collection {collection!r}"):
                    descriptions = await self._client.list_snapshots(collection)
            except NotFound:  # deleted meanwhile
                continue
            for description in descriptions:
                if description.name == snapshot:
                    return _snapshot_info(collection, description)
        raise NotFound(f"snapshot {snapshot!r} does not exist (among the snapshots of the collections there are now)")

    async def restore_snapshot(self, snapshot: str, collection: str) -> CollectionInfo:
        check_snapshot_name("snapshot", snapshot)
        check_name("collection", collection)
        names = await self._fresh_names()
        if collection in names.collections or collection in names.aliases:
            raise AlreadyExists(f"a collection or alias named {collection!r} exists; restore into a new name")
        self._refuse_local(f"restore snapshot {snapshot!r}")
        source = await self._find_snapshot(snapshot, names.collections)
        location = (f"{self._snapshot_url}/collections/{quote(source.collection, safe='')}"
                    f"/snapshots/{quote(snapshot, safe='')}")
        with _engine_errors(f"snapshot {snapshot!r}"):
            await self._client.recover_snapshot(collection, location, api_key=self._api_key,
                                                checksum=source.checksum or None, wait=True)
        self._names = _Names()
        return await self.get_collection(collection)

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        check_name("collection", collection)
        check_snapshot_name("snapshot", snapshot)
        physical = await self.resolve(collection)
        self._refuse_local(f"delete snapshot {snapshot!r}")
        with _engine_errors(f"snapshot {snapshot!r} of collection {physical!r}"):
            await self._client.delete_snapshot(physical, snapshot, wait=True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.close()
