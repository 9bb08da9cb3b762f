"""searchgw's load generator: drives Search, Embed or Upsert and tells the truth under load.

    report = await run_load(LoadConfig(target="127.0.0.1:50051", mode="open", rate=500, duration_s=30))
    print(report.format_table()); Path("run.json").write_text(report.to_json())

Closed loop (N callers) or open loop (Poisson arrivals, latency from the scheduled send time), over
one or several worker processes whose histograms merge exactly. `searchgw loadgen --help` is the CLI.
"""

from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._errors import LoadgenError
from searchgw.loadgen._histogram import LatencyHistogram
from searchgw.loadgen._progress import Progress, ProgressLine
from searchgw.loadgen._report import REPORT_SCHEMA, Report, latency_summary_ms
from searchgw.loadgen._run import run_load, run_load_sync
from searchgw.loadgen._tally import NO_ROUTE, Tally

__all__ = [
    "NO_ROUTE",
    "REPORT_SCHEMA",
    "LatencyHistogram",
    "LoadConfig",
    "LoadgenError",
    "Progress",
    "ProgressLine",
    "Report",
    "Tally",
    "latency_summary_ms",
    "run_load",
    "run_load_sync",
]
