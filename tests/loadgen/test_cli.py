"""`searchgw loadgen`: flags, help, errors, the progress line, and a run end to end."""

from __future__ import annotations

import argparse
import asyncio
import io
import json

import pytest

from searchgw.loadgen import LoadConfig, Tally, cli
from searchgw.loadgen._progress import Progress, ProgressLine, format_progress
from tests.loadgen.servers import ScriptedSearch, serving


def parser() -> argparse.ArgumentParser:
    """What `searchgw.cli` builds, with only this package's command."""
    root = argparse.ArgumentParser(prog="searchgw")
    cli.register(root.add_subparsers(dest="command", required=True))
    return root


def run_cli(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parser().parse_args(["loadgen", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--target", "--rpc", "--mode", "--rate", "--concurrency", "--processes", "--duration-s",
                 "--warmup-s", "--deadline-s", "--keys", "--zipf-s", "--canary-arm", "--tls-ca", "--token",
                 "--metadata", "--queries", "--vector", "--json", "--quiet"):
        assert flag in text


def test_flags_environment_and_config_file_make_the_config(tmp_path, monkeypatch):
    config_file = tmp_path / "loadgen.yaml"
    config_file.write_text("loadgen:\n  rate: 50\n  collection: from-file\n")
    monkeypatch.setenv("SEARCHGW_LOADGEN_TOKEN", "from-env")
    args = parser().parse_args([
        "loadgen", "--config", str(config_file), "--mode", "open", "--rate", "250", "--processes", "2",
        "--keys", "zipf", "--zipf-s", "0.9", "--metadata", "a=1,b=2", "--vector", "--tls-ca", "ca.pem"])
    config = cli.config_from(args)
    assert config == LoadConfig(mode="open", rate=250.0, processes=2, keys="zipf", zipf_s=0.9,
                                metadata=("a=1", "b=2"), vector=True, tls_ca=config.tls_ca,
                                collection="from-file", token="from-env")
    assert str(config.tls_ca) == "ca.pem"


def test_a_bad_flag_value_exits_2_naming_it(capsys):
    assert run_cli(["loadgen", "--mode", "burst"]) == 2
    assert "--mode" in capsys.readouterr().err


async def test_a_run_prints_the_table_and_writes_the_json_report(tmp_path, capsys):
    report_file = tmp_path / "report.json"
    async with serving(search=ScriptedSearch()) as target:
        code = await asyncio.to_thread(run_cli, [
            "loadgen", "--target", target, "--duration-s", "0.2", "--warmup-s", "0.1", "--concurrency", "2",
            "--progress-interval-s", "0.05", "--json", str(report_file)])
    assert code == 0
    out, err = capsys.readouterr()
    assert "status" in out and "OK" in out
    assert "loadgen: " in err  # the progress line
    report = json.loads(report_file.read_text())
    assert report["calls"] == report["codes"]["OK"]["calls"] > 0


async def test_json_to_stdout_moves_the_table_to_stderr_and_quiet_drops_progress(capsys):
    async with serving(search=ScriptedSearch()) as target:
        code = await asyncio.to_thread(run_cli, [
            "loadgen", "--target", target, "--duration-s", "0.1", "--warmup-s", "0", "--quiet", "--json"])
    assert code == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["calls"] > 0
    assert "status" in err and "loadgen: " not in err


def test_an_unreachable_target_exits_1(capsys):
    assert run_cli(["loadgen", "--target", "127.0.0.1:1", "--connect-timeout-s", "0.2", "--quiet"]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_the_progress_line_shows_rate_percentiles_and_errors():
    tally = Tally()
    for latency_ms in (1, 2, 3):
        tally.record_call("OK", "primary", latency_ms * 1_000_000)
    tally.record_call("UNAVAILABLE", "none", 500_000)
    config = LoadConfig(mode="open", warmup_s=1.0, duration_s=10.0)
    text = format_progress(Progress(config=config, elapsed_s=3.0, interval=tally, total=tally))
    assert text == "loadgen: 2.0/10 s  4 calls  2.0/s  p50 1.00 ms  p99 3.00 ms  errors 1 (25.0 %)  late 0"
    warming = format_progress(Progress(config=config, elapsed_s=0.5, interval=Tally(), total=Tally()))
    assert warming.startswith("loadgen: warm-up 0.5/1 s")
    stream = io.StringIO()
    line = ProgressLine(stream)
    line(Progress(config=config, elapsed_s=3.0, interval=tally, total=tally))
    line.close()
    assert stream.getvalue() == text + "\n"  # not a terminal: plain lines, no carriage returns
