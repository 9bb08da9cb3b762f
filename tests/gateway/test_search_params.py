"""SearchRequest.params (issue 14.3): the per-query knobs through the gateway — limits refused as
INVALID_ARGUMENT naming the field, an exact search's answer, and page tokens bound to the knobs.
(The knobs' behaviour on each engine is in the backend contract: tests/gateway/test_backend_contract.py.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from searchgw.errors import InvalidArgument, SearchgwError
from searchgw.gateway.backends.types import QuantizationParams, SearchParams
from searchgw.gateway.rules import MAX_HNSW_EF, MAX_OVERSAMPLING, checked_params
from searchgw.v1 import search_service_pb2 as search_pb

DIM = 4


def test_the_rules_keep_defaults_unset_and_canonicalise_what_is_set():
    assert checked_params("params", None) is None
    assert checked_params("params", SearchParams()) == SearchParams()
    knobs = checked_params("params", SearchParams(hnsw_ef=MAX_HNSW_EF, exact=1, quantization=QuantizationParams(
        ignore=0, rescore=1, oversampling=16)))  # type: ignore[arg-type]
    assert knobs == SearchParams(hnsw_ef=MAX_HNSW_EF, exact=True, quantization=QuantizationParams(
        ignore=False, rescore=True, oversampling=MAX_OVERSAMPLING))
    assert isinstance(knobs.quantization.oversampling, float)


@pytest.mark.parametrize(("params", "field"), [
    (SearchParams(hnsw_ef=-1), "p.hnsw_ef"),
    (SearchParams(hnsw_ef=MAX_HNSW_EF + 1), "p.hnsw_ef"),
    (SearchParams(hnsw_ef=2.5), "p.hnsw_ef"),  # type: ignore[arg-type]
    (SearchParams(quantization=QuantizationParams(oversampling=0.99)), "p.quantization.oversampling"),
    (SearchParams(quantization=QuantizationParams(oversampling=math.inf)), "p.quantization.oversampling"),
    (SearchParams(quantization=QuantizationParams(oversampling="2")), "p.quantization.oversampling"),  # type: ignore[arg-type]
])
def test_the_rules_refuse_each_knob_out_of_its_limits_naming_it(params, field):
    with pytest.raises(InvalidArgument) as raised:
        checked_params("p", params)
    assert raised.value.field == field


async def _collection(client, count: int = 60) -> np.ndarray:
    vectors = np.random.default_rng(5).standard_normal((count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    await client.create_collection("vec", dimension=DIM)
    await client.upsert("vec", [{"id": i + 1, "vector": v.tolist()} for i, v in enumerate(vectors)])
    return vectors


@pytest.mark.parametrize("backend", ["edge", "qdrant"])
async def test_the_gateway_refuses_knobs_out_of_limits_naming_the_request_field(rig, backend):
    _, client = await rig.start(backend)
    vectors = await _collection(client)
    for params, field in [
        (search_pb.SearchParams(hnsw_ef=MAX_HNSW_EF + 1), "params.hnsw_ef"),
        (search_pb.SearchParams(quantization=search_pb.QuantizationSearchParams(oversampling=0.5)),
         "params.quantization.oversampling"),
    ]:
        with pytest.raises(SearchgwError) as raised:
            await client.search("vec", vector=vectors[0].tolist(), limit=5, params=params)
        assert (raised.value.code_name, raised.value.field) == ("INVALID_ARGUMENT", field)


@pytest.mark.parametrize("backend", ["edge", "qdrant"])
async def test_an_exact_search_through_the_gateway_pages_through_the_true_ranking(rig, backend):
    _, client = await rig.start(backend)
    vectors = await _collection(client)
    query = vectors[3] + 0.1
    truth = (np.argsort(-(vectors @ (query / np.linalg.norm(query))), kind="stable")[:10] + 1).tolist()
    exact = search_pb.SearchParams(exact=True, hnsw_ef=64)
    first = await client.search("vec", vector=query.tolist(), limit=5, params=exact)
    second = await client.search("vec", vector=query.tolist(), limit=5, params=exact,
                                 page_token=first.next_page_token)
    assert [p.id.num for p in first.points] + [p.id.num for p in second.points] == truth
    # the token is bound to the knobs too: the same query with other knobs (or none) cannot continue it
    for other in (None, search_pb.SearchParams(hnsw_ef=64)):
        with pytest.raises(SearchgwError) as raised:
            await client.search("vec", vector=query.tolist(), limit=5, params=other, page_token=first.next_page_token)
        assert (raised.value.code_name, raised.value.field) == ("INVALID_ARGUMENT", "page_token")
