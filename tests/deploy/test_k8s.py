"""The Kubernetes base (deploy/k8s/): objects, labels and selectors, ports, probes and draining, the Istio objects —
held against the code.
"""

from __future__ import annotations

import pytest

from tests.deploy.manifests import (
    DEFAULT_PORTS,
    EMBEDDER,
    GATEWAY,
    K8S,
    SERVERS,
    WORKLOADS,
    container,
    container_ports,
    istio_proxy_config,
    k8s_index,
    k8s_objects,
    k8s_settings,
    pod_labels,
    pod_spec,
    pre_stop_sleep,
    rpc_methods,
    seconds,
    selects,
    workload,
    workloads,
    secret_env,
    settings_of,
    single_replica_objects,
    yaml_docs,
)


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
        for name in [f"searchgw-{server.name}"]:  # the overlay's headless Service: the overlay's test
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
        # never minAvailable: on the single-replica overlay's one pod drains would hang
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


def test_gateway_is_a_deployment_of_three_replicas_on_qdrant_and_redis_state():
    index = k8s_index()
    deployment = workload(GATEWAY)
    assert deployment["kind"] == "Deployment" and "replicas" not in deployment["spec"]  # the HPA owns it
    hpa = index[("HorizontalPodAutoscaler", "searchgw-gateway")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "searchgw-gateway"}
    assert hpa["spec"]["minReplicas"] == 3 <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["containerResource"]["container"] == container(GATEWAY)["name"]
    # a rolling update never has fewer replicas serving than asked for
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # several replicas are only correct with shared collections and shared rollout state
    settings = k8s_settings(GATEWAY)
    assert settings.backend == "qdrant" and settings.qdrant_url.startswith("http")
    assert settings.shared_state and settings.state.startswith("redis://")
    assert "SEARCHGW_GATEWAY_STATE" in secret_env()  # the URL may carry Redis's password
    # nothing lasting on the pod
    assert "volumeClaimTemplates" not in deployment["spec"]
    assert all("persistentVolumeClaim" not in v for v in pod_spec(GATEWAY)["volumes"])
    # drains and upgrades take one replica at a time: at least two of the three keep serving
    budget = index[("PodDisruptionBudget", "searchgw-gateway")]["spec"]
    assert selects(budget["selector"]["matchLabels"], pod_labels(deployment))
    assert budget == {**budget, "maxUnavailable": 1} and hpa["spec"]["minReplicas"] - 1 >= 2
    assert not [o for o in k8s_objects() if o["kind"] == "StatefulSet"]


def test_single_replica_overlay_is_one_statefulset_pod_with_edge_and_sqlite_on_a_volume():
    objects = single_replica_objects()
    index = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    gateways = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "HorizontalPodAutoscaler")
                and o["metadata"]["name"] == "searchgw-gateway"]
    assert [o["kind"] for o in gateways] == ["StatefulSet"]
    sts = index[("StatefulSet", "searchgw-gateway")]
    assert sts["spec"]["replicas"] == 1
    headless = index[("Service", sts["spec"]["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None" and selects(headless["spec"]["selector"], pod_labels(sts))
    assert headless["spec"]["ports"] == index[("Service", "searchgw-gateway")]["spec"]["ports"]
    for name, patched in (("ConfigMap", "gateway-config.yaml"), ("Secret", "gateway-secrets.yaml")):
        (patch,) = yaml_docs(K8S / "single-replica" / patched)
        for variable in {**patch.get("data", {}), **patch.get("stringData", {})}:
            field = GATEWAY.env_fields()[variable]  # a real setting, in the object its secrecy asks for
            assert field.metadata["secret"] == (name == "Secret"), variable
    settings = settings_of(objects, GATEWAY, ("StatefulSet", "searchgw-gateway"))
    assert settings.backend == "edge" and settings.state == "sqlite" and not settings.shared_state
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    (gateway,) = [c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"]
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == str(settings.data_dir)
    # the pod is the base's, apart from what a single writer with a volume changes
    base = pod_spec(GATEWAY)
    for key in ("serviceAccountName", "terminationGracePeriodSeconds", "automountServiceAccountToken"):
        assert sts["spec"]["template"]["spec"][key] == base[key], key
    assert {k: v for k, v in gateway.items() if k != "volumeMounts"} == {
        k: v for k, v in container(GATEWAY).items() if k not in ("volumeMounts", "startupProbe")} | {
        "startupProbe": gateway["startupProbe"]}


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


#: RPCs that change nothing, so that a retry after a reset mid-call is safe.
READ_ONLY_RPCS = {"/searchgw.v1.SearchService/Search", "/searchgw.v1.EmbedService/Embed"}


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
        retry_on = set(retries["retryOn"].split(","))
        # Refused (UNAVAILABLE: draining) or shed, and calls that never reached a replica: always retried.
        assert {"unavailable", "resource-exhausted"} <= retry_on <= {
            "unavailable", "resource-exhausted", "connect-failure", "refused-stream", "reset"}
        # A reset mid-call may follow a call the replica applied: retried only where every RPC is read-only.
        if "reset" in retry_on:
            matched = [m["uri"].get("exact") or m["uri"]["prefix"] for m in route.get("match", [])]
            assert matched and all(path in READ_ONLY_RPCS for path in matched), route["name"]
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
