"""Chunked documents: the ids, payload keys and surplus filter of a document written in chunks. Pure.

An Upsert with `chunking` (and `searchgw ingest --chunk-tokens`) writes a point's text as chunks cut by
the collection model's own tokenizer (the embedder's ChunkText). For the document with id D:

- chunk i has the id `uuid5(CHUNK_NAMESPACE, "D/i")` (D as written: decimal digits for an integer id,
  the canonical lower-case UUID otherwise), so re-writing D gives its chunks the same ids and replaces
  them;
- its payload is the document's payload plus `_searchgw_doc` = D (integer or string, as the id is),
  `_searchgw_chunk` = i and `_searchgw_text` = the chunk's text;
- after the new chunks are written, the document's points with `_searchgw_chunk` ≥ the new count
  (left by a longer earlier version) and a point with the id D itself (an earlier unchunked write of
  it) are deleted (`surplus_filters`). Writing first and deleting second means a failure between the
  two leaves extra old chunks (fixed by the next write), never a document with chunks missing.

The keys are reserved: a client's payload may not set them (`check_reserved_keys`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from searchgw.errors import InvalidArgument
from searchgw.gateway.backends.types import FieldCondition, Filter, Payload, PointId, Range
from searchgw.gateway.rules import TEXT_PAYLOAD_KEY

#: The namespace of every chunk id (uuid5). Never change it: chunk ids would change.
CHUNK_NAMESPACE = uuid.UUID("3d0f6d8e-2b7c-5a41-9e6f-0c8b5a7d4e21")
#: The payload key holding the id of the document a chunk belongs to (group searches by it).
DOC_PAYLOAD_KEY = "_searchgw_doc"
#: The payload key holding a chunk's number in its document, from 0.
CHUNK_PAYLOAD_KEY = "_searchgw_chunk"
#: Keys only the gateway writes.
RESERVED_KEYS = (DOC_PAYLOAD_KEY, CHUNK_PAYLOAD_KEY)


def chunk_id(document: PointId, number: int) -> str:
    """The id of chunk `number` of `document` (a canonical id: an int, or a canonical UUID string)."""
    if number < 0:
        raise ValueError(f"chunk number {number} is negative")
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{document}/{number}"))


def chunk_payload(payload: Mapping[str, object], document: PointId, number: int, text: str) -> Payload:
    """The payload of chunk `number` of `document`: the document's payload and the reserved keys."""
    return {**payload, TEXT_PAYLOAD_KEY: text, DOC_PAYLOAD_KEY: document, CHUNK_PAYLOAD_KEY: number}


def _document_is(document: PointId) -> FieldCondition:
    if isinstance(document, int):
        return FieldCondition(DOC_PAYLOAD_KEY, integer=document)
    return FieldCondition(DOC_PAYLOAD_KEY, keyword=document)


#: Documents per surplus filter: each costs 3 of a filter's MAX_FILTER_CONDITIONS (256) conditions.
DOCUMENTS_PER_FILTER = 64


def surplus_filters(counts: Sequence[tuple[PointId, int]]) -> list[Filter]:
    """Filters matching, for each (document, new chunk count), its chunks numbered from that count on;
    one filter per `DOCUMENTS_PER_FILTER` documents."""
    return [
        Filter(should=tuple(
            Filter(must=(_document_is(document), FieldCondition(CHUNK_PAYLOAD_KEY, range=Range(gte=count))))
            for document, count in counts[start:start + DOCUMENTS_PER_FILTER]))
        for start in range(0, len(counts), DOCUMENTS_PER_FILTER)
    ]


def check_reserved_keys(field: str, payload: Mapping[str, object]) -> None:
    """A client's payload may not set the chunk keys (InvalidArgument naming `field.<key>`)."""
    for key in RESERVED_KEYS:
        if key in payload:
            raise InvalidArgument(f"{field}.{key}", "is reserved for the gateway's chunked writes (the document id "
                                                    "and chunk number of a chunk); leave it out")


__all__ = ["CHUNK_NAMESPACE", "DOCUMENTS_PER_FILTER", "CHUNK_PAYLOAD_KEY", "DOC_PAYLOAD_KEY", "RESERVED_KEYS", "check_reserved_keys",
           "chunk_id", "chunk_payload", "surplus_filters"]
