"""deploy/healthcheck.py (the image's container health check) against a real grpc.health.v1 server."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy.manifests import DEPLOY

SCRIPT = DEPLOY / "healthcheck.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("searchgw_deploy_healthcheck", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("searchgw.v1.EmbedService", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("searchgw.v1.SearchService", health_pb2.HealthCheckResponse.NOT_SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_serving_service_passes(health_server, capsys):
    assert _load_script().main([health_server, "searchgw.v1.EmbedService"]) == 0
    assert "SERVING" in capsys.readouterr().out


def test_the_whole_server_is_checked_without_a_service_name(health_server):
    assert _load_script().main([health_server]) == 0


def test_a_not_serving_service_fails(health_server, capsys):
    assert _load_script().main([health_server, "searchgw.v1.SearchService"]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err


def test_a_service_the_server_does_not_know_fails(health_server, capsys):
    assert _load_script().main([health_server, "searchgw.v1.NoSuchService"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_no_server_fails_within_the_timeout(capsys):
    assert _load_script().main([f"127.0.0.1:{_free_port()}", "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err


def test_it_runs_as_a_script(health_server):
    result = subprocess.run([sys.executable, str(SCRIPT), health_server, "searchgw.v1.EmbedService"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
