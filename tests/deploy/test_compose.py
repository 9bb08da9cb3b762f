"""The compose file (deploy/compose/compose.yaml) held against the code: services, settings, ports, health checks."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.deploy.manifests import (
    COMPOSE_FILE,
    DASHBOARD_FILE,
    DEFAULT_PORTS,
    DEPLOY,
    DOCKERFILE,
    EMBEDDER,
    GATEWAY,
    JOBS,
    PROMETHEUS,
    RULES_FILE,
    SERVERS,
    compose,
    compose_settings,
    dashboard,
    dockerfile_healthcheck_path,
    host_port,
    seconds,
    yaml_docs,
)


def test_compose_runs_qdrant_redis_embedder_gateway_prometheus_and_grafana():
    services = compose()["services"]
    assert set(services) == {"qdrant", "redis", "embedder", "gateway", "prometheus", "grafana"}
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


def test_compose_gateway_keeps_rollout_state_in_the_redis_service_with_an_fsync_per_write():
    settings = compose_settings(GATEWAY)
    url = urlparse(settings.state)
    assert settings.shared_state and url.scheme == "redis" and url.hostname == "redis" and url.port == 6379
    redis = compose()["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])  # the AOF outlives the container
    assert compose()["services"]["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("server", SERVERS, ids=lambda s: s.name)
def test_compose_health_checks_ask_the_servers_own_port_and_service(server):
    test = compose()["services"][server.name]["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == dockerfile_healthcheck_path()
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
