"""`searchgw experiment ...` as real subprocesses against a real gateway (the rig's, on loopback)."""

from __future__ import annotations

import re

from tests.gateway.test_cli import searchgw

VECTOR = "[1.0, 0.0, 0.5, -1.0]"


async def test_create_start_search_report_get_and_conclude_from_the_command_line(rig):
    server, client = await rig.start()
    for name in ("docs-v1", "docs-m32", "docs-int8"):
        await client.create_collection(name, dimension=4)
        await client.upsert(name, [{"id": i, "vector": [float(i), 1.0, 0.0, 0.5]} for i in range(1, 4)])
    await client.update_alias("docs", "docs-v1")
    addr = ("--addr", server.address)
    code, out, err = await searchgw("experiment", "create", "e1", "--collection", "docs", "--variant", "m32=docs-m32",
                                    "--variant", "int8=docs-int8", "--interval", "1s", "--shadow-sample-rate", "0.05",
                                    "--quality-min-samples", "50", "--quality-guard", *addr)
    print(out)
    assert code == 0, err
    assert "experiment e1: docs split control=docs-v1, m32=docs-m32, int8=docs-int8 (33.34% / 33.33% / 33.33%)" in out
    assert "state      CREATED" in out
    code, out, err = await searchgw("experiment", "start", "e1", "--reason", "try HNSW m=32 and int8", *addr)
    assert code == 0 and "state      RUNNING" in out, err
    code, out, err = await searchgw("search", "--collection", "docs", "--vector", VECTOR, "--routing-key", "user-42",
                                    *addr)
    print(out)
    assert code == 0, err
    search_id = re.search(r"# search id (\S+)", out).group(1)
    assert re.search(r"\(experiment e1, arm (control|m32|int8)\)", out)
    code, out, err = await searchgw("experiment", "report-outcome", search_id, "--kind", "conversion", "--value",
                                    "12.5", *addr)
    print(out)
    assert code == 0 and "ACCEPTED" in out, err
    code, out, _ = await searchgw("experiment", "report-outcome", search_id, "--kind", "conversion", *addr)
    assert code == 1 and "DUPLICATE" in out  # exit 1: not every outcome was counted
    code, out, err = await searchgw("experiment", "report-outcome", "forged", "--kind", "conversion", *addr)
    assert code == 2 and "INVALID_ARGUMENT" in err and "outcomes[0].search_id" in err
    rig.clock.advance(1.0)
    await server.experiments.tick()
    code, out, err = await searchgw("experiment", "get", "e1", *addr)
    print(out)
    assert code == 0, err
    assert "verdict    no winner yet" in out and "1 (100.00%)" in out and "tests      m32 undecided" in out
    assert "nan" not in out  # an arm without searches has no rate: shown as "-"
    policy = (await client.get_experiment("e1")).policy
    assert (policy.quality.shadow_sample_rate, policy.quality.min_samples, policy.quality_guard) == (0.05, 50, True)
    assert re.search(r"quality    m32: overlap@10 median (-|[01]\.\d\d), mean RBO (-|[01]\.\d\d) over [01] shadow", out)
    code, out, _ = await searchgw("experiment", "list", *addr)
    assert code == 0 and "e1" in out and "RUNNING" in out
    code, out, err = await searchgw("experiment", "conclude", "e1", "--promote", *addr)
    assert code == 2 and "FAILED_PRECONDITION" in err and "no winner yet" in err
    code, out, err = await searchgw("experiment", "conclude", "e1", "--arm", "m32", "--promote", "--reason",
                                    "recall is better, cost the same", *addr)
    print(out)
    assert code == 0 and "concluded  with m32 (promoted)" in out, err
    assert (await client.list_aliases())["docs"] == "docs-m32"
