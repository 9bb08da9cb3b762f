"""A live gateway whose arms can be stalled, failed or made late, and whose recorded outcomes are kept.

Real parts throughout: gRPC on 127.0.0.1 port 0, qdrant-edge, the session's embedder. The only thing
injected is time: the fault-injecting backend's delay is a `Stall` (held until released or
cancelled, or a jump of the gateway's clock), so no test sleeps.
"""

from __future__ import annotations

import asyncio
import functools
import pathlib
from dataclasses import dataclass

import numpy as np

from searchgw.embedder.client import EmbedderClient
from searchgw.gateway.backends import EdgeBackend, FaultInjectingBackend
from searchgw.gateway.client import GatewayClient, stage
from searchgw.gateway.embedding import TextEmbedder
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.routing import Arm
from searchgw.gateway.server import GatewayServer, create_server
from searchgw.errors import SearchgwError
from searchgw.v1 import rollout_service_pb2 as roll_pb
from searchgw.testing import ManualClock, SteppableClock
from tests import rigs
from tests.rigs import gateway_settings

DIMENSION = 384
#: Long enough that no test waits for it: a call ends by its deadline, its cancellation, or a Stall.
PATIENT_TIMEOUT_S = 60.0


class Stall:
    """The fault injector's `sleep`: hold each faulted call until `release()` (or its cancellation),
    or, with `jump_s`, move the gateway's clock on by that much and return at once."""

    def __init__(self, clock: SteppableClock) -> None:
        self._clock = clock
        self._released = asyncio.Event()
        self._changed = asyncio.Event()
        self.jump_s = 0.0
        #: Calls inside the stall now.
        self.held = 0

    async def __call__(self, seconds: float) -> None:
        if self.jump_s:
            self._clock.advance(self.jump_s)
            return
        self._count(+1)
        try:
            await self._released.wait()
        finally:
            self._count(-1)

    def _count(self, change: int) -> None:
        self.held += change
        self._changed.set()

    async def wait_held(self, count: int, *, at_most: bool = False, timeout_s: float = 10.0) -> None:
        """Until `count` calls are held (or, with `at_most`, no more than `count`)."""
        async with asyncio.timeout(timeout_s):
            while (self.held > count) if at_most else (self.held < count):
                self._changed.clear()
                await self._changed.wait()

    def release(self) -> None:
        self._released.set()


@dataclass(frozen=True)
class Recorded:
    """One call of RolloutController.record, as the core made it."""

    rollout: str
    arm: Arm
    code_name: str
    latency_s: float
    key: str


class RecordSpy:
    """Wraps a controller's `record`: keeps every call (and still counts it) and lets a test wait for them."""

    def __init__(self, controller) -> None:
        self.calls: list[Recorded] = []
        self._original = controller.record
        self._changed = asyncio.Event()
        controller.record = self

    def __call__(self, rollout: str, arm: Arm, code_name: str, latency_s: float, key: str = "") -> None:
        self.calls.append(Recorded(rollout, arm, code_name, latency_s, key))
        self._original(rollout, arm, code_name, latency_s, key)
        self._changed.set()

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Recorded]:
        """The first `count` records, once they are in (the server records after the client's deadline)."""
        async with asyncio.timeout(timeout_s):
            while len(self.calls) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.calls[:count]


class OutcomeRig:
    def __init__(self, tmp_path: pathlib.Path, embedder_address: str) -> None:
        self.tmp_path = tmp_path
        self.embedder_address = embedder_address
        self.clock = SteppableClock()
        self.stall = Stall(self.clock)
        self._closers: list = []

    async def start(self, *, embedder: TextEmbedder | None = None,
                    **overrides) -> tuple[GatewayServer, GatewayClient, RecordSpy]:
        backend = FaultInjectingBackend(EdgeBackend(self.tmp_path / "edge"), sleep=self.stall)
        if embedder is None:
            embedder_client = EmbedderClient(self.embedder_address)
            self._closers.append(embedder_client.close)
            embedder = RemoteEmbedder(embedder_client, timeout_s=10.0, clock=self.clock)
        server = await create_server(gateway_settings(self.tmp_path, **overrides), backend=backend,
                                     embedder=embedder, clock=self.clock, rollout_clock=ManualClock(),
                                     run_controller=False)
        self._closers.append(lambda: server.stop(0))
        client = GatewayClient(server.address)
        self._closers.append(client.close)
        return server, client, RecordSpy(server.controller)

    async def close(self) -> None:
        for close in reversed(self._closers):
            await close()


def unit_vector(seed: int = 0) -> list[float]:
    vector = np.random.default_rng(seed).normal(size=DIMENSION).astype(np.float32)
    return (vector / np.linalg.norm(vector)).tolist()


#: docs → docs-v1 (primary) and docs-v2 (canary), a few points each, written as vectors
#: (`canary_model=` names the canary's embedding model).
two_arms = functools.partial(rigs.two_arms, points=[{"id": i + 1, "vector": unit_vector(i)} for i in range(8)],
                             dimension=DIMENSION)


async def start_rollout(client: GatewayClient, weight_percent: float = 100.0) -> None:
    """Rollout r1 of docs to docs-v2 that stays at `weight_percent` for the whole test."""
    policy = roll_pb.AnalysisPolicy(min_requests_per_arm=10, max_consecutive_failures=2, max_total_failures=4)
    policy.interval.FromSeconds(10)
    policy.window.FromSeconds(30)
    stages = [stage(weight_percent, 3600, 0)] + ([stage(100)] if weight_percent < 100 else [])
    await client.create_rollout("r1", "docs", "docs-v2", analysis=policy, stages=stages)


def key_on(server: GatewayServer, arm: Arm, start: int = 0) -> str:
    """A routing key the router sends to `arm` of docs's rollout."""
    return next(key for key in (f"user-{i}" for i in range(start, start + 10_000))
                if server.router.route("docs", key).arm is arm)


async def search_error(call) -> SearchgwError:
    """The error a search call ends with (it must fail)."""
    try:
        response = await call
    except SearchgwError as exc:
        return exc
    raise AssertionError(f"the search succeeded: {response}")
