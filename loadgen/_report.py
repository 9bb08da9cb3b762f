"""Report: the merged outcome of a run, as a human table or a JSON document."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._histogram import LatencyHistogram
from searchgw.loadgen._recall import RecallPoint
from searchgw.loadgen._tally import Tally
from searchgw.loadgen._worker import WorkerResult

__all__ = ["QUANTILES", "REPORT_SCHEMA", "Report", "latency_summary_ms"]

REPORT_SCHEMA = "loadgen.report/v1"

#: The percentiles every latency summary carries, by name.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999))

_NS_PER_MS = 1_000_000


def latency_summary_ms(histogram: LatencyHistogram) -> dict[str, float | None]:
    """Percentiles, min, max and mean in milliseconds (all None when nothing was recorded)."""
    names = [name for name, _q in QUANTILES] + ["min", "max", "mean"]
    if histogram.count == 0:
        return dict.fromkeys(names)
    values = [*histogram.percentiles([q for _name, q in QUANTILES]),
              histogram.min_ns, histogram.max_ns, histogram.mean_ns]
    return {name: round(value / _NS_PER_MS, 4) for name, value in zip(names, values)}


@dataclass(frozen=True)
class Report:
    config: LoadConfig
    tally: Tally
    started_at: datetime  # wall clock, when the workers were started
    measured_s: float  # from the end of the warm-up to the last measured completion (or the planned end)
    wall_s: float  # the whole load, warm-up and draining included
    cpu_seconds: float  # CPU time of the load generator's processes during the load
    cpu_count: int
    #: --recall: recall@limit and latency per search setting, measured before the load.
    recall: tuple[RecallPoint, ...] = ()

    @classmethod
    def from_results(cls, config: LoadConfig, results: Sequence[WorkerResult], *, cpu_seconds: float,
                     started_at: datetime) -> Report:
        tally = Tally()
        for result in results:
            tally.merge(result.tally)
        measured_ns = max(r.measure_end_ns for r in results) - min(r.measure_start_ns for r in results)
        wall_ns = max(r.finished_ns for r in results) - min(r.started_ns for r in results)
        return cls(config=config, tally=tally, started_at=started_at, measured_s=measured_ns / 1e9,
                   wall_s=wall_ns / 1e9, cpu_seconds=cpu_seconds, cpu_count=os.cpu_count() or 1)

    @property
    def calls(self) -> int:
        return self.tally.calls

    @property
    def ok(self) -> int:
        return self.tally.calls_with("OK")

    @property
    def errors(self) -> int:
        return self.calls - self.ok

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.measured_s

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.measured_s

    @property
    def latency(self) -> LatencyHistogram:
        return self.tally.latency()

    @property
    def cpu_share(self) -> float:
        """The load generator's share of the machine's CPU during the load (0..1)."""
        return self.cpu_seconds / (self.wall_s * self.cpu_count) if self.wall_s > 0 else 0.0

    @property
    def _open_loop(self) -> bool:
        return self.config.mode == "open"

    def to_dict(self) -> dict[str, Any]:
        latency = self.latency
        return {
            "schema": REPORT_SCHEMA,
            "started_at": self.started_at.isoformat(),
            "config": self.config.to_dict(),
            "measured_s": round(self.measured_s, 6),
            "wall_s": round(self.wall_s, 6),
            "calls": self.calls,
            "ok": self.ok,
            "errors": self.errors,
            "error_rate": self.errors / self.calls if self.calls else 0.0,
            "calls_per_s": round(self.calls_per_s, 3),
            "ok_per_s": round(self.ok_per_s, 3),
            "target_calls_per_s": self.config.rate if self._open_loop else None,
            "warmup_calls": self.tally.warmup_calls,
            "late_starts": self.tally.late_starts if self._open_loop else None,
            "max_start_lag_ms": self.tally.max_start_lag_ns / _NS_PER_MS if self._open_loop else None,
            "latency_ms": latency_summary_ms(latency),
            "codes": {code: {"calls": histogram.count, "latency_ms": latency_summary_ms(histogram)}
                      for code, histogram in self.tally.by_code().items()},
            "arms": {arm: {"calls": histogram.count, "fallbacks": self.tally.fallbacks[arm],
                           "latency_ms": latency_summary_ms(histogram)}
                     for arm, histogram in self.tally.by_arm().items()},
            "fallbacks": sum(self.tally.fallbacks.values()),
            "load_generator": {"processes": self.config.processes, "cpu_seconds": round(self.cpu_seconds, 3),
                               "cpu_count": self.cpu_count, "cpu_share": round(self.cpu_share, 4)},
            "latency_histogram": latency.to_dict(),
            "recall": [point.to_dict() for point in self.recall] or None,
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def format_table(self) -> str:
        """The human summary printed at the end of a CLI run."""
        lines = [self._headline(), "", self._totals_line(), _latency_line(self.latency)]
        lines += ["", *_table("status", self.tally.by_code(), self.calls)]
        if self.config.rpc == "search":
            lines += ["", *_table("arm", self.tally.by_arm(), self.calls, fallbacks=self.tally.fallbacks)]
        if self.recall:
            lines += ["", *_recall_table(self.recall, self.config.limit)]
        lines += ["", f"load generator: {self.cpu_seconds:.2f} CPU s in {self.wall_s:.2f} s wall "
                      f"({_plural(self.config.processes, 'process', 'processes')}, {self.cpu_count} cores: "
                      f"{100 * self.cpu_share:.1f} % of the machine)"]
        return "\n".join(lines)

    def _headline(self) -> str:
        config = self.config
        what = {"search": f"Search ({'vector' if config.vector else 'text'})", "embed": "Embed",
                "upsert": f"Upsert ({'vector' if config.vector else 'text'})"}[config.rpc]
        load = (f"open loop at {config.rate:g} calls/s" if self._open_loop
                else f"closed loop, {_plural(config.concurrency, 'caller')}")
        return (f"{what} -> {config.target}: {load}, {self.measured_s:.2f} s measured "
                f"after {config.warmup_s:g} s warm-up ({self.tally.warmup_calls} warm-up calls left out)")

    def _totals_line(self) -> str:
        share = 100 * self.errors / self.calls if self.calls else 0.0
        text = f"calls {self.calls}   achieved {self.calls_per_s:.1f}/s   errors {self.errors} ({share:.2f} %)"
        if self._open_loop:
            text += (f"   late starts {self.tally.late_starts} "
                     f"(max lag {self.tally.max_start_lag_ns / _NS_PER_MS:.2f} ms)")
        return text


def _recall_table(points: Sequence[RecallPoint], limit: int) -> list[str]:
    columns = [name for name, _q in QUANTILES] + ["max"]
    rows = [f"{'setting':<20}{f'recall@{limit}':>10}{'queries':>10}" + "".join(f"{c:>10}" for c in columns)
            + "   (one call at a time, latency ms)"]
    for point in points:
        summary = latency_summary_ms(point.latency)
        rows.append(f"{point.setting:<20}{point.recall:>10.3f}{point.queries:>10}"
                    + "".join(f"{summary[c]:>10.2f}" for c in columns))
    return rows


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"


def _latency_line(histogram: LatencyHistogram) -> str:
    summary = latency_summary_ms(histogram)
    if histogram.count == 0:
        return "latency: no measured calls"
    return "latency ms   " + "   ".join(f"{name} {summary[name]:.2f}" for name in [*dict(QUANTILES), "max"])


def _table(title: str, groups: dict[str, LatencyHistogram], total: int,
           fallbacks: dict[str, int] | None = None) -> list[str]:
    columns = ["calls", "share"] + (["fallbacks"] if fallbacks is not None else []) \
        + [name for name, _q in QUANTILES] + ["max"]
    rows = [f"{title:<20}" + "".join(f"{column:>10}" for column in columns) + "   (latency ms)"]
    for name, histogram in sorted(groups.items(), key=lambda item: -item[1].count):
        summary = latency_summary_ms(histogram)
        cells = [str(histogram.count), f"{100 * histogram.count / total:.1f}%"]
        if fallbacks is not None:
            cells.append(str(fallbacks.get(name, 0)))
        cells += [f"{summary[column]:.2f}" for column in columns[len(cells):]]
        rows.append(f"{name:<20}" + "".join(f"{cell:>10}" for cell in cells))
    if not groups:
        rows.append("(no measured calls)")
    return rows
