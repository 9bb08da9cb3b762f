"""create_server(settings): the gateway, its rollout controller, health, metrics and lifecycle.

Start-up: open the backend, restore rollouts from the store (RUNNING ones resume at their stage and
weight), connect to the embedder (or start one in-process), probe both once, then SERVING. Shutdown
on SIGTERM: health NOT_SERVING, new calls refused, in-flight calls finish within the grace period,
the controller stops (every transition is already persisted), the backend is closed.

Assembly: the backend is wrapped once — `_NameTrackingBackend` (the metrics' known collection names),
then `InstrumentedBackend` (timing, tracing, engine failures as UNAVAILABLE) — and that one served
backend is given to every service: SearchCore, CollectionAdmin, the rollout controller's alias
switches and demo seeding. The embedder is a `TextEmbedder`: the gRPC `RemoteEmbedder` when
`--embedder-addr` is set (gated by its dependency probe), or the one a caller passes.

Dependencies: besides one health entry per service, the health service has one per dependency,
`searchgw.dependency.embedder` and `searchgw.dependency.backend`, SERVING while its last probe (every
`PROBE_INTERVAL_S`) succeeded; the gateway's own entries stay SERVING (vector searches need no
embedder). See `gateway.dependencies`.

Rollout state: `--state sqlite` (one replica) or `--state redis://…`, shared by every replica
(`SharedState`: the Redis store, the leadership lease, the counts exchange and the state feed, run as
the tasks `rollout-leadership` and `rollout-state-feed`). Redis is then the dependency `state`, and
`searchgw_state_store_up` / `searchgw_controller_leader` say whether it answers and whether this replica
leads; while it is down the replica keeps routing by the last state it saw and no decision is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from searchgw.embedder.client import EmbedderClient
from searchgw.gateway.backends.types import IndexBuild
from searchgw.gateway.backends import (
    CollectionInfo,
    CollectionSpec,
    Filter,
    InstrumentedBackend,
    OrderBy,
    PayloadIndex,
    Point,
    PointId,
    ScoredPoint,
    ScrollPage,
    SearchQuery,
    SnapshotInfo,
    StoredPoint,
    VectorBackend,
    open_backend,
)
from searchgw.gateway.collections import CollectionAdmin
from searchgw.gateway.snapshotting import SnapshotScheduler
from searchgw.gateway.core import CollectionSpecs, SearchCore
from searchgw.gateway.dependencies import (
    BACKEND,
    STATE,
    EMBEDDER,
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    Dependency,
    DependencyMonitor,
    EmbedderGate,
)
from searchgw.gateway.demo import DemoSeeder
from searchgw.gateway.embedding import TextEmbedder
from searchgw.gateway.metrics import FORCED_ARM_LABEL, GatewayMetrics
from searchgw.gateway.paging import PageTokens
from searchgw.gateway.reading import PointReader
from searchgw.gateway.remote_embedder import RemoteEmbedder
from searchgw.gateway.rollout import Rollout, RolloutController, RolloutState, SqliteRolloutStore
from searchgw.gateway.rollout import redis_store
from searchgw.gateway.rollout.backfill import Backfill
from searchgw.gateway.rollout.preflight import PreflightRunner
from searchgw.gateway.routing import FORCED_ARM_HEADER, Router
from searchgw.gateway.routing.writes import WriteOrder
from searchgw.gateway.experiments.cluster import RedisExperimentCounts
from searchgw.gateway.experiments import (
    ExperimentManager,
    ExperimentStore,
    RedisExperimentStore,
    SearchIds,
    SqliteExperimentStore,
)
from searchgw.gateway.services import CollectionServicer, ExperimentServicer, RolloutServicer, SearchServicer
from searchgw.gateway.settings import GatewaySettings
from searchgw import security
from searchgw.rpc import DomainErrorInterceptor, ServingState, add_health_and_reflection
from searchgw.rpc.server import NOT_SERVING, SERVING, drain, server_options
from searchgw.telemetry import MetricsEndpoint
from searchgw.v1 import (
    collection_service_pb2,
    collection_service_pb2_grpc,
    experiment_service_pb2,
    experiment_service_pb2_grpc,
    rollout_service_pb2,
    rollout_service_pb2_grpc,
    search_service_pb2,
    search_service_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    search_service_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
    collection_service_pb2.DESCRIPTOR.services_by_name["CollectionService"].full_name,
    rollout_service_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name,
    experiment_service_pb2.DESCRIPTOR.services_by_name["ExperimentService"].full_name,
)
_SEARCH, _COLLECTION, _ROLLOUT, _EXPERIMENT = SERVICE_NAMES
#: The scope each RPC needs when authentication is on: reads, writes, and administration.
METHOD_SCOPES = {
    f"/{_SEARCH}/Search": "read",
    f"/{_SEARCH}/Upsert": "write",
    f"/{_SEARCH}/Delete": "write",
    f"/{_SEARCH}/CountPoints": "read",
    f"/{_SEARCH}/ScrollPoints": "read",
    f"/{_SEARCH}/GetPoints": "read",
    **{f"/{service.full_name}/{method.name}": "admin"
       for service in (collection_service_pb2.DESCRIPTOR.services_by_name["CollectionService"],
                       rollout_service_pb2.DESCRIPTOR.services_by_name["RolloutService"],
                       experiment_service_pb2.DESCRIPTOR.services_by_name["ExperimentService"])
       for method in service.methods},
    # Outcomes come from the applications that search (like writes), not from operators.
    f"/{_EXPERIMENT}/ReportOutcome": "write",
}


@dataclass
class GatewayServer:
    settings: GatewaySettings
    server: grpc.aio.Server
    port: int
    state: ServingState
    metrics: GatewayMetrics
    core: SearchCore
    admin: CollectionAdmin
    demo: DemoSeeder
    router: Router
    controller: RolloutController
    store: SqliteRolloutStore | redis_store.RedisRolloutStore
    #: The backend as opened (or passed in); the services use it wrapped (see the module docstring).
    backend: VectorBackend
    embedder_client: EmbedderClient | None
    metrics_endpoint: MetricsEndpoint | None
    dependencies: DependencyMonitor
    probe_task: asyncio.Task[None] | None = None
    #: The snapshot scheduler's loop (`--snapshot-schedule`), or None.
    snapshot_task: asyncio.Task[None] | None = None
    #: With `--state redis`: the leadership, counts and feed shared with the other replicas.
    shared: SharedState | None = None
    #: Experiments (ExperimentService), on the same store as the rollouts.
    experiments: ExperimentManager | None = None

    @property
    def address(self) -> str:
        host = self.settings.host
        return f"{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        grace = self.settings.grace_period_s if grace is None else grace
        self.metrics.ready.set(0)
        delay = self.settings.drain_delay_s
        log.info("draining: NOT_SERVING, answering for %.1f s more, then GOAWAY and %.1f s for in-flight calls",
                 delay, grace)
        await drain(self.server, self.state, delay_s=delay, grace_s=grace)
        for task in (self.probe_task, self.snapshot_task, *(self.shared.tasks if self.shared else ())):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.experiments is not None:
            await self.experiments.stop_loop()
            await self.experiments.store.close()
        await self.core.shadow.close()  # shadow searches nobody waits for
        await self.controller.stop()
        if self.shared is not None:
            await self.shared.leadership.resign()
        await self.store.close()
        if self.embedder_client is not None:
            await self.embedder_client.close()
        await self.backend.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        log.info("gateway stopped")


async def create_server(
    settings: GatewaySettings,
    *,
    backend: VectorBackend | None = None,
    embedder: TextEmbedder | None = None,
    clock: Callable[[], float] = time.monotonic,
    rollout_clock: Callable[[], float] | None = None,
    wall_clock: Callable[[], float] = time.time,
    run_controller: bool = True,
    probe_interval_s: float | None = PROBE_INTERVAL_S,
    reuse_port: bool = False,
) -> GatewayServer:
    """Build and start the gateway.

    `backend` and `embedder` replace the configured ones; `rollout_clock` (default `clock`) drives the
    rollout controller, and `run_controller=False` leaves its ticks to the caller (tests).
    `probe_interval_s=None` probes the dependencies only at start-up (tests call
    `server.dependencies.probe_once()`); finished rollouts' series are swept after each round.
    `reuse_port` binds with SO_REUSEPORT (a worker of `searchgw serve --workers N`, see gateway.workers).
    """
    metrics = GatewayMetrics(clock=rollout_clock or clock)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if backend is None:
        backend = await open_backend(settings.backend, data_dir=settings.data_dir / "edge",
                                     qdrant_location=settings.qdrant_url, api_key=settings.qdrant_api_key or None,
                                     timeout=settings.qdrant_timeout_s, prefer_grpc=settings.qdrant_prefer_grpc)
    embedder_client = None
    if embedder is None and settings.embedder_addr:
        credentials = None
        if settings.embedder_tls_ca is not None:
            credentials = security.channel_credentials(settings.embedder_tls_ca, settings.embedder_tls_cert,
                                                       settings.embedder_tls_key)
        embedder_client = EmbedderClient(
            settings.embedder_addr, max_message_bytes=settings.max_message_bytes, credentials=credentials,
            metadata=(("authorization", f"Bearer {settings.embedder_token}"),) if settings.embedder_token else ())
        embedder = RemoteEmbedder(embedder_client, timeout_s=settings.embed_timeout_s, clock=clock)

    named = _NameTrackingBackend(backend, metrics)
    served_backend = InstrumentedBackend(named, observe=metrics.observe_backend, clock=clock)
    dependencies = [Dependency(BACKEND, backend.kind, named.refresh_names)]
    remote = getattr(embedder, "client", None)
    if embedder is not None and isinstance(remote, EmbedderClient):
        embedder_dependency = Dependency(EMBEDDER, remote.target,
                                         lambda: remote.model_info(timeout=PROBE_TIMEOUT_S))
        dependencies.append(embedder_dependency)
        embedder = EmbedderGate(embedder, embedder_dependency)
    state = ServingState(SERVICE_NAMES)

    async def dependency_changed(dependency: Dependency) -> None:
        metrics.dependency_up.labels(dependency.name).set(1 if dependency.up else 0)
        await state.servicer.set(dependency.health_service, SERVING if dependency.up else NOT_SERVING)

    monitor = DependencyMonitor(dependencies, on_change=dependency_changed)

    page_tokens = PageTokens(settings.page_token_secret)  # one key for every listing and search
    if settings.shared_state and not settings.page_token_secret:
        log.warning("several replicas share rollout state but page_token_secret is unset: a page token "
                    "from one replica is refused by the others (set SEARCHGW_GATEWAY_PAGE_TOKEN_SECRET)")
    router = Router()
    write_order = WriteOrder()  # SearchCore's writes, held by the controller while it creates a rollout
    shared = None
    store: SqliteRolloutStore | redis_store.RedisRolloutStore
    if settings.shared_state:
        shared = SharedState.open(settings, metrics, clock=rollout_clock or clock, wall_clock=wall_clock)
        store = shared.store
        monitor.dependencies[STATE] = Dependency(STATE, shared.target, shared.store.client.ping)
    else:
        store = SqliteRolloutStore(settings.data_dir / "rollouts.sqlite3")
        metrics.state_store_up.set(1)
        metrics.rollout_leader.set(1)
    specs = CollectionSpecs(served_backend)

    async def delete_old_collection(name: str) -> None:  # a promotion's grace period ended (policy DELETE)
        await served_backend.delete_collection(name)
        specs.forget(name)

    async def vector_space(name: str) -> tuple[int, str]:
        spec = await specs.get(name)
        return spec.dimension, spec.embedding_model

    async def has_bm25(name: str) -> bool:
        return (await specs.get(name)).bm25 is not None

    # PrepareRollout's canary creation and backfill, and ValidateRollout's pre-flight, go through the
    # served backend like every RPC; the backfill takes the write stripes SearchCore's dual writes hold.
    backfill = Backfill(served_backend, embedder, write_order, wall_clock=wall_clock, observer=metrics)
    controller = RolloutController(
        store, router,
        switch_alias=served_backend.update_alias, resolve_alias=served_backend.resolve,
        clock=rollout_clock or clock, wall_clock=wall_clock, observer=metrics,
        tick_interval=settings.controller_tick_s, page_tokens=page_tokens, write_order=write_order,
        leadership=shared.leadership if shared else None, counts=shared.counts if shared else None,
        delete_collection=delete_old_collection, list_aliases=served_backend.list_aliases,
        vector_space=vector_space, has_bm25=has_bm25,
        backfill=backfill, preflight=PreflightRunner(served_backend, embedder),
    )
    experiment_store: ExperimentStore
    if shared is not None:
        experiment_store = RedisExperimentStore(shared.store.client)
    else:
        experiment_store = SqliteExperimentStore(settings.data_dir / "rollouts.sqlite3")
    experiments = ExperimentManager(
        experiment_store, switch_alias=served_backend.update_alias, resolve_alias=served_backend.resolve,
        clock=rollout_clock or clock, wall_clock=wall_clock,
        search_ids=SearchIds(settings.page_token_secret.encode()), outcome_ttl_s=settings.outcome_ttl_s,
        max_tracked_search_ids=settings.outcome_max_search_ids, observer=metrics, write_order=write_order,
        creation_lock=controller.creation_lock, rollout_on=controller.active_rollout_on, vector_space=vector_space,
        page_tokens=page_tokens, tick_interval=settings.controller_tick_s,
        # several replicas: the rollouts' leader judges the experiments too; the others share their counts
        leadership=shared.leadership if shared is not None else None,
        shared_counts=RedisExperimentCounts(shared.store.client) if shared is not None else None)
    controller.alias_guards.append(experiments.refuse_rollout)
    core = SearchCore(served_backend, specs, router, controller, embedder, settings, metrics, clock=clock,
                      page_tokens=page_tokens, write_order=write_order, experiments=experiments)
    admin = CollectionAdmin(served_backend, specs, router, embedder, page_tokens,
                            default_embedding_model=settings.default_embedding_model,
                            experiment_on=experiments.holding, experiment_arms=experiments.arms_of,
                            on_build_start=metrics.observe_index_build_start, on_build_end=metrics.observe_index_build)
    demo = DemoSeeder(served_backend, embedder, core)

    server = grpc.aio.server(
        # One interceptor: the call's span (W3C context from the caller), authentication and rate
        # limits, error mapping and the per-RPC metrics (see searchgw.rpc.errors).
        interceptors=[DomainErrorInterceptor(metrics, metadata_labels={FORCED_ARM_HEADER: FORCED_ARM_LABEL},
                                             admission=security.admission_for(settings, METHOD_SCOPES),
                                             tracing=True)],
        options=server_options(max_message_bytes=settings.max_message_bytes,
                               keepalive_time_s=settings.keepalive_time_s,
                               keepalive_timeout_s=settings.keepalive_timeout_s, reuse_port=reuse_port),
    )
    reader = PointReader(served_backend, router, settings, page_tokens)
    search_service_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(core, clock=clock, reader=reader),
                                                                server)
    collection_service_pb2_grpc.add_CollectionServiceServicer_to_server(
        CollectionServicer(admin), server)
    rollout_service_pb2_grpc.add_RolloutServiceServicer_to_server(RolloutServicer(controller), server)
    experiment_service_pb2_grpc.add_ExperimentServiceServicer_to_server(ExperimentServicer(experiments), server)
    await add_health_and_reflection(server, state)
    port = security.bind(server, f"{settings.host}:{settings.port}", cert=settings.tls_cert, key=settings.tls_key,
                         client_ca=settings.tls_client_ca)

    if shared is not None:
        await shared.leadership.step()  # the first replica leads at once
    await controller.start(run_loop=run_controller)
    await experiments.start_loop(run_loop=run_controller)
    if shared is not None:
        shared.start(controller, served_backend, run_loops=run_controller)
    await monitor.probe_once()  # the known collection names, and each dependency's first state
    await server.start()
    endpoint = None
    if settings.metrics_port >= 0:
        endpoint = MetricsEndpoint(metrics.registry, settings.metrics_host, settings.metrics_port)
        endpoint.start()
    await state.set_serving(True)
    metrics.ready.set(1)
    probe_task = None
    if probe_interval_s is not None:
        probe_task = asyncio.create_task(monitor.run(probe_interval_s, after_each=metrics.sweep),
                                         name="dependency-probes")
    snapshot_task = None
    if schedule := settings.snapshot_intervals():
        scheduler = SnapshotScheduler(admin, schedule, keep_last=settings.snapshot_keep_last,
                                      max_age_s=settings.snapshot_max_age_s, wall_clock=wall_clock,
                                      observer=metrics.observe_snapshot)
        snapshot_task = asyncio.create_task(scheduler.run(), name="snapshot-scheduler")
        log.info("scheduled snapshots", extra={"schedule": schedule, "keep_last": settings.snapshot_keep_last,
                                               "max_age_s": settings.snapshot_max_age_s})
    log.info("gateway serving", extra={"port": port, "backend": backend.kind,
                                       "metrics_port": endpoint.port if endpoint else None})
    return GatewayServer(settings=settings, server=server, port=port, state=state, metrics=metrics, core=core,
                         admin=admin, demo=demo, router=router, controller=controller, store=store, backend=backend, embedder_client=embedder_client,
                         metrics_endpoint=endpoint, dependencies=monitor, probe_task=probe_task,
                         snapshot_task=snapshot_task, shared=shared, experiments=experiments)


@dataclass
class SharedState:
    """`--state redis://…`: the pieces every replica shares through Redis (see `rollout.redis_store`)."""

    target: str
    store: redis_store.RedisRolloutStore
    leadership: redis_store.RedisLeadership
    counts: redis_store.RedisCounts
    metrics: GatewayMetrics
    poll_s: float
    feed: redis_store.RedisStateFeed | None = None
    tasks: tuple[asyncio.Task[None], ...] = ()

    @classmethod
    def open(cls, settings: GatewaySettings, metrics: GatewayMetrics, *, clock: Callable[[], float],
             wall_clock: Callable[[], float]) -> SharedState:
        client = redis_store.connect(settings.state)
        kwargs = client.connection_pool.connection_kwargs
        target = f"redis {kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"  # no password

        def leadership_changed(leading: bool, epoch: int) -> None:
            metrics.rollout_leader.set(1 if leading else 0)

        leadership = redis_store.RedisLeadership(client, lease_s=settings.state_lease_s, clock=clock,
                                                 on_change=leadership_changed)
        metrics.rollout_leader.set(0)
        store = redis_store.RedisRolloutStore(client, fencing_epoch=lambda: leadership.epoch)
        counts = redis_store.RedisCounts(client, store, clock=clock, wall_clock=wall_clock)
        return cls(target, store, leadership, counts, metrics, settings.state_poll_s)

    def start(self, controller: RolloutController, backend: VectorBackend, *, run_loops: bool = True) -> None:
        """Follow the shared state into `controller`; with `run_loops`, keep the lease and the feed running."""

        def state_changed(up: bool) -> None:
            self.metrics.state_store_up.set(1 if up else 0)

        async def apply(rollout: Rollout, still_newer: Callable[[], bool]) -> bool:
            if rollout.state is RolloutState.PROMOTED:
                # another replica switched the alias: read the aliases now, not when this backend's
                # snapshot of them expires, so the logical name serves the canary as the routes go
                with contextlib.suppress(Exception):
                    await backend.list_aliases()
            return await controller.adopt(rollout, still_newer)

        self.metrics.state_store_up.set(1 if self.store.up else 0)
        self.feed = redis_store.RedisStateFeed(self.store, apply, poll_s=self.poll_s, on_state=state_changed)
        if run_loops:
            self.tasks = (asyncio.create_task(self.leadership.run(), name="rollout-leadership"),
                          asyncio.create_task(self.feed.run(), name="rollout-state-feed"))


class _NameTrackingBackend:
    """The backend, telling the metrics which collection and alias names exist as they change.

    Everything else is the wrapped backend's. `refresh_names` (the backend's dependency probe) lists
    them all, which also catches changes made by other gateways on a shared Qdrant server.
    """

    def __init__(self, inner: VectorBackend, metrics: GatewayMetrics) -> None:
        self.inner = inner
        self.kind = inner.kind
        self._metrics = metrics
        # The request path's calls go straight to the backend (no coroutine of ours around them).
        self.search = inner.search  # type: ignore[method-assign]
        self.resolve = inner.resolve  # type: ignore[method-assign]

    async def refresh_names(self) -> None:
        collections = await self.inner.list_collections()
        aliases = await self.inner.list_aliases()
        self._metrics.set_known_collections([c.spec.name for c in collections] + list(aliases))

    async def create_collection(self, spec: CollectionSpec) -> CollectionInfo:
        info = await self.inner.create_collection(spec)
        self._metrics.add_known_collection(spec.name)
        return info

    async def get_collection(self, name: str) -> CollectionInfo:
        return await self.inner.get_collection(name)

    async def list_collections(self) -> list[CollectionInfo]:
        return await self.inner.list_collections()

    async def delete_collection(self, name: str) -> None:
        await self.inner.delete_collection(name)
        self._metrics.forget_known_collection(name)

    async def update_alias(self, alias: str, collection: str) -> str | None:
        previous = await self.inner.update_alias(alias, collection)
        self._metrics.add_known_collection(alias)
        return previous

    async def delete_alias(self, alias: str) -> None:
        await self.inner.delete_alias(alias)
        self._metrics.forget_known_collection(alias)

    async def list_aliases(self) -> dict[str, str]:
        return await self.inner.list_aliases()

    async def resolve(self, name: str) -> str:
        return await self.inner.resolve(name)

    async def upsert(self, collection: str, points: Sequence[Point]) -> None:
        await self.inner.upsert(collection, points)

    async def delete_points(self, collection: str, *, ids: Sequence[PointId] | None = None,
                            filter: Filter | None = None) -> None:
        await self.inner.delete_points(collection, ids=ids, filter=filter)

    async def search(self, collection: str, query: SearchQuery) -> list[ScoredPoint]:
        return await self.inner.search(collection, query)

    async def count(self, collection: str, filter: Filter | None = None) -> int:
        return await self.inner.count(collection, filter)

    async def scroll(self, collection: str, *, offset: PointId | None = None, limit: int = 256,
                     filter: Filter | None = None, order_by: OrderBy | None = None,
                     with_payload: bool = True, with_vector: bool = True) -> ScrollPage:
        return await self.inner.scroll(collection, offset=offset, limit=limit, filter=filter, order_by=order_by,
                                       with_payload=with_payload, with_vector=with_vector)

    async def retrieve(self, collection: str, ids: Sequence[PointId], *, with_payload: bool = True,
                       with_vector: bool = False) -> list[StoredPoint]:
        return await self.inner.retrieve(collection, ids, with_payload=with_payload, with_vector=with_vector)

    async def create_payload_index(self, collection: str, index: PayloadIndex) -> CollectionInfo:
        return await self.inner.create_payload_index(collection, index)

    async def delete_payload_index(self, collection: str, key: str) -> CollectionInfo:
        return await self.inner.delete_payload_index(collection, key)

    async def optimize(self, collection: str) -> IndexBuild:
        return await self.inner.optimize(collection)

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        return await self.inner.create_snapshot(collection)

    async def list_snapshots(self, collection: str) -> list[SnapshotInfo]:
        return await self.inner.list_snapshots(collection)

    async def restore_snapshot(self, snapshot: str, collection: str) -> CollectionInfo:
        info = await self.inner.restore_snapshot(snapshot, collection)
        self._metrics.add_known_collection(collection)
        return info

    async def delete_snapshot(self, collection: str, snapshot: str) -> None:
        await self.inner.delete_snapshot(collection, snapshot)

    async def close(self) -> None:
        await self.inner.close()


__all__ = ["GatewayServer", "create_server"]
