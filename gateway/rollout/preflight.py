"""The pre-flight: does the canary answer like primary before it takes any traffic?

Pure part (no I/O): `overlap_at_k`, `rank_biased_overlap` and `judge_preflight`, a function of the
counts and the per-query rankings, so a recorded pre-flight can be replayed from its numbers.

Rank-biased overlap (Webber, Moffat & Zobel, "A similarity measure for indefinite rankings", TOIS
2010). With A_d = |S[:d] ∩ L[:d]| / d the agreement at depth d, RBO = (1 − p) Σ_{d≥1} p^(d−1) A_d:
a weighted mean of the agreements in which rank d weighs p^(d−1), so the top ranks count most (the
first d ranks carry 1 − p^d of the weight). Rankings are finite here, so we use the paper's
extrapolated form (its eq. 32), which assumes the agreement seen at the last depth continues:
for S (length s) and L (length l ≥ s), with X_d the overlap at depth d (for d > s, of all of S
with L[:d]),

    RBO_ext = (1 − p)/p · [ Σ_{d=1..l} (X_d/d) p^d  +  Σ_{d=s+1..l} X_s (d − s)/(s·d) p^d ]
              + [ (X_l − X_s)/l + X_s/s ] · p^l

Identical rankings score 1 and disjoint ones 0 at any depth (the truncated sum would give
1 − p^k for identical lists of length k). Two empty rankings agree (1); one empty one does not (0).

I/O part: `PreflightRunner` counts both collections and runs each query text on both arms, each
embedded with its own arm's model (as SearchCore does for a routed search), through the backend.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from searchgw.gateway.backends import PointId, SearchQuery, VectorBackend
from searchgw.gateway.embedding import TextEmbedder
from searchgw.gateway.rollout.preparation import PreflightPolicy, PreflightResult
from searchgw.gateway.rules import TEXT_PAYLOAD_KEY
from searchgw.errors import FailedPrecondition, InvalidArgument, SearchgwError

log = logging.getLogger("searchgw.gateway.rollout")

#: Points scanned (from primary's start) to draw a sample of stored texts from.
SAMPLE_SCAN_FACTOR = 20
#: Texts per embedding call.
EMBED_CHUNK = 32


def overlap_at_k(first: Sequence[Hashable], second: Sequence[Hashable], k: int) -> float:
    """|first[:k] ∩ second[:k]| / k."""
    if k < 1:
        raise ValueError("k must be at least 1")
    return len(set(first[:k]) & set(second[:k])) / k


def rank_biased_overlap(first: Sequence[Hashable], second: Sequence[Hashable], p: float) -> float:
    """Extrapolated rank-biased overlap of two rankings (no repeated items), in [0, 1]; see the module."""
    if not 0 < p < 1:
        raise ValueError("p must lie in (0, 1)")
    short, long = (first, second) if len(first) <= len(second) else (second, first)
    s, l = len(short), len(long)
    if l == 0:
        return 1.0
    if s == 0:
        return 0.0
    seen_short: set[Hashable] = set()
    seen_long: set[Hashable] = set()
    overlap = 0  # X_d
    total = 0.0
    x_s = 0
    for d in range(1, l + 1):
        item_long = long[d - 1]
        if d <= s:
            item_short = short[d - 1]
            if item_short == item_long:
                overlap += 1
            else:
                overlap += (item_short in seen_long) + (item_long in seen_short)
            seen_short.add(item_short)
            seen_long.add(item_long)
            if d == s:
                x_s = overlap
        else:
            overlap += item_long in seen_short
            total += x_s * (d - s) / (s * d) * p ** d
        total += overlap / d * p ** d
    return (1 - p) / p * total + ((overlap - x_s) / l + x_s / s) * p ** l


@dataclass(frozen=True, slots=True)
class QueryComparison:
    """One query's results on both arms (None: that arm's call failed, with its error)."""

    text: str
    primary: tuple[PointId, ...] | None
    canary: tuple[PointId, ...] | None
    error: str = ""


def judge_preflight(policy: PreflightPolicy, primary_count: int, canary_count: int,
                    comparisons: Sequence[QueryComparison], time: float) -> PreflightResult:
    """The verdict of a pre-flight from its numbers (pure)."""
    errors = sum(1 for c in comparisons if c.primary is None or c.canary is None)
    answered = [c for c in comparisons if c.primary is not None and c.canary is not None]
    overlaps = [overlap_at_k(c.primary or (), c.canary or (), policy.k) for c in answered]
    rbos = [rank_biased_overlap(c.primary or (), c.canary or (), policy.rbo_p) for c in answered]
    mean_overlap = sum(overlaps) / len(overlaps) if overlaps else 0.0
    mean_rbo = sum(rbos) / len(rbos) if rbos else 0.0
    worst = min(overlaps, default=0.0)
    problems = []
    difference = abs(primary_count - canary_count)
    if difference > policy.count_tolerance:
        problems.append(f"point counts differ by {difference} (primary {primary_count}, canary {canary_count}; "
                        f"tolerance {policy.count_tolerance})")
    if not comparisons:
        problems.append("no query to compare (name queries, or store texts in primary's points)")
    if errors:
        first = next(c for c in comparisons if c.primary is None or c.canary is None)
        problems.append(f"{errors} of {len(comparisons)} queries failed (first: {first.error})")
    if answered and mean_overlap < policy.min_overlap_at_k:
        problems.append(f"mean overlap@{policy.k} {mean_overlap:.3f} < {policy.min_overlap_at_k:g}")
    if answered and mean_rbo < policy.min_rbo:
        problems.append(f"mean RBO(p={policy.rbo_p:g}) {mean_rbo:.3f} < {policy.min_rbo:g}")
    numbers = (f"counts primary {primary_count} / canary {canary_count}; {len(comparisons)} queries, {errors} "
               f"failed; overlap@{policy.k} mean {mean_overlap:.3f} (worst {worst:.3f}), RBO(p={policy.rbo_p:g}) "
               f"mean {mean_rbo:.3f}")
    passed = not problems
    summary = (f"pre-flight passed: {numbers}" if passed
               else f"pre-flight failed: {'; '.join(problems)} — {numbers}")
    return PreflightResult(passed=passed, time=time, policy=policy, primary_count=primary_count,
                           canary_count=canary_count, queries=len(comparisons), errors=errors,
                           mean_overlap_at_k=mean_overlap, min_overlap_at_k=worst, mean_rbo=mean_rbo,
                           summary=summary)


class PreflightRunner:
    """Gathers a pre-flight's numbers: counts, and each query's top k on both arms."""

    def __init__(self, backend: VectorBackend, embedder: TextEmbedder | None) -> None:
        self._backend = backend
        self._embedder = embedder

    async def run(self, primary: str, canary: str, policy: PreflightPolicy, queries: Sequence[str], *,
                  seed: str, wall_clock: Callable[[], float]) -> PreflightResult:
        """`queries` ("" none: `policy.sample_size` stored texts sampled from primary, seeded by `seed`)."""
        if self._embedder is None:
            raise FailedPrecondition("this gateway has no embedder: a pre-flight runs text queries")
        for index, text in enumerate(queries):
            if not text.strip():
                raise InvalidArgument(f"queries[{index}]", "must not be empty")
        primary_count = await self._backend.count(primary)
        canary_count = await self._backend.count(canary)
        texts = list(queries) or await self._sample_texts(primary, policy.sample_size, seed)
        primary_spec = (await self._backend.get_collection(primary)).spec
        canary_spec = (await self._backend.get_collection(canary)).spec
        primary_hits = await self._top_k(primary, primary_spec.embedding_model, texts, policy.k)
        canary_hits = await self._top_k(canary, canary_spec.embedding_model, texts, policy.k)
        comparisons = []
        for text, (p_ids, p_error), (c_ids, c_error) in zip(texts, primary_hits, canary_hits, strict=True):
            error = f"primary: {p_error}" if p_error else (f"canary: {c_error}" if c_error else "")
            comparisons.append(QueryComparison(text, p_ids, c_ids, error))
        return judge_preflight(policy, primary_count, canary_count, comparisons, wall_clock())

    async def _sample_texts(self, primary: str, size: int, seed: str) -> list[str]:
        """Up to `size` stored texts, drawn at random (seeded) from primary's first points."""
        page = await self._backend.scroll(primary, limit=size * SAMPLE_SCAN_FACTOR)
        texts = [p.payload[TEXT_PAYLOAD_KEY] for p in page.points
                 if isinstance(p.payload.get(TEXT_PAYLOAD_KEY), str) and p.payload[TEXT_PAYLOAD_KEY].strip()]
        random.Random(seed).shuffle(texts)
        return texts[:size]

    async def _top_k(self, collection: str, model: str, texts: Sequence[str],
                     k: int) -> list[tuple[tuple[PointId, ...] | None, str]]:
        """Each text's top-k ids on `collection`, or None and the error."""
        assert self._embedder is not None
        if not texts:
            return []
        if not model:
            return [(None, f"collection {collection!r} has no embedding model")] * len(texts)
        try:
            vectors = [vector for start in range(0, len(texts), EMBED_CHUNK)
                       for vector in await self._embedder.embed(texts[start:start + EMBED_CHUNK], model=model,
                                                                field="queries", deadline=None)]
        except SearchgwError as exc:
            return [(None, f"embedding with {model!r} failed: {exc.message}")] * len(texts)
        results: list[tuple[tuple[PointId, ...] | None, str]] = []
        for vector in vectors:
            try:
                hits = await self._backend.search(collection, SearchQuery(vector=vector, limit=k))
            except SearchgwError as exc:
                results.append((None, exc.message))
                continue
            results.append((tuple(hit.id for hit in hits), ""))
        return results
