"""The `searchgw` command line: it explains itself, takes its options anywhere, and answers every
mistake with one line naming the flag and exit status 2 - never a traceback.

The commands run as real subprocesses against a real gateway (the rig's, on loopback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys

import pytest

from searchgw.gateway.cli import parse_stages
from searchgw.gateway.rollout.model import DEFAULT_STAGES
from searchgw.cli import build_parser, main
from searchgw.v1 import rollout_service_pb2 as roll_pb

ROOT = pathlib.Path(__file__).parents[2]


async def searchgw(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "searchgw.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout)
    return process.returncode, stdout.decode(), stderr.decode()


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def test_every_command_and_operation_is_listed_with_one_line_and_has_an_example():
    root = build_parser()
    top = root.format_help()
    for name, command in subparsers(root).items():
        assert name in top
        if name not in ("serve", "search", "ingest", "collections", "rollout", "experiment"):
            continue  # the embedder's and the load generator's commands document themselves
        operations = subparsers(command)
        assert "example" in command.format_help(), name
        text = command.format_help()
        for op, parser in operations.items():
            line = next(line for line in text.splitlines() if line.strip().startswith(op + " ") or
                        line.strip() == op)
            assert line, (name, op)
            assert "example:" in parser.format_help(), (name, op)
    for name in ("search", "ingest"):
        for action in subparsers(root)[name]._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (name, action.option_strings)


def test_stages_take_percent_signs_or_not_and_durations_with_units():
    assert parse_stages("5%:300:100,25:10m:500,100%") == parse_stages("5:300:100,25%:600s:500,100") == [
        {"weight_percent": 5.0, "min_duration": "300s", "min_requests": "100"},
        {"weight_percent": 25.0, "min_duration": "600s", "min_requests": "500"},
        {"weight_percent": 100.0, "min_duration": "0s", "min_requests": "0"}]


def test_the_help_shows_the_gateways_default_stages():
    help_text = " ".join(subparsers(subparsers(build_parser())["rollout"])["start"].format_help().split())
    expected = ",".join(f"{s.weight_percent:g}%:{s.min_duration_s:g}:{s.min_requests}" for s in DEFAULT_STAGES)
    assert expected in help_text


async def prepare(client) -> None:
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", [{"id": 1, "text": "a canary takes a share of the traffic"}])
    await client.update_alias("docs", "docs-v1")
    await client.create_collection("docs-v2")
    await client.upsert("docs-v2", [{"id": 1, "text": "a canary takes a share of the traffic"}])


def run_main(argv) -> int:
    try:
        return main(list(argv))
    except SystemExit as exc:  # argparse's own exit
        return exc.code


async def test_every_subcommand_answers_bad_input_with_one_line_naming_the_flag_and_exit_2(rig, tmp_path, capsys):
    server, client = await rig.start()
    await prepare(client)
    addr = ("--addr", server.address)
    good = tmp_path / "good.jsonl"
    good.write_text('{"id": 1, "text": "x"}\n')
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("stages: [1, 2\n")
    unknown_field = tmp_path / "unknown.yaml"
    unknown_field.write_text("name: r9\ncollection: docs\ncanary_collection: docs-v2\nanalysis: {no_such: 1}\n")
    start = ("rollout", "start", "r1", "--collection", "docs", "--canary", "docs-v2", *addr)
    cases = [
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("search", *addr), "TEXT"),
        (("search", "q", "--limit", "0", *addr), "--limit"),
        (("search", "--vector", "[1,", *addr), "--vector"),
        (("search", "q", "--output", "xml", *addr), "--output"),
        (("search", "q", "--collection", "nosuch", *addr), "NOT_FOUND"),
        (("search", "q", "--collection", "bad name!", *addr), "INVALID_ARGUMENT"),
        (("ingest", str(tmp_path / "missing.jsonl"), "--collection", "docs", *addr), "missing.jsonl: no such file"),
        (("ingest", str(good), *addr), "--collection"),
        (("ingest", str(good), "--collection", "docs", "--batch-size", "0", *addr), "--batch-size"),
        (("ingest", str(tmp_path / "x.txt"), "--collection", "docs", *addr), "--format"),
        (("ingest", str(good), "--collection", "nosuch", *addr), "NOT_FOUND"),
        (("ingest", str(good), "--collection", "docs", "--id-field", "key", "--id-from-content", *addr),
         "--id-from-content"),
        (("collections", *addr), "OPERATION"),
        (("collections", "frobnicate", *addr), "invalid choice"),
        (("collections", "create", "x", "--dimension", "-1", *addr), "--dimension"),
        (("collections", "create", "bad name!", *addr), "INVALID_ARGUMENT"),
        (("collections", "get", "nosuch", *addr), "NOT_FOUND"),
        (("collections", "delete", "docs-v1", *addr), "FAILED_PRECONDITION"),
        (("collections", "list", "--addr", "not an address"), "--addr"),
        (("collections", "list", "--tls-ca", str(tmp_path / "none.pem"), *addr), "--tls-ca"),
        (("collections", "list", "--timeout", "-1", *addr), "--timeout"),
        (("rollout", *addr), "OPERATION"),
        ((*start, "--stages", "5%:x"), "--stages"),
        ((*start, "--stages", "150%"), "--stages"),
        ((*start, "--max-error-rate", "-1"), "--max-error-rate"),
        ((*start, "--window-s", "soon"), "--window-s"),
        (("rollout", "start", "r1", "--collection", "docs", *addr), "--canary"),
        (("rollout", "start", "--spec", str(tmp_path / "none.yaml"), *addr), "--spec"),
        (("rollout", "start", "--spec", str(bad_yaml), *addr), "--spec"),
        (("rollout", "start", "--spec", str(unknown_field), *addr), "--spec"),
        (("rollout", "status", "nosuch", *addr), "NOT_FOUND"),
        (("rollout", "history", "nosuch", *addr), "NOT_FOUND"),
        (("rollout", "watch", "nosuch", *addr), "NOT_FOUND"),
        (("rollout", "pause", *addr), "name"),
        (("rollout", "promote", "nosuch", *addr), "NOT_FOUND"),
        (("serve", "--grace-period-s", "-3"), "--grace-period-s"),
        (("serve", "--keepalive-timeout-s", "0"), "--keepalive-timeout-s"),
        (("serve", "--embed-timeout-s", "nan"), "--embed-timeout-s"),
        (("serve", "--port", "x"), "--port"),
        (("embedder", "serve", "--grace-period-s", "-1"), "--grace-period-s"),
        (("loadgen", "--rate", "-5"), "--rate"),
    ]
    # In-process (one console-script start costs seconds); a thread, so that this loop keeps serving the
    # gateway. The subprocess path is the other tests' and the README tour's.
    results = []
    for argv, _ in cases:
        code = await asyncio.to_thread(run_main, argv)
        out, err = capsys.readouterr()
        results.append((code, out, err))
    for (argv, expected), (code, out, err) in zip(cases, results):
        assert code == 2, (argv, code, out, err)
        assert "Traceback" not in err and "Traceback" not in out, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, (argv, err)
        assert expected in lines[0], (argv, lines[0])
    assert (await client.list_rollouts()).rollouts == []  # nothing was started by a refused command


async def test_gateway_options_work_before_and_after_the_operation(rig):
    server, client = await rig.start()
    await prepare(client)
    before = await searchgw("collections", "--addr", server.address, "--output", "json", "list")
    after = await searchgw("collections", "list", "--output", "json", "--addr", server.address)
    assert before[0] == after[0] == 0, (before, after)
    assert json.loads(before[1]) == json.loads(after[1])
    assert [c["name"] for c in json.loads(after[1])["collections"]] == ["docs-v1", "docs-v2"]
    code, out, err = await searchgw("collections", "list", env={"SEARCHGW_ADDR": server.address, "PATH": "/usr/bin"})
    assert code == 0, err
    assert out.splitlines()[0].split() == ["NAME", "DIM", "POINTS", "MODEL", "ALIASES"]


async def test_rollout_start_without_stages_gets_the_gateways_defaults(rig):
    server, client = await rig.start()
    await prepare(client)
    code, out, err = await searchgw("rollout", "start", "r1", "--collection", "docs", "--canary", "docs-v2",
                                    "--addr", server.address, "-o", "json")
    assert code == 0, err
    stages = json.loads(out)["stages"]
    assert [(s["weight_percent"], s["min_duration"], int(s["min_requests"])) for s in stages] == [
        (s.weight_percent, f"{s.min_duration_s:g}s", s.min_requests) for s in DEFAULT_STAGES]


async def test_rollout_start_reads_a_spec_and_the_flags_override_it(rig, tmp_path):
    server, client = await rig.start()
    await prepare(client)
    spec = tmp_path / "r1.yaml"
    spec.write_text("name: r1\ncollection: docs\ncanaryCollection: docs-v2\nauto_promote: true\n"
                    "stages:\n  - {weight_percent: 10, min_duration: 120s, min_requests: 30}\n  - {weight_percent: 100}\n"
                    "analysis:\n  interval: 20s\n  window: 120s\n  min_requests_per_arm: 7\n"
                    "  error_codes: [UNAVAILABLE, INTERNAL]\n")
    code, out, err = await searchgw("rollout", "start", "--spec", str(spec), "--min-requests-per-arm", "9",
                                    "--window-s", "3m", "--addr", server.address)
    assert code == 0, err
    rollout = await client.get_rollout("r1")
    assert [(s.weight_percent, s.min_duration.seconds, s.min_requests) for s in rollout.stages] == [
        (10.0, 120, 30), (100.0, 0, 0)]
    analysis = rollout.analysis
    assert (analysis.interval.seconds, analysis.window.seconds, analysis.min_requests_per_arm) == (20, 180, 9)
    assert list(analysis.error_codes) == ["UNAVAILABLE", "INTERNAL"] and rollout.auto_promote
    assert out.splitlines()[1].split()[:6] == ["state", "RUNNING", "stage", "1/2", "weight", "10%"]


async def test_rollout_start_takes_the_promotion_policy_and_undo_switches_back_while_baking(rig, tmp_path):
    server, client = await rig.start()
    await prepare(client)
    addr = ("--addr", server.address)
    spec = tmp_path / "r1.yaml"
    spec.write_text("promotion:\n  grace_period: 3600s\n  old_collection_action: OLD_COLLECTION_ACTION_DELETE\n")
    code, _, err = await searchgw("rollout", "start", "r1", "--collection", "docs", "--canary", "docs-v2",
                                  "--spec", str(spec), "--bake", "5m", "--old-collection", "keep", *addr)
    assert code == 0, err
    promotion = (await client.get_rollout("r1")).promotion
    assert (promotion.bake_duration.seconds, promotion.grace_period.seconds) == (300, 3600)
    assert promotion.old_collection_action == roll_pb.PromotionPolicy.OLD_COLLECTION_ACTION_KEEP  # the flag wins

    code, out, err = await searchgw("rollout", "promote", "r1", *addr)
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == ["state", "BAKING"]
    assert any(line.startswith("bake       started") and "(undo possible)" in line for line in out.splitlines())
    code, out, err = await searchgw("rollout", "undo", "r1", "--reason", "recall dropped", *addr)
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == ["state", "UNDONE"]
    assert await server.backend.resolve("docs") == "docs-v1"
    code, _, err = await searchgw("rollout", "undo", "r1", *addr)
    assert code != 0 and "undo needs BAKING" in err


async def test_status_is_concise_history_is_complete_and_watch_prints_a_line_per_decision(rig):
    server, client = await rig.start()
    await prepare(client)
    addr = ("--addr", server.address)
    assert (await searchgw("rollout", "start", "r1", "--collection", "docs", "--canary", "docs-v2", *addr))[0] == 0
    watch = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "searchgw.cli", "rollout", "watch", "r1", *addr, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    first = await asyncio.wait_for(watch.stdout.readline(), 60)
    assert first.decode().startswith("r1: RUNNING, stage 1/4, weight 5%")
    for _ in range(3):  # routine checks: every one a decision
        rig.clock.advance(10)
        await server.controller.tick()
    assert (await searchgw("rollout", "pause", "r1", "--reason", "looking", *addr))[0] == 0
    assert (await searchgw("rollout", "abort", "r1", *addr))[0] == 0
    rest, err = await asyncio.wait_for(watch.communicate(), 60)
    assert watch.returncode == 0, err
    lines = rest.decode().splitlines()
    assert [line.split()[2] for line in lines] == ["INCONCLUSIVE"] * 3 + ["PAUSED", "ABORTED"]
    assert "looking" in lines[3]

    code, status, _ = await searchgw("rollout", "status", "r1", *addr)
    assert code == 0 and len(status.splitlines()) <= 12
    assert "ABORTED" in status and "primary" in status and "canary" in status  # the last check's numbers
    code, history, _ = await searchgw("rollout", "history", "r1", *addr)
    assert code == 0
    # The three routine checks are folded into one entry with their count.
    assert [line.split()[2] for line in history.splitlines()] == ["STARTED", "INCONCLUSIVE", "PAUSED", "ABORTED"]


async def test_ingest_refuses_a_bad_file_whole_and_resumes_after_a_refused_record(rig, tmp_path):
    server, client = await rig.start(max_text_chars=60)
    await client.create_collection("docs")
    addr = ("--addr", server.address)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "text": "fine"}\n{"text": "no id"}\n{"id": 1, "text": "again"}\n')
    code, out, err = await searchgw("ingest", str(bad), "--collection", "docs", *addr)
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[:2] == [f"{bad}:2: no 'id' field; every record needs an id (--id-field NAME names "
                                    "another field, --id-from-content derives one from the text)",
                                    f"{bad}:3: id 1 again (first on line 1); a second record would silently "
                                    "replace the first"]
    assert (await client.get_collection("docs")).points_count == 0  # nothing written

    data = tmp_path / "data.jsonl"
    rows = [{"id": i, "text": ("a much too long passage " * 5) if i == 5 else f"passage {i}"} for i in range(1, 9)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    checkpoint = tmp_path / "checkpoint.json"
    common = (str(data), "--collection", "docs", "--batch-size", "2", "--checkpoint", str(checkpoint), *addr)
    code, out, err = await searchgw("ingest", *common)
    assert code == 2, err
    assert f"stopped after 4 of 8 records: {data}:5: INVALID_ARGUMENT: " in err and "run the same command" in err
    assert (await client.get_collection("docs")).points_count == 4 and checkpoint.exists()

    code, out, err = await searchgw("ingest", *common, "--continue")
    assert code == 0, err
    assert "resuming after 4 of 8 records" in err and f"{data}:5: refused by the gateway: " in err
    assert out.startswith("upserted 3 points into docs (after 4 written by an earlier run)")
    assert (await client.get_collection("docs")).points_count == 7 and not checkpoint.exists()

    code, out, err = await searchgw("ingest", str(data), "--collection", "docs", "--id-from-content", "--check")
    assert code == 0 and out.strip() == f"{data}: 8 good records, 0 bad"


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


async def test_rollout_prepare_waits_with_progress_then_validate_and_start(rig):
    server, client = await rig.start()
    await client.create_collection("docs-v1")
    await client.upsert("docs-v1", [{"id": i, "text": f"passage {i} about canary rollouts"} for i in range(120)])
    await client.update_alias("docs", "docs-v1")
    addr = ("--addr", server.address)
    code, out, err = await searchgw("rollout", "prepare", "r1", "--collection", "docs", "--canary", "docs-v2",
                                    "--batch-size", "40", "--stages", "10%,100%", "--wait", "--interval", "0.05",
                                    *addr)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("r1 PREPARING: backfill 0/120 (0.0%)")
    assert any(line.startswith("r1 PREPARED: backfill 120/120 (100.0%), 120 copied (0 re-embedded), 0 failed")
               for line in lines)
    code, out, err = await searchgw("rollout", "start", "r1", *addr)  # before a pre-flight: refused
    assert code == 2 and "run ValidateRollout (searchgw rollout validate r1)" in err
    code, out, err = await searchgw("rollout", "validate", "r1", "--query", "canary rollouts", "--k", "5", *addr)
    assert code == 0, err
    assert "preflight  pre-flight passed: counts primary 120 / canary 120; 1 queries, 0 failed" in out
    code, out, err = await searchgw("rollout", "start", "r1", "--reason", "checked", *addr)
    assert code == 0, err
    assert out.splitlines()[1].split()[:6] == ["state", "RUNNING", "stage", "1/2", "weight", "10%"]
