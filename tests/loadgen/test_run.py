"""Short real runs against in-test gRPC servers: the report must agree with what the server answered."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from searchgw.loadgen import NO_ROUTE, REPORT_SCHEMA, LoadConfig, LoadgenError, Progress, run_load
from tests.loadgen.servers import ScriptedEmbed, ScriptedSearch, key_number, serving

SERVICE_S = 0.02  # the slow server's time per call


def config(target: str, **overrides) -> LoadConfig:
    values = dict(target=target, duration_s=0.4, warmup_s=0.0, concurrency=4, seed=7, keys="uniform",
                  key_count=20, progress_interval_s=0.1, connect_timeout_s=2.0)
    return LoadConfig(**{**values, **overrides})


def arm_by_key(key: str) -> tuple[str, bool]:
    """Odd keys go to the canary, except every third of those, which fell back to primary."""
    number = key_number(key)
    if number % 2 == 0:
        return "primary", False
    return ("primary", True) if number % 3 == 0 else ("canary", False)


def every_fifth_key_fails(key: str) -> bool:
    return key_number(key) % 5 == 0


def assert_consistent(report) -> None:
    codes = report.to_dict()["codes"]
    arms = report.to_dict()["arms"]
    assert report.calls == sum(c["calls"] for c in codes.values()) == sum(a["calls"] for a in arms.values())


async def test_report_counts_match_the_server_by_code_and_arm():
    server = ScriptedSearch(arm_of=arm_by_key, failing=every_fifth_key_fails)
    async with serving(search=server) as target:
        report = await run_load(config(target))
    seen = server.seen
    assert report.calls == seen.calls > 20
    assert_consistent(report)
    codes = report.to_dict()["codes"]
    assert set(codes) == {"OK", "UNAVAILABLE"}
    assert codes["UNAVAILABLE"]["calls"] == seen.count(code="UNAVAILABLE") > 0
    assert codes["OK"]["calls"] == seen.count(code="OK")
    arms = report.to_dict()["arms"]
    assert arms["primary"]["calls"] == seen.count(code="OK", arm="primary")
    assert arms["canary"]["calls"] == seen.count(code="OK", arm="canary")
    assert arms[NO_ROUTE]["calls"] == seen.count(code="UNAVAILABLE")  # a failed call names no route
    assert arms["primary"]["fallbacks"] == report.to_dict()["fallbacks"] == seen.count(fallback=True) > 0
    assert arms["canary"]["fallbacks"] == 0


async def test_calls_past_their_deadline_show_up_as_deadline_exceeded():
    async with serving(search=ScriptedSearch(delay_s=0.2)) as target:
        report = await run_load(config(target, duration_s=0.05, concurrency=2, deadline_s=0.02))
    assert set(report.to_dict()["codes"]) == {"DEADLINE_EXCEEDED"}
    assert report.latency.min_ns / 1e9 >= 0.02


async def test_warmup_calls_are_left_out_of_the_results():
    server = ScriptedSearch()
    async with serving(search=server) as target:
        report = await run_load(config(target, warmup_s=0.2, duration_s=0.2, concurrency=2))
    assert report.tally.warmup_calls > 0
    assert report.calls > 0
    assert report.calls + report.tally.warmup_calls == server.seen.calls


async def test_open_loop_counts_queueing_behind_a_stalled_server_and_closed_loop_does_not():
    """The server serves one call at a time in SERVICE_S; arrivals come twice as fast. Measured from
    the scheduled send, latency grows with the backlog (so with run length); a closed loop with one
    caller only ever sees the service time."""
    async with serving(search=ScriptedSearch(delay_s=SERVICE_S, one_at_a_time=True)) as target:
        open_loop = dict(mode="open", rate=1 / SERVICE_S * 2, deadline_s=30.0, seed=3)
        short = await run_load(config(target, duration_s=0.25, **open_loop))
        long = await run_load(config(target, duration_s=0.5, **open_loop))
        closed = await run_load(config(target, duration_s=0.3, mode="closed", concurrency=1))
    short_p99, long_p99 = (r.latency.value_at(0.99) / 1e9 for r in (short, long))
    assert short_p99 > 5 * SERVICE_S
    assert long_p99 > 1.25 * short_p99  # the backlog, and so the latency, grows with run length
    assert long.latency.value_at(0.5) / 1e9 > 3 * SERVICE_S
    # A closed loop never queues: its p99 is the service time plus scheduling noise (a loaded box adds ~2x).
    assert closed.latency.value_at(0.99) / 1e9 < 4 * SERVICE_S < short_p99
    assert long.calls_per_s < 0.8 * long.config.rate  # the server's pace, not the target's


async def test_open_loop_counts_calls_that_start_late():
    """With one call allowed in flight, arrivals must wait for the previous answer to start."""
    async with serving(search=ScriptedSearch(delay_s=SERVICE_S)) as target:
        report = await run_load(config(target, mode="open", rate=2 / SERVICE_S, duration_s=0.2, max_in_flight=1,
                                       deadline_s=30.0))
    assert report.tally.late_starts > report.calls / 2
    assert report.tally.max_start_lag_ns / 1e9 > 2 * SERVICE_S
    assert report.latency.value_at(0.99) >= report.tally.max_start_lag_ns


async def test_processes_merge_to_exactly_what_the_server_answered():
    server = ScriptedSearch(arm_of=arm_by_key, failing=every_fifth_key_fails)
    async with serving(search=server) as target:
        report = await run_load(config(target, processes=2, duration_s=0.5, connect_timeout_s=30.0))
    assert report.calls == server.seen.calls > 0
    assert_consistent(report)
    assert report.to_dict()["codes"]["UNAVAILABLE"]["calls"] == server.seen.count(code="UNAVAILABLE")
    assert report.to_dict()["arms"]["canary"]["calls"] == server.seen.count(code="OK", arm="canary")
    assert report.cpu_seconds > 0


async def test_a_worker_process_that_cannot_connect_fails_the_run():
    with pytest.raises(LoadgenError, match="cannot connect"):
        await run_load(config(closed_port_target(), processes=2, connect_timeout_s=0.3))


async def test_a_server_that_is_not_there_fails_the_run_before_any_load():
    with pytest.raises(LoadgenError, match="cannot connect"):
        await run_load(config(closed_port_target(), connect_timeout_s=0.3))


async def test_every_call_carries_the_auth_override_and_extra_metadata():
    server = ScriptedSearch()
    async with serving(search=server) as target:
        await run_load(config(target, duration_s=0.1, concurrency=1, token="s3cret", canary_arm="canary",
                              metadata=("X-Tenant=acme", "x-trace=1")))
    for metadata in server.seen.metadata:
        assert metadata["authorization"] == "Bearer s3cret"
        assert metadata["x-canary-arm"] == "canary"
        assert metadata["x-tenant"] == "acme" and metadata["x-trace"] == "1"


async def test_routing_keys_go_in_the_request_or_in_metadata():
    in_request, in_metadata = ScriptedSearch(), ScriptedSearch()
    async with serving(search=in_request) as target:
        await run_load(config(target, duration_s=0.1, concurrency=1))
    async with serving(search=in_metadata) as target:
        await run_load(config(target, duration_s=0.1, concurrency=1, key_in_metadata=True))
    assert all(r.routing_key.startswith("user-") for r in in_request.seen.requests)
    assert all("x-routing-key" not in m for m in in_request.seen.metadata)
    assert all(r.routing_key == "" for r in in_metadata.seen.requests)
    assert all(m["x-routing-key"].startswith("user-") for m in in_metadata.seen.metadata)


async def test_vector_search_sends_unit_vectors_of_the_dimension():
    server = ScriptedSearch()
    async with serving(search=server) as target:
        await run_load(config(target, duration_s=0.1, concurrency=1, vector=True, dimension=16, keys="none"))
    for request in server.seen.requests:
        assert request.WhichOneof("query") == "vector" and request.routing_key == ""
        assert len(request.vector.values) == 16
        assert sum(v * v for v in request.vector.values) == pytest.approx(1.0, rel=1e-5)


async def test_embed_sends_batches_of_texts():
    server = ScriptedEmbed()
    async with serving(embed=server) as target:
        report = await run_load(config(target, rpc="embed", batch_size=3, model="mini", duration_s=0.1))
    assert report.calls == server.seen.calls > 0
    assert all(len(r.texts) == 3 and r.model == "mini" for r in server.seen.requests)
    assert set(report.to_dict()["arms"]) == {NO_ROUTE}


async def test_upsert_writes_batches_of_distinct_points():
    server = ScriptedSearch()
    async with serving(search=server) as target:
        report = await run_load(config(target, rpc="upsert", batch_size=5, id_space=50, duration_s=0.1))
    assert report.calls == server.seen.calls > 0
    for request in server.seen.requests:
        ids = [point.id.num for point in request.points]
        assert len(set(ids)) == 5 and all(0 <= i < 50 for i in ids)
        assert all(point.text for point in request.points)


async def test_tls_with_client_certificates(tmp_path):
    cert_pem, key_pem = self_signed_certificate()
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=cert_pem,
                                              require_client_auth=True)
    server = ScriptedSearch()
    async with serving(search=server, credentials=credentials) as target:
        report = await run_load(config(target, duration_s=0.1, concurrency=1, tls_ca=tmp_path / "cert.pem",
                                       tls_cert=tmp_path / "cert.pem", tls_key=tmp_path / "key.pem",
                                       tls_server_name="localhost"))
    assert report.calls == report.ok == server.seen.calls > 0


async def test_tls_refuses_a_server_certificate_it_does_not_trust():
    cert_pem, key_pem = self_signed_certificate()
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)])
    async with serving(search=ScriptedSearch(), credentials=credentials) as target:
        with pytest.raises(LoadgenError, match=r"cannot connect .*\(TLS\)"):
            await run_load(config(target, tls=True, connect_timeout_s=0.3))


async def test_progress_snapshots_add_up_to_the_report():
    snapshots: list[Progress] = []
    async with serving(search=ScriptedSearch()) as target:
        report = await run_load(config(target, duration_s=0.3), on_progress=snapshots.append)
    assert len(snapshots) >= 2
    assert sum(s.interval.calls for s in snapshots) == snapshots[-1].total.calls == report.calls


async def test_json_report_parses_and_has_every_field():
    async with serving(search=ScriptedSearch(arm_of=arm_by_key, failing=every_fifth_key_fails)) as target:
        report = await run_load(config(target, mode="open", rate=200, duration_s=0.2, token="s3cret"))
    data = json.loads(report.to_json())
    assert set(data) == {
        "schema", "started_at", "config", "measured_s", "wall_s", "calls", "ok", "errors", "error_rate",
        "calls_per_s", "ok_per_s", "target_calls_per_s", "warmup_calls", "late_starts", "max_start_lag_ms",
        "latency_ms", "codes", "arms", "fallbacks", "load_generator", "latency_histogram",
        "recall"}  # None unless --recall
    assert data["schema"] == REPORT_SCHEMA
    assert data["recall"] is None
    assert data["config"]["token"] == "***" and data["config"]["mode"] == "open"
    assert data["config"]["seed"] == 7
    assert set(data["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "min", "max", "mean"}
    assert data["latency_ms"]["p50"] <= data["latency_ms"]["p99"] <= data["latency_ms"]["max"]
    assert set(data["load_generator"]) == {"processes", "cpu_seconds", "cpu_count", "cpu_share"}
    assert data["calls"] == data["ok"] + data["errors"] == data["latency_histogram"]["count"]
    assert data["target_calls_per_s"] == 200 and data["late_starts"] is not None
    for arm in data["arms"].values():
        assert set(arm) == {"calls", "fallbacks", "latency_ms"}
    assert datetime.datetime.fromisoformat(data["started_at"]).tzinfo is not None


async def test_a_run_without_a_seed_reports_the_one_it_drew():
    async with serving(search=ScriptedSearch()) as target:
        report = await run_load(config(target, duration_s=0.05, seed=None))
    assert isinstance(report.config.seed, int)


def closed_port_target() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def self_signed_certificate() -> tuple[bytes, bytes]:
    """A certificate for localhost / 127.0.0.1 that is its own CA (server and client use it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem
