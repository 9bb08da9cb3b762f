"""ExperimentManager: the experiments' lifecycle, their routing on the request path, outcomes and verdicts.

Routing: while an experiment is RUNNING, a keyed search to its alias lands in bucket
xxh3_64(salt ‖ NUL ‖ key) mod 10 000 (`routing.buckets`, the experiment's own salt) and the arm that
owns the bucket serves it: control's range first, then each variant's, in order (`BucketLayout`).
The split never changes during an experiment, so a key keeps its arm from start to end. In CREATED
and PAUSED the alias target (control) serves every search. `held(alias)` is the request path's one
lookup (a dict read; the snapshot is swapped whole, like the rollout router's).

Writes: while an experiment holds its alias (CREATED, RUNNING, PAUSED) a write to the alias reaches
every arm, each embedded with its arm's model (`write_targets`), like a rollout's dual writes: the
variants are their own collections (another index, quantization or model), and a variant that missed
writes would be judged on stale data. Creation holds the alias's writes until its targets are out
(the shared `WriteOrder`), so no write that started before lands in control only.

Rollouts: an experiment and a rollout never hold one alias at once. Creation checks `rollout_on(alias)`
under the rollout controller's creation lock, and the controller asks `holder_of(alias)` under the same
lock (both FAILED_PRECONDITION, reasons ROLLOUT_ACTIVE / EXPERIMENT_ACTIVE).

Counting: each routed search's ending (status code name, latency) is added to its arm's live counts
(`record_search`, event-loop only, no lock); client outcomes to the arm their search id names
(`report_outcomes`). Every `policy.interval_s` the tick folds what was counted since the last fold into
the tests (significance.ExperimentEvidence), records the verdict, and saves the experiment (counts and
test state), so a restart continues where it was. A change of verdict is logged with its numbers and
kept as a decision.

Several replicas (`leadership`, `shared_counts`, a versioned store; experiments/cluster.py): each tick
first adopts the other replicas' newer saves (`_sync`/`_adopt`). Only the leader folds and saves; a
follower shares its counts instead. Per experiment, `base` is what the store has, `pushed` that plus what
this replica has shared since: live counts − `pushed` is what only this replica knows, kept across an
adoption and handed over at its next share (or saved, when it leads), so nothing is lost or counted
twice when the leader changes.

Shadow quality (experiments/quality.py): SearchCore records a variant's comparisons with control
(`record_comparison`); they are folded with the counts, and the default `QualityGuard` reads them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import xxhash

from searchgw.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from searchgw.gateway.experiments.cluster import (
    CountsDelta,
    ExperimentCounts,
    VersionedExperimentStore,
    add_counts,
)
from searchgw.gateway.experiments.model import (
    CONTROL,
    ArmCounts,
    ArmSpec,
    Experiment,
    ExperimentDecision,
    ExperimentState,
    OutcomeTotals,
    validate_new_experiment,
)
from searchgw.gateway.experiments.outcomes import OutcomeLedger, OutcomeStatus, SearchIds
from searchgw.gateway.experiments.quality import ExperimentQuality, ShadowQualityGuard
from searchgw.gateway.experiments.significance import ExperimentEvidence, ExperimentVerdict, SliceCounts
from searchgw.gateway.experiments.store import ExperimentChanged, ExperimentStore
from searchgw.gateway.paging import Page, PageTokens
from searchgw.gateway.rollout.cluster import Leadership
from searchgw.gateway.rollout.model import check_arm_spaces, check_reason
from searchgw.gateway.rollout.quality import QualityPolicy, QualitySummary
from searchgw.gateway.routing.buckets import BUCKETS, BucketLayout, salt_prefix
from searchgw.gateway.routing.writes import WriteOrder
from searchgw.gateway.rules import check_rollout_name

log = logging.getLogger("searchgw.gateway.experiments")

_CREATED, _RUNNING, _PAUSED = ExperimentState.CREATED, ExperimentState.RUNNING, ExperimentState.PAUSED
_STOPPED, _CONCLUDED = ExperimentState.STOPPED, ExperimentState.CONCLUDED
_HOLDING = frozenset({_CREATED, _RUNNING, _PAUSED})
ANONYMOUS_ACTOR = "anonymous"
#: How many outcomes one ReportOutcome call may carry.
MAX_OUTCOMES_PER_REPORT = 1000
MAX_OUTCOME_VALUE = 1e12

SwitchAlias = Callable[[str, str], Awaitable[object]]
ResolveAlias = Callable[[str], Awaitable[str]]
DescribeSpace = Callable[[str], Awaitable[tuple[int, str]]]


class ExperimentObserver(Protocol):
    """What the metrics hear (gateway/metrics.py implements it)."""

    def observe_experiment_search(self, experiment: str, arm: str, code: str, seconds: float) -> None: ...

    def observe_experiment_outcome(self, experiment: str, arm: str, kind: str, status: str) -> None: ...

    def on_experiment(self, experiment: Experiment, verdict: ExperimentVerdict | None) -> None: ...


class QualityGuard(Protocol):
    """A result-quality check of a variant against control (the default, `quality.ShadowQualityGuard`: the
    rollouts' sign test on the median overlap@k of shadow searches, when the policy turns it on). `veto` returns the
    reason, with its numbers, when the variant must not win, or None. Called at every fold, on the event loop:
    it reads numbers gathered elsewhere, it does not search."""

    def veto(self, experiment: Experiment, variant: ArmSpec) -> str | None: ...


class _LiveCounts:
    """One arm's counts, mutated on the event loop by the request path."""

    __slots__ = ("searches", "errors", "slow", "latency_sum_s", "outcomes")

    def __init__(self, counts: ArmCounts | None = None) -> None:
        counts = counts or ArmCounts()
        self.searches, self.errors, self.slow = counts.searches, counts.errors, counts.slow
        self.latency_sum_s = counts.latency_sum_s
        self.outcomes: dict[str, list[float]] = {k: [t.count, t.value_sum] for k, t in counts.outcomes.items()}

    def add(self, counts: ArmCounts) -> None:
        self.searches += counts.searches
        self.errors += counts.errors
        self.slow += counts.slow
        self.latency_sum_s += counts.latency_sum_s
        for kind, totals in counts.outcomes.items():
            mine = self.outcomes.setdefault(kind, [0, 0.0])
            mine[0] += totals.count
            mine[1] += totals.value_sum

    def frozen(self) -> ArmCounts:
        return ArmCounts(self.searches, self.errors, self.slow, self.latency_sum_s,
                         {kind: OutcomeTotals(int(c), s) for kind, (c, s) in self.outcomes.items()})

    def slice(self, goal: str) -> SliceCounts:
        return SliceCounts(self.searches, self.errors, self.slow, int(self.outcomes.get(goal, (0, 0.0))[0]))


@dataclass(frozen=True, slots=True)
class ArmRoute:
    """Where a search under an experiment goes, and what it is counted as."""

    experiment: str
    arm: str
    index: int
    collection: str
    is_control: bool
    #: False: served (by the alias target) but outside the experiment (it is not RUNNING).
    counted: bool


class HeldAlias:
    """An alias an experiment holds, prepared for the request path."""

    __slots__ = ("experiment", "running", "arms", "control", "_prefix", "_ends", "_counted", "by_collection")

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment.name
        self.running = experiment.state is _RUNNING
        self.arms = tuple(ArmRoute(experiment.name, arm.name, index, arm.collection, index == 0, False)
                          for index, arm in enumerate(experiment.arms))
        self._counted = tuple(dataclasses.replace(route, counted=True) for route in self.arms)
        self.control = self.arms[0]
        layout = BucketLayout.from_weights([(index, arm.split_bps) for index, arm in enumerate(experiment.arms)])
        self._ends = layout.ends
        self._prefix = salt_prefix(experiment.salt)
        self.by_collection = {route.collection: route for route in self.arms}

    def assign(self, key: str) -> ArmRoute:
        """The arm (counted) that serves routing key `key` while RUNNING; control otherwise (not counted)."""
        if not self.running:
            return self.control
        bucket = xxhash.xxh3_64_intdigest(self._prefix + key.encode()) % BUCKETS
        return self._counted[bisect.bisect_right(self._ends, bucket)]

    @property
    def write_targets(self) -> tuple[str, ...]:
        return tuple(route.collection for route in self.arms)


class _Live:
    """A holding experiment's mutable side: live counts, the tests, watchers, the next fold time."""

    def __init__(self, experiment: Experiment, now: float) -> None:
        self.experiment = experiment
        self.counts = {arm.name: _LiveCounts(experiment.counts.get(arm.name)) for arm in experiment.arms}
        #: Several replicas: the counts the store has (as of the save this replica last adopted or made), and
        #: those plus what this replica shared since. live counts − `pushed` is what nobody else knows yet.
        self.base: dict[str, ArmCounts] = {arm.name: experiment.counts.get(arm.name, ArmCounts())
                                           for arm in experiment.arms}
        self.pushed = dict(self.base)
        self.evidence = ExperimentEvidence.from_json(experiment.policy.alpha, [v.name for v in experiment.variants],
                                                     experiment.evidence)
        self.quality = ExperimentQuality(experiment, _stored_quality(experiment))
        #: The variants vetoed at the last fold (a new veto is logged and kept as a decision once).
        self.vetoed = frozenset(v.name for v in experiment.variants if self.quality.veto(v.name) is not None)
        self.verdict: ExperimentVerdict | None = None
        self.next_fold = now + experiment.policy.interval_s
        self.watchers: set[asyncio.Queue[Experiment | None]] = set()
        self.lock = asyncio.Lock()


class ExperimentManager:
    def __init__(
        self,
        store: ExperimentStore,
        *,
        switch_alias: SwitchAlias,
        resolve_alias: ResolveAlias,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        search_ids: SearchIds,
        outcome_ttl_s: float = 1800.0,
        max_tracked_search_ids: int = 200_000,
        observer: ExperimentObserver | None = None,
        write_order: WriteOrder | None = None,
        creation_lock: asyncio.Lock | None = None,
        rollout_on: Callable[[str], str | None] = lambda alias: None,
        vector_space: DescribeSpace | None = None,
        page_tokens: PageTokens | None = None,
        tick_interval: float = 1.0,
        quality_guard: QualityGuard | None = None,
        leadership: Leadership | None = None,
        shared_counts: ExperimentCounts | None = None,
    ) -> None:
        """Several replicas (`--state redis`): `leadership` (the rollouts' lease) says whether this replica
        judges, `shared_counts` carries the followers' counts to it, and `store` must then be versioned
        (`VersionedExperimentStore`, polled at every tick). Without them this replica does everything."""
        #: Judges the variants' shadow quality (default: the policy's own guard over the shadow comparisons
        #: SearchCore records here; it vetoes only when the experiment's policy turns it on).
        self.quality_guard: QualityGuard = quality_guard or ShadowQualityGuard(self.quality_of)
        self._store = store
        self._switch_alias = switch_alias
        self._resolve_alias = resolve_alias
        self._clock = clock
        self._wall_clock = wall_clock
        self.search_ids = search_ids
        self.ledger = OutcomeLedger(outcome_ttl_s, max_tracked_search_ids)
        self._observer = observer
        self._write_order = write_order or WriteOrder()
        self._creation_lock = creation_lock or asyncio.Lock()
        self._rollout_on = rollout_on
        self._vector_space = vector_space
        self._page_tokens = page_tokens or PageTokens()
        self._tick_interval = tick_interval
        self._experiments: dict[str, Experiment] = {}
        self._live: dict[str, _Live] = {}
        self._held: dict[str, HeldAlias] = {}
        self._task: asyncio.Task[None] | None = None
        self._leadership = leadership
        self._shared_counts = shared_counts
        self._versioned: VersionedExperimentStore | None = None
        if shared_counts is not None:
            if not all(hasattr(store, m) for m in ("versions", "known_version", "read")):
                raise TypeError("shared experiment counts need a versioned store (RedisExperimentStore)")
            self._versioned = store  # type: ignore[assignment]

    # -- the request path -------------------------------------------------------------------------
    def held(self, alias: str) -> HeldAlias | None:
        """The experiment holding `alias`, prepared for routing; None (the common case) otherwise."""
        return self._held.get(alias)

    def holder_of(self, alias: str) -> str | None:
        held = self._held.get(alias)
        return None if held is None else held.experiment

    @property
    def store(self) -> ExperimentStore:
        return self._store

    def refuse_rollout(self, alias: str) -> None:
        """The rollout controller's guard: FailedPrecondition while an experiment holds `alias`."""
        holder = self.holder_of(alias)
        if holder is not None:
            raise FailedPrecondition(
                f"collection {alias!r} is in experiment {holder!r}: a rollout and an experiment may not route one "
                f"alias at once; stop or conclude the experiment first",
                reason="EXPERIMENT_ACTIVE", metadata={"collection": alias, "experiment": holder})

    def holding(self, name: str) -> str | None:
        """The experiment that holds `name` as its alias or as one of its arms' collections, or None."""
        for alias, held in self._held.items():
            if name == alias or name in held.by_collection:
                return held.experiment
        return None

    def arms_of(self, name: str) -> tuple[str, ...]:
        """Every arm's collection (control first) of the experiment holding `name` (alias or arm); else ()."""
        for alias, held in self._held.items():
            if name == alias or name in held.by_collection:
                return held.write_targets
        return ()

    def write_targets(self, alias: str) -> tuple[str, ...]:
        held = self._held.get(alias)
        return () if held is None else held.write_targets

    def record_search(self, route: ArmRoute, code: str, seconds: float) -> None:
        """Count one routed search's ending for its arm (event loop only)."""
        live = self._live.get(route.experiment)
        if live is None or not route.counted:
            return
        counts = live.counts[route.arm]
        counts.searches += 1
        counts.latency_sum_s += seconds
        if code in live.experiment.policy.error_codes:
            counts.errors += 1
        if code != "OK" or seconds > live.experiment.policy.latency_threshold_s:
            counts.slow += 1  # a failed search counts as slow: a variant cannot look fast by failing
        if self._observer is not None:
            self._observer.observe_experiment_search(route.experiment, route.arm, code, seconds)

    # -- shadow quality (SearchCore runs the shadow searches; experiments/quality.py counts them) ------------
    def shadow_policy(self, experiment: str) -> QualityPolicy | None:
        """The quality policy of a RUNNING experiment that samples shadow searches; None otherwise."""
        live = self._live.get(experiment)
        if live is None or live.experiment.state is not _RUNNING or not live.quality.enabled:
            return None
        return live.experiment.policy.quality

    def record_comparison(self, experiment: str, variant: str, overlap: float, rbo: float,
                          differing: Sequence[str] = ()) -> None:
        """Count one shadow comparison of `variant` with control (event loop; no I/O). Dropped when the
        experiment no longer runs (it ended while the shadow search ran)."""
        live = self._live.get(experiment)
        if live is not None and live.experiment.state is _RUNNING:
            live.quality.record(variant, overlap, rbo, differing)

    def quality_of(self, experiment: str) -> ExperimentQuality | None:
        live = self._live.get(experiment)
        return None if live is None else live.quality

    def issue_search_id(self, route: ArmRoute) -> str:
        return self.search_ids.issue(route.experiment, route.index, self._wall_clock())

    # -- outcomes ----------------------------------------------------------------------------------
    def report_outcomes(self, outcomes: Sequence[tuple[str, str, float]]) -> list[OutcomeStatus]:
        """Count (search id, kind, value) outcomes; each one's status. The whole report is refused
        (InvalidArgument naming the entry) before anything is counted when an entry is malformed."""
        if not outcomes:
            raise InvalidArgument("outcomes", "at least one outcome is required")
        if len(outcomes) > MAX_OUTCOMES_PER_REPORT:
            raise InvalidArgument("outcomes", f"{len(outcomes)} outcomes; at most {MAX_OUTCOMES_PER_REPORT} per call")
        parsed = []
        for index, (token, kind, value) in enumerate(outcomes):
            if not token:
                raise InvalidArgument(f"outcomes[{index}].search_id", "is required (SearchResponse.search_id)")
            search_id = self.search_ids.read(token, f"outcomes[{index}].search_id")
            experiment = self._experiments.get(search_id.experiment)
            if experiment is None or search_id.arm_index >= len(experiment.arms):
                raise InvalidArgument(f"outcomes[{index}].search_id",
                                      f"names experiment {search_id.experiment!r}, which this gateway does not know")
            if kind not in experiment.policy.outcome_kinds:
                raise InvalidArgument(f"outcomes[{index}].kind",
                                      f"{kind!r} is not an outcome kind of experiment {experiment.name!r} "
                                      f"({', '.join(experiment.policy.outcome_kinds)})")
            if not (math.isfinite(value) and abs(value) <= MAX_OUTCOME_VALUE):
                raise InvalidArgument(f"outcomes[{index}].value", f"{value}; must be finite, |value| ≤ 1e12")
            parsed.append((search_id, experiment.arms[search_id.arm_index].name, kind, value))
        now = self._wall_clock()
        statuses = []
        for search_id, arm, kind, value in parsed:
            live = self._live.get(search_id.experiment)
            if live is None:
                status = OutcomeStatus.ENDED
            else:
                status = self.ledger.check(search_id, kind, now)
                if status is OutcomeStatus.ACCEPTED:
                    totals = live.counts[arm].outcomes.setdefault(kind, [0, 0.0])
                    totals[0] += 1
                    totals[1] += value
            statuses.append(status)
            if self._observer is not None:
                self._observer.observe_experiment_outcome(search_id.experiment, arm, kind, status.name.lower())
        return statuses

    # -- reading -----------------------------------------------------------------------------------
    def get(self, name: str) -> Experiment:
        check_rollout_name("name", name)
        if name not in self._experiments:
            raise NotFound(f"no experiment named {name!r}", metadata={"experiment": name})
        return self._snapshot(name)

    def list(self, collection: str | None, page_size: int, page_token: str) -> Page[Experiment]:
        items = [self._snapshot(name) for name, e in self._experiments.items()
                 if collection is None or e.collection == collection]
        return self._page_tokens.paginate(items, key=lambda e: (-e.create_time, e.name),
                                          page_size=page_size, page_token=page_token,
                                          listing="experiments", query=(collection or "",))

    def _snapshot(self, name: str) -> Experiment:
        """The experiment with its live counts (the tests as of the last fold)."""
        experiment = self._experiments[name]
        live = self._live.get(name)
        if live is None:
            return experiment
        return dataclasses.replace(experiment, counts={arm: c.frozen() for arm, c in live.counts.items()})

    async def watch(self, name: str) -> AsyncIterator[Experiment]:
        """The experiment now, then after every fold and transition; ends when it ends."""
        self.get(name)
        live = self._live.get(name)
        yield self._snapshot(name)
        if live is None:
            return
        queue: asyncio.Queue[Experiment | None] = asyncio.Queue()
        live.watchers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
                if not event.state.holds_alias:
                    return
        finally:
            live.watchers.discard(queue)

    # -- transitions -------------------------------------------------------------------------------
    async def create(self, spec: Experiment, actor: str = "") -> Experiment:
        """A new experiment in CREATED: it holds the alias (writes reach every arm), control serves."""
        spec = validate_new_experiment(spec)
        async with self._creation_lock, self._write_order.publishing(spec.collection):
            if spec.name in self._experiments:
                raise AlreadyExists(f"an experiment named {spec.name!r} already exists; pick another name",
                                    reason="EXPERIMENT_EXISTS", metadata={"experiment": spec.name})
            holder = self.holder_of(spec.collection)
            if holder is not None:
                raise AlreadyExists(f"collection {spec.collection!r} already has experiment {holder!r}; stop or "
                                    f"conclude it first", reason="ACTIVE_EXPERIMENT_EXISTS",
                                    metadata={"collection": spec.collection, "experiment": holder})
            rollout = self._rollout_on(spec.collection)
            if rollout is not None:
                raise FailedPrecondition(
                    f"collection {spec.collection!r} has an active rollout {rollout!r}: a rollout and an experiment "
                    f"may not route one alias at once; promote or abort the rollout first",
                    reason="ROLLOUT_ACTIVE", metadata={"collection": spec.collection, "rollout": rollout})
            target = await self._resolve_alias(spec.collection)
            if target == spec.collection:
                raise FailedPrecondition(
                    f"experiment.collection {spec.collection!r} is a collection, not an alias: conclusion switches "
                    f"an alias (create an alias pointing at {spec.collection!r})", reason="NOT_AN_ALIAS",
                    metadata={"collection": spec.collection})
            if spec.control.collection and spec.control.collection != target:
                raise FailedPrecondition(
                    f"experiment.control_collection {spec.control.collection!r} is not what {spec.collection!r} "
                    f"points at ({target!r}); leave it empty or set it to {target!r}")
            for index, variant in enumerate(spec.variants):
                if variant.collection == target:
                    raise InvalidArgument(f"experiment.variants[{index}].collection",
                                          f"{target!r} is control (what {spec.collection!r} points at)")
                if await self._resolve_alias(variant.collection) != variant.collection:
                    raise InvalidArgument(f"experiment.variants[{index}].collection",
                                          f"{variant.collection!r} is an alias; name the physical collection")
                if self._vector_space is not None:
                    check_arm_spaces(target, await self._vector_space(target), variant.collection,
                                     await self._vector_space(variant.collection))
            wall = self._wall_clock()
            experiment = dataclasses.replace(
                spec, control=ArmSpec(CONTROL, target, spec.control.split_bps), state=_CREATED,
                salt=secrets.token_hex(8), create_time=wall, update_time=wall, start_time=0.0, end_time=0.0,
                winner="", summary="no winner yet (not started)", concluded_arm="", promoted=False,
                counts={}, evidence={}, decisions=())
            experiment = experiment.with_decision(ExperimentDecision(
                wall, "created", _arms_text(experiment), actor or ANONYMOUS_ACTOR))
            try:
                await self._store.save(experiment)
            except ExperimentChanged:
                raise AlreadyExists(f"an experiment named {spec.name!r} already exists (created at another "
                                    f"replica); pick another name", reason="EXPERIMENT_EXISTS",
                                    metadata={"experiment": spec.name}) from None
            self._experiments[experiment.name] = experiment
            self._live[experiment.name] = _Live(experiment, self._clock())
            self._publish()
        log.info("experiment created", extra={"experiment": experiment.name, "collection": experiment.collection,
                                              "arms": _arms_text(experiment), "alpha": experiment.policy.alpha,
                                              "goal": experiment.policy.goal})
        self._announce(experiment)
        return experiment

    async def start(self, name: str, reason: str = "", actor: str = "") -> Experiment:
        async with self._transition(name, "start", {_CREATED, _PAUSED}) as live:
            wall = self._wall_clock()
            first = live.experiment.start_time == 0.0
            live.next_fold = self._clock() + live.experiment.policy.interval_s
            return await self._move(live, _RUNNING, "started" if first else "resumed", reason, actor,
                                    start_time=wall if first else live.experiment.start_time)

    async def pause(self, name: str, reason: str = "", actor: str = "") -> Experiment:
        async with self._transition(name, "pause", {_RUNNING}) as live:
            await self._settle(live)
            return await self._move(live, _PAUSED, "paused", reason, actor)

    async def stop(self, name: str, reason: str = "", actor: str = "") -> Experiment:
        async with self._transition(name, "stop", _HOLDING) as live:
            await self._settle(live)
            return await self._move(live, _STOPPED, "stopped", reason, actor, end_time=self._wall_clock())

    async def conclude(self, name: str, arm: str = "", promote: bool = False, reason: str = "",
                       actor: str = "") -> Experiment:
        """End the experiment with `arm` (default: the verdict's winner); with `promote`, the alias
        switches to that arm's collection. FailedPrecondition NO_WINNER when there is none and no arm is named."""
        async with self._transition(name, "conclude", _HOLDING) as live:
            await self._settle(live)
            experiment = live.experiment
            chosen = arm or experiment.winner
            if not chosen:
                raise FailedPrecondition(
                    f"experiment {name!r} has no winner yet ({experiment.summary}); keep it running, or name the "
                    f"arm to conclude with", reason="NO_WINNER", metadata={"experiment": name})
            spec = experiment.arm(chosen)
            if spec is None:
                raise InvalidArgument("arm", f"{chosen!r} is not an arm of experiment {name!r} "
                                             f"({', '.join(a.name for a in experiment.arms)})")
            promoted = False
            if promote and spec.name != CONTROL:
                await self._switch_alias(experiment.collection, spec.collection)
                promoted = True
            how = f"alias {experiment.collection!r} now points at {spec.collection!r}" if promoted else "alias untouched"
            verdict = f"winner {experiment.winner}" if experiment.winner else "no winner"
            return await self._move(live, _CONCLUDED, "concluded",
                                    f"with {spec.name} ({verdict}; {how}){': ' + reason if reason else ''}", actor,
                                    end_time=self._wall_clock(), concluded_arm=spec.name, promoted=promoted,
                                    keep_reason=True)

    @contextlib.asynccontextmanager
    async def _transition(self, name: str, action: str, allowed: frozenset[ExperimentState] | set[ExperimentState]
                          ) -> AsyncIterator[_Live]:
        if self._versioned is not None:
            await self._refresh(name)  # act on the newest saved state (another replica may have moved it)
        experiment = self.get(name)
        live = self._live.get(name)
        if live is None or experiment.state not in allowed:
            raise FailedPrecondition(
                f"cannot {action} experiment {name!r}: it is {experiment.state.name}; {action} needs "
                f"{' or '.join(sorted(s.name for s in allowed))}", reason="ILLEGAL_TRANSITION",
                metadata={"experiment": name, "state": experiment.state.name})
        async with live.lock:
            if live.experiment.state not in allowed:  # another transition won the lock first
                raise FailedPrecondition(f"cannot {action} experiment {name!r}: it is now "
                                         f"{live.experiment.state.name}", reason="ILLEGAL_TRANSITION")
            yield live

    async def _move(self, live: _Live, state: ExperimentState, kind: str, reason: str, actor: str, *,
                    keep_reason: bool = False, **changes: object) -> Experiment:
        check_reason(reason)
        experiment = self._with_counts(live)
        decision = ExperimentDecision(self._wall_clock(), kind, reason, actor or ANONYMOUS_ACTOR)
        moved = experiment.with_decision(decision, state=state, **changes)
        await self._store.save(moved)  # a failed save changes nothing
        self._saved(live, moved)
        live.experiment = moved
        self._experiments[moved.name] = moved
        if not state.holds_alias:
            del self._live[moved.name]
        self._publish()
        log.info("experiment %s", kind, extra={"experiment": moved.name, "state": state.name, "reason": reason,
                                               "actor": decision.actor, "summary": moved.summary})
        self._announce(moved, live)
        return moved

    def _publish(self) -> None:
        self._held = {live.experiment.collection: HeldAlias(live.experiment) for live in self._live.values()}

    def _announce(self, experiment: Experiment, live: _Live | None = None) -> None:
        live = live or self._live.get(experiment.name)
        if self._observer is not None:
            self._observer.on_experiment(experiment, live.verdict if live else None)
        if live is not None:
            snapshot = self._snapshot(experiment.name) if experiment.name in self._live else experiment
            for queue in live.watchers:
                queue.put_nowait(snapshot)

    # -- the analysis ------------------------------------------------------------------------------
    def _fold(self, live: _Live) -> bool:
        """Fold the counts since the last fold into the tests and record the verdict; True if anything was new."""
        experiment = live.experiment
        goal = experiment.policy.goal
        control = live.counts[CONTROL].slice(goal)
        variants = {v.name: live.counts[v.name].slice(goal) for v in experiment.variants}
        changed = live.evidence.fold(control, variants)
        changed = live.quality.fold() or changed
        guard = self.quality_guard
        vetoes = {v.name: reason for v in experiment.variants if (reason := guard.veto(experiment, v)) is not None}
        live.verdict = verdict = _with_quality(live.evidence.verdict(goal, control, variants, vetoes),
                                               live.quality.summaries())
        updated = dataclasses.replace(self._with_counts(live), summary=verdict.summary)
        for name in sorted(set(vetoes) - live.vetoed):
            updated = updated.with_decision(ExperimentDecision(self._wall_clock(), "vetoed",
                                                               f"{name}: {vetoes[name]}", "controller"))
            log.warning("experiment variant vetoed by the quality guard", extra={
                "experiment": experiment.name, "variant": name, "reason": vetoes[name]})
        live.vetoed = frozenset(vetoes)
        if verdict.winner != experiment.winner:
            updated = updated.with_decision(ExperimentDecision(self._wall_clock(), "verdict", verdict.summary,
                                                               "controller"), winner=verdict.winner)
            log.info("experiment verdict changed", extra={
                "experiment": experiment.name, "winner": verdict.winner or None, "summary": verdict.summary,
                "tests": {v.variant: {c.comparison.value: {"p": c.result.p_value, "e": c.result.e_value,
                                                           "estimate": c.result.estimate,
                                                           "rejected": c.result.rejected}
                                      for c in v.comparisons} for v in verdict.variants}})
        live.experiment = updated
        self._experiments[updated.name] = updated
        return changed

    def _with_counts(self, live: _Live) -> Experiment:
        if not self.judges:  # a follower saves the counts it adopted: its own travel through the shared counts
            return dataclasses.replace(live.experiment, counts=dict(live.base))
        evidence: dict[str, object] = dict(live.evidence.to_json())
        if live.quality.enabled:
            evidence["quality"] = live.quality.to_json()
        return dataclasses.replace(live.experiment, counts={arm: c.frozen() for arm, c in live.counts.items()},
                                   evidence=evidence)

    async def tick(self) -> None:
        """Fold and save every running experiment whose interval has passed. With several replicas: first
        adopt the others' saves; a follower then shares its counts instead (the leader folds them)."""
        if self._versioned is not None:
            try:
                await self._sync()
            except Exception:
                log.exception("could not read the shared experiments (the next tick tries again)")
        now = self._clock()
        for live in list(self._live.values()):
            if not self.judges:
                async with live.lock:
                    if live.experiment.name in self._live:
                        await self._share_quietly(live)
                continue
            if live.experiment.state is not _RUNNING or now < live.next_fold:
                continue
            async with live.lock:
                if live.experiment.state is not _RUNNING:
                    continue
                live.next_fold = now + live.experiment.policy.interval_s
                try:
                    await self._gather(live)
                except Exception:
                    log.exception("could not gather the shared counts of experiment %s", live.experiment.name)
                if self._fold(live):
                    try:
                        await self._store.save(live.experiment)
                        self._saved(live, live.experiment)
                    except Exception:
                        log.exception("could not save experiment %s (the counts stay in memory; the next fold "
                                      "tries again)", live.experiment.name)
                    self._announce(live.experiment, live)

    # -- several replicas (experiments/cluster.py) -----------------------------------------------------
    @property
    def judges(self) -> bool:
        """Whether this replica folds the tests and saves verdicts (alone, or the leader)."""
        return self._leadership is None or self._leadership.is_leader

    def _saved(self, live: _Live, saved: Experiment) -> None:
        """`saved` is in the store: its counts are what the store has (and what this replica accounted for)."""
        if self.judges:
            live.base = dict(saved.counts)
            live.pushed = dict(saved.counts)

    def _unshared(self, live: _Live) -> dict[str, ArmCounts]:
        return {arm: add_counts(c.frozen(), live.pushed.get(arm, ArmCounts()), -1) for arm, c in live.counts.items()}

    async def _share(self, live: _Live) -> None:
        """A follower: hand what it counted since it last did to the leader (through the shared counts)."""
        if self._shared_counts is None:
            return
        delta = CountsDelta(self._unshared(live), live.quality.take_pending())
        if delta.empty:
            return
        try:
            await self._shared_counts.share(live.experiment.name, delta)
        except Exception:
            live.quality.add_pending(delta.quality)  # kept for the next try
            raise
        live.pushed = {arm: c.frozen() for arm, c in live.counts.items()}

    async def _share_quietly(self, live: _Live) -> None:
        try:
            await self._share(live)
        except Exception:
            log.exception("could not share the counts of experiment %s (kept; the next tick tries again)",
                          live.experiment.name)

    async def _gather(self, live: _Live) -> None:
        """The leader: add every follower's shared counts to its own (before folding)."""
        if self._shared_counts is None:
            return
        delta = await self._shared_counts.gather(live.experiment.name)
        for arm, counts in delta.arms.items():
            if arm in live.counts:
                live.counts[arm].add(counts)
        live.quality.add_pending(delta.quality)

    async def _settle(self, live: _Live) -> None:
        """Before a transition: the leader gathers and folds; a follower shares what it counted."""
        if self.judges:
            if live.experiment.state is _RUNNING:
                try:
                    await self._gather(live)
                except Exception:
                    log.exception("could not gather the shared counts of experiment %s", live.experiment.name)
            self._fold(live)
        else:
            await self._share_quietly(live)

    async def _final_counts(self, live: _Live, stored: Experiment) -> Experiment:
        """The leader, adopting an end saved at another replica: its counts gathered and saved into it (the
        verdict stays the one the experiment ended with)."""
        try:
            await self._gather(live)
            final = dataclasses.replace(stored, counts={arm: c.frozen() for arm, c in live.counts.items()})
            await self._store.save(final)
        except Exception:
            log.exception("could not save the final counts of experiment %s", stored.name)
            return stored
        self._experiments[stored.name] = final
        return final

    async def _sync(self) -> None:
        """Adopt every experiment whose stored version is newer than the one this replica knows."""
        store = self._versioned
        assert store is not None
        for name, version in sorted((await store.versions()).items()):
            if version > store.known_version(name):
                await self._refresh(name)

    async def _refresh(self, name: str) -> None:
        store = self._versioned
        assert store is not None
        known = store.known_version(name)
        stored = await store.read(name)
        if stored is not None and store.known_version(name) > known:
            await self._adopt(stored)

    async def _adopt(self, stored: Experiment) -> None:
        """Make a save of another replica current here, keeping what this replica has counted and not yet
        handed over (live counts − pushed, and its pending shadow comparisons)."""
        name = stored.name
        before = self._experiments.get(name)
        moved = before is None or before.state is not stored.state  # else: the leader's latest analysis
        self._experiments[name] = stored
        live = self._live.get(name)
        if not stored.state.holds_alias:
            if live is not None and self.judges and stored.state.value > live.experiment.state.value:
                stored = await self._final_counts(live, stored)
            if live is not None:
                del self._live[name]
                self._publish()
                for queue in live.watchers:
                    queue.put_nowait(stored)
            return
        if live is None:
            live = self._live[name] = _Live(stored, self._clock())
        else:
            unshared = self._unshared(live)
            pending = live.quality.take_pending()
            live.experiment = stored
            live.counts = {arm.name: _LiveCounts(add_counts(stored.counts.get(arm.name, ArmCounts()),
                                                            unshared.get(arm.name, ArmCounts())))
                           for arm in stored.arms}
            live.base = {arm.name: stored.counts.get(arm.name, ArmCounts()) for arm in stored.arms}
            live.pushed = dict(live.base)
            live.evidence = ExperimentEvidence.from_json(stored.policy.alpha, [v.name for v in stored.variants],
                                                         stored.evidence)
            live.quality = ExperimentQuality(stored, _stored_quality(stored))
            live.quality.add_pending(pending)
            live.vetoed = frozenset(v.name for v in stored.variants if live.quality.veto(v.name) is not None)
        live.verdict = None  # the stored verdict (verdict() reads it) until this replica folds
        (log.info if moved else log.debug)("experiment adopted from the shared store", extra={
            "experiment": name, "state": stored.state.name, "winner": stored.winner or None})
        self._publish()
        self._announce(stored, live)

    async def restore(self) -> None:
        """Load every experiment; those that held their alias hold it again (RUNNING ones keep running)."""
        for experiment in await self._store.load_all():
            self._experiments[experiment.name] = experiment
            if experiment.state.holds_alias:
                live = self._live[experiment.name] = _Live(experiment, self._clock())
                self._fold(live)
        self._publish()
        for live in self._live.values():
            self._announce(live.experiment, live)

    async def start_loop(self, run_loop: bool = True) -> None:
        await self.restore()
        if run_loop:
            self._task = asyncio.create_task(self._run(), name="experiment-manager")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            try:
                await self.tick()
            except Exception:
                log.exception("experiment tick failed")

    async def stop_loop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for live in list(self._live.values()):
            with contextlib.suppress(Exception):
                await self._settle(live)
                if self.judges:
                    await self._store.save(live.experiment)
            for queue in live.watchers:
                queue.put_nowait(None)

    def verdict(self, name: str) -> ExperimentVerdict:
        """The tests' answer as of the last fold (for an ended experiment: at its end)."""
        live = self._live.get(name)
        if live is not None and live.verdict is not None:
            return live.verdict
        experiment = self._experiments[name]
        evidence = ExperimentEvidence.from_json(experiment.policy.alpha, [v.name for v in experiment.variants],
                                                experiment.evidence)
        goal = experiment.policy.goal
        counts = {arm: _LiveCounts(c).slice(goal) for arm, c in experiment.counts.items()}
        quality = ExperimentQuality(experiment, _stored_quality(experiment))
        vetoes = {v.name: reason for v in experiment.variants if (reason := quality.veto(v.name)) is not None}
        return _with_quality(evidence.verdict(goal, counts.get(CONTROL, SliceCounts()),
                                              {v.name: counts.get(v.name, SliceCounts()) for v in experiment.variants},
                                              vetoes), quality.summaries())


def _arms_text(experiment: Experiment) -> str:
    return ", ".join(f"{arm.name}={arm.collection} ({arm.split_bps / 100:g} %)" for arm in experiment.arms)


def _stored_quality(experiment: Experiment) -> Mapping[str, object] | None:
    stored = experiment.evidence.get("quality")
    return stored if isinstance(stored, Mapping) else None


def _with_quality(verdict: ExperimentVerdict, quality: Mapping[str, QualitySummary]) -> ExperimentVerdict:
    """The verdict with each variant's shadow quality, in its summary too (a vetoed variant's numbers are
    in its veto already)."""
    if not quality:
        return verdict
    notes = "".join(f"; {name} {summary.summary}" for name, summary in quality.items() if name not in verdict.vetoes)
    return dataclasses.replace(verdict, summary=verdict.summary + notes, quality=quality)
