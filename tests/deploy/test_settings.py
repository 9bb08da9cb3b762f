"""The settings deploy/ sets (Kubernetes ConfigMaps and Secret, compose, the Dockerfile) are real settings fields
and pass the settings validation.
"""

from __future__ import annotations

import pytest

from searchgw.embedder.settings import DEFAULT_PORT as EMBEDDER_PORT
from tests.deploy.manifests import (
    EMBEDDER,
    GATEWAY,
    SERVERS,
    compose,
    compose_env,
    configmap_env,
    dockerfile_instructions,
    dockerfile_model_dir,
    dockerfile_runtime_env,
    env_assignments,
    host_port,
    k8s_index,
    k8s_objects,
    k8s_settings,
    secret_env,
    server_for_env,
    workloads,
)


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
    assert settings.backend == "qdrant"  # the replicated base; the single-replica overlay sets edge


def test_the_embedder_serves_the_model_baked_into_the_image():
    cache_dir = str(k8s_settings(EMBEDDER).cache_dir)
    assert cache_dir == dockerfile_model_dir()
    assert dockerfile_runtime_env()["SEARCHGW_EMBEDDER_CACHE_DIR"] == cache_dir
    assert compose_env("embedder")["SEARCHGW_EMBEDDER_CACHE_DIR"] == cache_dir
