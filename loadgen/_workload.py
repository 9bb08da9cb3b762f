"""What the calls carry: queries (from a file or built in), random unit vectors and routing keys."""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import pathlib
import random
from dataclasses import dataclass

import numpy as np

from searchgw.loadgen._config import LoadConfig
from searchgw.loadgen._corpus import BUILTIN_QUERIES
from searchgw.loadgen._errors import LoadgenError

__all__ = ["Inputs", "Query", "RoutingKeys", "arrival_times", "load_queries", "queries_for", "unit_vector"]


@dataclass(frozen=True)
class Query:
    """One line of a queries file: a text, a vector, or both."""

    text: str = ""
    vector: tuple[float, ...] = ()


def load_queries(path: pathlib.Path) -> tuple[Query, ...]:
    """Read a `.jsonl` (objects with `text` and/or `vector`) or `.csv` (a `text` column) file."""
    suffix = path.suffix.lower()
    try:
        with path.open(newline="", encoding="utf-8") as lines:
            if suffix in (".jsonl", ".ndjson"):
                queries = tuple(_jsonl_queries(lines, path))
            elif suffix == ".csv":
                queries = tuple(_csv_queries(lines, path))
            else:
                raise LoadgenError(f"{path}: expected a .jsonl or .csv file")
    except OSError as exc:
        raise LoadgenError(f"{path}: {exc.strerror or exc}") from None
    if not queries:
        raise LoadgenError(f"{path}: no queries")
    return queries


def _jsonl_queries(lines, path: pathlib.Path):
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadgenError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise LoadgenError(f"{path}:{number}: expected an object with `text` and/or `vector`")
        text, vector = record.get("text", ""), record.get("vector", [])
        if not isinstance(text, str) or not isinstance(vector, list) \
                or not all(isinstance(x, (int, float)) for x in vector):
            raise LoadgenError(f"{path}:{number}: `text` must be a string and `vector` a list of numbers")
        if not text and not vector:
            raise LoadgenError(f"{path}:{number}: neither `text` nor `vector`")
        yield Query(text=text, vector=tuple(float(x) for x in vector))


def _csv_queries(lines, path: pathlib.Path):
    reader = csv.DictReader(lines)
    if "text" not in (reader.fieldnames or ()):
        raise LoadgenError(f"{path}: no `text` column")
    for row in reader:
        if row["text"]:
            yield Query(text=row["text"])


def queries_for(config: LoadConfig) -> tuple[Query, ...]:
    """The queries a run draws from, checked against what the RPC needs. Empty means: with --vector
    and no file, every call gets a fresh random unit vector."""
    if config.queries is None:
        return () if config.vector else tuple(Query(text=text) for text in BUILTIN_QUERIES)
    queries = load_queries(config.queries)
    if config.vector:
        lengths = {len(query.vector) for query in queries}
        if 0 in lengths:
            raise LoadgenError(f"{config.queries}: --vector needs a `vector` on every line")
        if len(lengths) > 1:
            raise LoadgenError(f"{config.queries}: vectors of different lengths {sorted(lengths)}")
    elif not all(query.text for query in queries):
        raise LoadgenError(f"{config.queries}: every line needs a `text` (or run with --vector)")
    return queries


class Inputs:
    """Texts and vectors for requests: drawn at random from the queries, or random unit vectors."""

    def __init__(self, queries: tuple[Query, ...], *, dimension: int, rng: random.Random) -> None:
        self._queries = queries
        self._dimension = dimension
        self._rng = rng
        self._vector_rng = np.random.default_rng(rng.getrandbits(64))

    def text(self) -> str:
        return self._rng.choice(self._queries).text

    def vector(self) -> list[float]:
        if self._queries:
            return list(self._rng.choice(self._queries).vector)
        return unit_vector(self._vector_rng, self._dimension)


def unit_vector(rng: np.random.Generator, dimension: int) -> list[float]:
    """A direction drawn uniformly from the sphere (normalised Gaussian)."""
    values = rng.standard_normal(dimension)
    return (values / np.linalg.norm(values)).tolist()


class RoutingKeys:
    """Routing keys `user-<k>`, k in [0, count): none (empty), uniform, or Zipf-skewed (k=0 the most
    frequent, weight 1 / (k+1)^s)."""

    def __init__(self, distribution: str, *, count: int, zipf_s: float, rng: random.Random) -> None:
        self._distribution = distribution
        self._count = count
        self._rng = rng
        if distribution == "zipf":
            weights = ((rank + 1) ** -zipf_s for rank in range(count))
            self._cumulative = list(itertools.accumulate(weights))

    def next(self) -> str:
        if self._distribution == "none":
            return ""
        if self._distribution == "uniform":
            return f"user-{self._rng.randrange(self._count)}"
        point = self._rng.random() * self._cumulative[-1]
        return f"user-{min(bisect.bisect_right(self._cumulative, point), self._count - 1)}"


def arrival_times(start_ns: int, rate: float, rng: random.Random):
    """Poisson arrivals: an endless, increasing sequence of send times (ns) at `rate` per second."""
    mean_gap_ns = 1e9 / rate
    scheduled = float(start_ns)
    while True:
        scheduled += rng.expovariate(1.0) * mean_gap_ns
        yield int(scheduled)
