"""Settings, queries, keys, vectors, arrivals and the per-worker plan, without a server."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import numpy as np
import pytest

from searchgw.loadgen import LoadConfig, LoadgenError
from searchgw.loadgen._calls import SearchCalls, call_metadata
from searchgw.loadgen._workload import Inputs, Query, RoutingKeys, arrival_times, load_queries, queries_for, unit_vector
from searchgw.loadgen._worker import plan_workers
from searchgw.settings import SettingsError


@pytest.mark.parametrize(("overrides", "flag"), [
    (dict(rpc="delete"), "--rpc"),
    (dict(mode="burst"), "--mode"),
    (dict(keys="pareto"), "--keys"),
    (dict(rate=0), "--rate"),
    (dict(duration_s=0), "--duration-s"),
    (dict(warmup_s=-1), "--warmup-s"),
    (dict(processes=0), "--processes"),
    (dict(concurrency=2, processes=3), "--concurrency"),
    (dict(rpc="embed", vector=True), "--vector"),
    (dict(rpc="upsert", batch_size=10, id_space=5), "--id-space"),
    (dict(tls_cert="cert.pem"), "--tls-cert"),
    (dict(metadata=("novalue",)), "--metadata"),
])
def test_bad_settings_are_refused_naming_the_flag(overrides, flag):
    with pytest.raises(SettingsError, match=flag):
        LoadConfig(**overrides)


def test_the_token_never_shows_in_repr_or_json():
    config = LoadConfig(token="s3cret")
    assert "s3cret" not in repr(config)
    assert config.to_dict()["token"] == "***"


def test_metadata_keys_are_lower_cased_and_auth_comes_first():
    config = LoadConfig(token="t", canary_arm="canary", metadata=("X-Tenant=acme", "x-a=b=c"))
    assert call_metadata(config) == (("authorization", "Bearer t"), ("x-canary-arm", "canary"),
                                     ("x-tenant", "acme"), ("x-a", "b=c"))


def test_queries_from_jsonl_and_csv(tmp_path):
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"text": "red shoes"}\n\n{"text": "v", "vector": [0.6, 0.8]}\n')
    assert load_queries(jsonl) == (Query(text="red shoes"), Query(text="v", vector=(0.6, 0.8)))
    csv_file = tmp_path / "q.csv"
    csv_file.write_text('id,text\n1,"blue, suede shoes"\n2,\n3,boots\n')
    assert load_queries(csv_file) == (Query(text="blue, suede shoes"), Query(text="boots"))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("q.jsonl", '{"text": "a"}\nnot json\n', r"q.jsonl:2: not JSON"),
    ("q.jsonl", '{"title": "a"}\n', r"q.jsonl:1: neither"),
    ("q.jsonl", '{"vector": ["a"]}\n', r"q.jsonl:1: .*list of numbers"),
    ("q.jsonl", "", "no queries"),
    ("q.csv", "title\nabc\n", "no `text` column"),
    ("q.txt", "abc\n", "expected a .jsonl or .csv"),
])
def test_bad_query_files_say_what_and_where(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(LoadgenError, match=message):
        load_queries(path)


def test_queries_must_fit_the_mode(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"vector": [1, 0]}\n{"vector": [1, 0, 0]}\n')
    with pytest.raises(LoadgenError, match="different lengths"):
        queries_for(LoadConfig(queries=path, vector=True))
    with pytest.raises(LoadgenError, match="needs a `text`"):
        queries_for(LoadConfig(queries=path))
    with pytest.raises(LoadgenError, match="No such file"):
        queries_for(LoadConfig(queries=tmp_path / "missing.jsonl"))


def test_generated_queries_are_the_builtin_texts_or_fresh_unit_vectors():
    assert len(queries_for(LoadConfig())) > 50
    assert queries_for(LoadConfig(vector=True)) == ()
    inputs = Inputs((), dimension=8, rng=random.Random(1))
    first, second = inputs.vector(), inputs.vector()
    assert len(first) == 8 and first != second


def test_unit_vectors_have_length_one():
    vector = unit_vector(np.random.default_rng(0), 384)
    assert len(vector) == 384
    assert np.linalg.norm(vector) == pytest.approx(1.0)


def test_zipf_keys_favour_the_first_keys_and_uniform_keys_spread():
    zipf = RoutingKeys("zipf", count=100, zipf_s=1.2, rng=random.Random(1))
    counts = Counter(zipf.next() for _ in range(20_000))
    assert counts.most_common(1)[0][0] == "user-0"
    for k in (1, 4, 9):  # the (k+1)-th key is drawn (k+1)^-s as often as the first
        assert counts[f"user-{k}"] / counts["user-0"] == pytest.approx((k + 1) ** -1.2, rel=0.15)
    assert set(counts) <= {f"user-{k}" for k in range(100)}
    uniform = RoutingKeys("uniform", count=10, zipf_s=1.0, rng=random.Random(1))
    counts = Counter(uniform.next() for _ in range(10_000))
    assert set(counts) == {f"user-{k}" for k in range(10)}
    assert max(counts.values()) < 1.2 * min(counts.values())
    assert RoutingKeys("none", count=10, zipf_s=1.0, rng=random.Random(1)).next() == ""


def test_arrivals_are_poisson_at_the_rate():
    times = arrival_times(1_000, 200.0, random.Random(5))
    sample = [next(times) for _ in range(20_000)]
    gaps = [b - a for a, b in zip(sample, sample[1:])]
    assert all(gap >= 0 for gap in gaps) and sample[0] >= 1_000
    assert statistics.fmean(gaps) == pytest.approx(5e6, rel=0.03)  # 1 / 200 s in ns
    assert statistics.stdev(gaps) == pytest.approx(5e6, rel=0.05)  # exponential: sd == mean


def test_workers_share_callers_rate_and_cap_and_get_their_own_seeds():
    config = LoadConfig(processes=3, concurrency=8, rate=90.0, max_in_flight=10)
    plans = plan_workers(config, (), seed=100)
    assert [p.concurrency for p in plans] == [3, 3, 2]
    assert [p.max_in_flight for p in plans] == [4, 3, 3]
    assert [p.rate for p in plans] == [30.0, 30.0, 30.0]
    assert [p.seed for p in plans] == [100, 101, 102]


def test_search_calls_carry_text_limit_and_key():
    config = LoadConfig(keys="uniform", key_count=3, limit=5, collection="c")
    rng = random.Random(0)
    calls = SearchCalls(config, Inputs((Query(text="q"),), dimension=2, rng=rng),
                        RoutingKeys("uniform", count=3, zipf_s=1.0, rng=rng))
    call = calls.next_call()
    assert (call.request.text, call.request.limit, call.request.collection) == ("q", 5, "c")
    assert call.request.routing_key in {"user-0", "user-1", "user-2"}
    assert call.metadata == ()
