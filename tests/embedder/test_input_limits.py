"""The embedder's input limits: a violation is refused with a short message whatever the input's size."""

from __future__ import annotations

import grpc
import pytest

from searchgw.v1 import embed_service_pb2 as embed_pb
from searchgw.v1 import embed_service_pb2_grpc as embed_grpc

HUGE = "z" * 1_000_000


async def test_an_unknown_huge_model_name_is_not_found_with_a_short_message(embedder_server):
    async with grpc.aio.insecure_channel(embedder_server.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await embed_grpc.EmbedServiceStub(channel).Embed(embed_pb.EmbedRequest(texts=["hi"], model=HUGE),
                                                             timeout=30)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(info.value.details()) < 400 and "1000000 characters" in info.value.details()
