"""Small real grpc.aio servers with scripted behaviour, for the load generator to drive.

`ScriptedSearch` answers by routing key: `arm_of(key)` names the arm (and whether it was a fallback),
keys in `failing` get UNAVAILABLE. With `delay_s` each call takes that long; with `one_at_a_time`
calls are served strictly one after another, so arrivals faster than 1 / delay_s queue up. Every
servicer keeps a `Seen` record of what it answered, to hold the load generator's report against.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from searchgw.v1 import common_pb2, embed_service_pb2, embed_service_pb2_grpc, search_service_pb2
from searchgw.v1 import search_service_pb2_grpc

_ARMS = {"primary": common_pb2.ARM_PRIMARY, "canary": common_pb2.ARM_CANARY}


@dataclass
class Seen:
    """What a servicer answered: counts by (status code, arm, fallback), and each call's metadata."""

    outcomes: Counter = field(default_factory=Counter)
    metadata: list[dict[str, str]] = field(default_factory=list)
    requests: list = field(default_factory=list)

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    def count(self, *, code: str | None = None, arm: str | None = None, fallback: bool | None = None) -> int:
        return sum(n for (c, a, f), n in self.outcomes.items()
                   if code in (None, c) and arm in (None, a) and fallback in (None, f))


def key_number(key: str) -> int:
    return int(key.removeprefix("user-"))


class ScriptedSearch(search_service_pb2_grpc.SearchServiceServicer):
    def __init__(self, *, arm_of: Callable[[str], tuple[str, bool]] = lambda key: ("primary", False),
                 failing: Callable[[str], bool] = lambda key: False, delay_s: float = 0.0,
                 one_at_a_time: bool = False) -> None:
        self.seen = Seen()
        self._arm_of = arm_of
        self._failing = failing
        self._delay_s = delay_s
        self._gate = asyncio.Lock() if one_at_a_time else contextlib.nullcontext()

    async def Search(self, request, context):
        metadata = dict(context.invocation_metadata())
        self.seen.metadata.append(metadata)
        self.seen.requests.append(request)
        key = request.routing_key or metadata.get("x-routing-key", "")
        async with self._gate:
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
        if self._failing(key):
            self.seen.outcomes["UNAVAILABLE", "none", False] += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"backend for {key} is down")
        arm, fallback = self._arm_of(key)
        self.seen.outcomes["OK", arm, fallback] += 1
        route = common_pb2.Route(arm=_ARMS[arm], collection=f"docs-{arm}", fallback=fallback)
        return search_service_pb2.SearchResponse(route=route)

    async def Upsert(self, request, context):
        self.seen.requests.append(request)
        self.seen.outcomes["OK", "none", False] += 1
        return search_service_pb2.UpsertResponse(upserted=len(request.points), collections=["docs"])


class ScriptedEmbed(embed_service_pb2_grpc.EmbedServiceServicer):
    def __init__(self) -> None:
        self.seen = Seen()

    async def Embed(self, request, context):
        self.seen.requests.append(request)
        self.seen.outcomes["OK", "none", False] += 1
        embeddings = [embed_service_pb2.Embedding(values=[1.0, 0.0]) for _ in request.texts]
        return embed_service_pb2.EmbedResponse(embeddings=embeddings, model="stub", dimension=2)


@contextlib.asynccontextmanager
async def serving(*, search: ScriptedSearch | None = None, embed: ScriptedEmbed | None = None,
                  credentials: grpc.ServerCredentials | None = None) -> AsyncIterator[str]:
    """Serve on 127.0.0.1 port 0; yields the host:port target."""
    server = grpc.aio.server()
    if search is not None:
        search_service_pb2_grpc.add_SearchServiceServicer_to_server(search, server)
    if embed is not None:
        embed_service_pb2_grpc.add_EmbedServiceServicer_to_server(embed, server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
